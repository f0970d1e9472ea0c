"""Issue 12 over REST and the admin: a question's reply channel takes answers from the verified
doors only (a signed Slack click, the Pending questions page), whatever permissions the sender
holds elsewhere."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import tests.slack.workflows  # noqa: F401
from slack_integration import identity, services
from slack_integration.models import SlackMessage, Status
from slct_workflows.errors import Forbidden
from slct_workflows.models import Channel, Event, ExternalSend, PendingCase

pytestmark = pytest.mark.django_db

PERMS = ["add_externalsend", "change_channel", "view_channel", "view_processinstance", "operator_send"]


@pytest.fixture
def mallory(django_user_model):
    user = django_user_model.objects.create_user("mallory")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="slct_workflows", codename__in=PERMS))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


def snapshot(pid: str) -> tuple:
    return (ExternalSend.objects.count(), Event.objects.filter(process_id=pid).count(),
            PendingCase.objects.filter(goroutine__process_id=pid).count(),
            list(SlackMessage.objects.filter(process_id=pid).values_list("status", "answered_by")))


def test_the_forged_approval_over_rest_is_403_and_changes_nothing(runner, slack_settings, fake_slack, mallory):
    pid = runner.start("expense", {"amount": 9000, "approvers": ["UBOSS"]})
    m = SlackMessage.objects.get(process_id=pid, kind="approve")
    before = snapshot(pid)
    url = f"/api/channels/{m.reply_channel}"
    for i, value in enumerate([{"approved": True, "user": "UBOSS", "via": "slack"}, True, None]):
        r = mallory.post(f"{url}/send/", {"value": value, "wait": False}, format="json",
                         HTTP_IDEMPOTENCY_KEY=f"forge-{i}")
        assert r.status_code == 403, r.content
        assert r.json()["code"] == "forbidden"
    # Closing it (to fake "the process went another way") is refused too.
    assert mallory.post(f"{url}/close/", format="json").status_code == 403
    runner.run()
    runner.advance(minutes=10)
    assert snapshot(pid) == before
    assert runner.process(pid).status == "running"
    assert not Channel.objects.get(pk=m.reply_channel).closed


def test_answers_need_an_answering_sender(runner, slack_settings, fake_slack, django_user_model):
    """deliver_answer refuses the senders other doors build (REST, /slct send, the admin's
    channel page), even for a superuser."""
    from slct_workflows.access import Sender

    pid = runner.start("slack-test-approve", {"channel": "#finance"})
    m = SlackMessage.objects.get(process_id=pid)
    root = django_user_model.objects.create_superuser("root")
    value = services.answer_value(m, approved=True, answered_at=runner.now())
    for sender in (Sender.rest(root), Sender.admin(root), Sender.slack(root, "U1"),
                   Sender.answering("rest", user=root)):
        with pytest.raises(Forbidden):
            services.deliver_answer(m, value, "k", sender)
    assert not ExternalSend.objects.exists()
    assert services.deliver_answer(m, value, "k", identity.admin_answer(root)) == services.DELIVERED
    runner.run()
    assert runner.process(pid).output["user"] == "root"


def test_admin_answers_need_the_answering_permission(runner, no_slack_credentials, django_user_model):
    pid = runner.start("slack-test-approve", {})
    m = SlackMessage.objects.get(process_id=pid)
    staff = django_user_model.objects.create_user("pat", is_staff=True)
    with pytest.raises(Forbidden, match="change_pendingquestion"):
        services.answer_from_admin(m, staff, approved=True)
    assert not ExternalSend.objects.exists()
    assert SlackMessage.objects.get(pk=m.pk).status == Status.OPEN


def test_reply_channels_made_before_the_access_model_are_made_private(runner, slack_settings, fake_slack):
    """The migration closes the gap for questions asked before the upgrade (their reply channels
    were created open)."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("slack_integration.migrations.0002_slack_users")
    pid = runner.start("slack-test-approve", {"channel": "#finance"})
    m = SlackMessage.objects.get(process_id=pid)
    Channel.objects.filter(pk=m.reply_channel).update(policy="open", owner="")
    Channel.objects.create(name="orders")  # a named channel stays as it is
    migration.make_reply_channels_private(apps, None)
    row = Channel.objects.get(pk=m.reply_channel)
    assert (row.policy, row.owner) == ("private", pid)
    assert Channel.objects.get(pk="orders").policy == "open"
