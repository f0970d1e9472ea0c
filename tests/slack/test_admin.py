"""The admin's pending-questions page: answering without Slack, through the same delivery path."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

import tests.slack.workflows  # noqa: F401
from slack_integration.models import Delivery, SlackMessage, Status
from slct_workflows.models import Event, ExternalSend

pytestmark = pytest.mark.django_db

URL = "/admin/slack_integration/pendingquestion/"


@pytest.fixture
def staff(client):
    user = User.objects.create_user("olga", password="pw", is_staff=True, first_name="Olga", last_name="Ops")
    user.user_permissions.add(Permission.objects.get(codename="change_pendingquestion"))
    client.force_login(user)
    return user


def test_answer_an_approval_in_the_admin_without_slack_credentials(runner, no_slack_credentials, staff, client, fake_slack):
    pid = runner.start("slack-test-approve", {"text": "Approve the offsite budget?"})
    m = SlackMessage.objects.get(process_id=pid)
    assert m.delivery == Delivery.NO_CREDENTIALS
    page = client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Approve the offsite budget?" in html and f'value="{m.pk}"' in html
    assert "Pending questions" in html and "site-name" in html  # inside the admin's own layout
    r = client.post(URL, {"message": m.pk, "answer": "approve"}, follow=True)
    assert "Answer delivered to the process" in r.content.decode()
    runner.run()
    out = runner.process(pid).output
    assert (out["approved"], out["user"], out["user_name"], out["via"]) == (True, "olga", "Olga Ops", "admin")
    m.refresh_from_db()
    assert (m.status, m.answered_via) == (Status.ANSWERED, "admin")
    assert "Approve the offsite budget?" not in client.get(URL).content.decode().split("Recently closed")[0]
    # Submitting again (a double submit, or another staff member) delivers nothing new.
    r = client.post(URL, {"message": m.pk, "answer": "reject"}, follow=True)
    assert "nothing was delivered" in r.content.decode()
    runner.run()
    assert Event.objects.filter(process_id=pid, method="Main_Decided").count() == 1
    assert fake_slack.calls == []


def test_admin_answer_updates_the_posted_slack_message(runner, slack_settings, staff, client, fake_slack):
    pid = runner.start("slack-test-ask", {"text": "Which region?", "channel": "#ops"})
    m = SlackMessage.objects.get(process_id=pid)
    assert m.delivery == Delivery.POSTED
    client.post(URL, {"message": m.pk, "text": "eu-west-1"})
    runner.run()
    assert runner.process(pid).output["text"] == "eu-west-1"
    shown = fake_slack.messages[(m.slack_channel, m.ts)]
    assert "Olga Ops (in the admin) answered" in shown["text"] and "eu-west-1" in shown["text"]
    assert not [b for b in shown["blocks"] if b["type"] == "actions"]


def test_choose_in_the_admin_validates_the_option(runner, no_slack_credentials, staff, client):
    pid = runner.start("slack-test-choose", {"options": ["a", "b"]})
    m = SlackMessage.objects.get(process_id=pid)
    r = client.post(URL, {"message": m.pk, "choice": "zzz"}, follow=True)
    assert "Not answered" in r.content.decode() and "unknown option" in r.content.decode()
    assert not ExternalSend.objects.exists()
    client.post(URL, {"message": m.pk, "choice": "b"})
    runner.run()
    assert runner.process(pid).output["choice"] == "b"


def test_the_page_closes_timed_out_questions_and_needs_permission(runner, no_slack_credentials, client):
    pid = runner.start("slack-test-approve", {"text": "Too late?", "timeout": 60})
    anonymous = client.get(URL)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    plain = User.objects.create_user("pat", password="pw", is_staff=True)
    client.force_login(plain)
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"message": 1, "answer": "approve"}).status_code == 403
    admin = User.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    assert "Too late?" in client.get(URL).content.decode()
    runner.advance(seconds=60)
    assert runner.process(pid).output["timed_out"] is True
    assert "No question is waiting" in client.get(URL).content.decode()
    assert SlackMessage.objects.get(process_id=pid).status == Status.TIMED_OUT


def test_message_admin_lists_messages(runner, no_slack_credentials, client):
    runner.start("slack-test-approve", {"text": "Listed?"})
    client.force_login(User.objects.create_superuser("root", password="pw"))
    r = client.get("/admin/slack_integration/slackmessage/")
    assert r.status_code == 200 and "Listed?" in r.content.decode()


def test_slack_users_are_linked_in_the_admin(db, client):
    from slack_integration.models import SlackUser

    root = User.objects.create_superuser("root", password="pw")
    ann = User.objects.create_user("ann", email="ann@example.com")
    client.force_login(root)
    add = "/admin/slack_integration/slackuser/add/"
    assert client.get(add).status_code == 200
    r = client.post(add, {"slack_user_id": "ann", "team_id": "", "user": ann.pk, "note": ""})
    assert r.status_code == 200 and "A Slack user id looks like U012ABCDEF." in r.content.decode()
    r = client.post(add, {"slack_user_id": "U0ANN", "team_id": "T1", "user": ann.pk, "note": "finance"})
    assert r.status_code == 302
    link = SlackUser.objects.get()
    assert (link.slack_user_id, link.team_id, link.user) == ("U0ANN", "T1", ann)
    # The same Slack id twice for one workspace is refused.
    r = client.post(add, {"slack_user_id": "U0ANN", "team_id": "T1", "user": root.pk, "note": ""})
    assert r.status_code == 200 and SlackUser.objects.count() == 1
    listing = client.get("/admin/slack_integration/slackuser/", {"q": "ann@example"}).content.decode()
    assert "U0ANN" in listing and "finance" in listing
    assert "U0ANN" not in client.get("/admin/slack_integration/slackuser/", {"q": "nobody"}).content.decode()
