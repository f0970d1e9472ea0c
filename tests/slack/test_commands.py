"""The `/slct` slash command: who may use it (linked Slack users, their Django permissions, the
channel's send policy), send (idempotently), status (without revealing private channels)."""
from __future__ import annotations

import json

import pytest

import tests.slack.workflows  # noqa: F401
from slack_integration.models import SlackMessage
from slct_workflows.models import Event, ExternalSend, Goroutine
from tests.slack.conftest import post_signed

pytestmark = pytest.mark.django_db

URL = "/slack/commands/"
SEND, VIEW = "add_externalsend", "view_processinstance"
NOT_LINKED = "your Slack user is not linked to an account here; ask an admin to add it under Slack users"


def command(client, text: str, *, user: str = "U1", trigger: str = "trig-1", **kw):
    fields = {
        "token": "legacy", "team_id": "T1", "team_domain": "acme", "channel_id": "C1", "channel_name": "ops",
        "user_id": user, "user_name": "ann", "command": "/slct", "text": text,
        "api_app_id": "A1", "response_url": "https://hooks.slack.com/commands/T1/1/x", "trigger_id": trigger,
    }
    fields.update(kw.pop("fields", {}))
    return post_signed(client, URL, fields, **kw)


def reply(client, text: str, **kw) -> str:
    r = command(client, text, **kw)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["response_type"] == "ephemeral"
    return body["text"]


def test_send_delivers_into_a_waiting_process_once(runner, slack_settings, client, link):
    ann = link("U1", SEND, username="ann")
    pid = runner.start("counter", {"channel": "from-slack", "idle_seconds": 60})
    text = reply(client, 'send from-slack {"n": 1}', trigger="t-a")
    assert "delivered" in text and pid in text
    # Slack (or a flaky proxy) repeats the very same request: nothing new is sent.
    assert "repeated" in reply(client, 'send from-slack {"n": 1}', trigger="t-a")
    runner.run()
    assert runner.state(pid)["values"] == [{"n": 1}]
    send = ExternalSend.objects.get(pk="slack-command:T1:t-a")
    assert send.value == {"n": 1}
    # Recorded as sent by the linked account and the verified Slack user, not as an answer.
    assert send.sender == {"via": "slack", "user": "ann", "user_id": ann.pk, "slack_user": "U1"}
    assert Event.objects.filter(process_id=pid, method="Main_Count").count() == 1


def test_send_into_an_idle_channel_waits_for_a_receiver(runner, slack_settings, client, link):
    from slct_workflows import services

    link("U1", SEND)
    services.create_channel("later")
    assert "waiting for a receiver" in reply(client, 'send later "hello world"', trigger="t-b")
    assert ExternalSend.objects.get(pk="slack-command:T1:t-b").status == "waiting"


def test_send_reports_bad_input_and_sends_nothing(runner, slack_settings, client, link):
    link("U1", SEND)
    assert "not JSON" in reply(client, "send chan {oops")
    assert "not JSON" in reply(client, "send chan " + "[" * 100_00)
    assert "Usage" in reply(client, "send")
    assert "unknown channel" in reply(client, "send no-such-channel 1", trigger="t-c")
    assert "Usage" in reply(client, "")
    assert not ExternalSend.objects.exists()


def test_unlinked_slack_users_may_not_send_or_see_anything(runner, slack_settings, client, link):
    """Issue 12: an empty SLACK_COMMAND_USERS used to let every workspace member send, and
    `/slct status` checked nobody."""
    pid = runner.start("counter", {"channel": "guarded", "idle_seconds": 60})
    assert slack_settings.SLACK_COMMAND_USERS == ""
    assert NOT_LINKED in reply(client, "send guarded 1", user="UNOBODY", trigger="t-x")
    status = reply(client, f"status {pid}", user="UNOBODY")
    assert NOT_LINKED in status and pid not in status and "counter" not in status
    # A link for another workspace does not count.
    link("UOTHERWS", SEND, VIEW, team="T2")
    assert NOT_LINKED in reply(client, "send guarded 1", user="UOTHERWS", trigger="t-y")
    runner.run()
    assert runner.state(pid)["values"] == []
    assert not ExternalSend.objects.exists()


def test_linked_users_need_the_django_permissions(runner, slack_settings, client, link):
    pid = runner.start("counter", {"channel": "guarded", "idle_seconds": 60})
    link("U2", username="nobody-special")
    text = reply(client, "send guarded 1", user="U2", trigger="t-d")
    assert "Not sent" in text and "slct_workflows.add_externalsend" in text
    text = reply(client, f"status {pid}", user="U2")
    assert "slct_workflows.view_processinstance" in text and "counter" not in text
    link("U3", SEND, VIEW, is_active=False)
    assert "inactive" in reply(client, "send guarded 1", user="U3", trigger="t-e")
    runner.run()
    assert runner.state(pid)["values"] == []
    assert not ExternalSend.objects.exists()


def test_command_users_is_an_extra_restriction_that_never_widens(runner, slack_settings, client, link):
    slack_settings.SLACK_COMMAND_USERS = "UADMIN,UGHOST"
    pid = runner.start("counter", {"channel": "guarded", "idle_seconds": 60})
    link("UOTHER", SEND)
    link("UADMIN", SEND)
    assert "not allowed" in reply(client, "send guarded 1", user="UOTHER", trigger="t-d")
    # Listed, but not linked: still nothing.
    assert NOT_LINKED in reply(client, "send guarded 1", user="UGHOST", trigger="t-f")
    assert not ExternalSend.objects.exists()
    assert "delivered" in reply(client, "send guarded 1", user="UADMIN", trigger="t-e")
    runner.run()
    assert runner.state(pid)["values"] == [1]


def test_the_settings_map_links_users_too(runner, slack_settings, client, django_user_model):
    from django.contrib.auth.models import Permission

    bob = django_user_model.objects.create_user("bob")
    bob.user_permissions.add(Permission.objects.get(codename=SEND))
    slack_settings.SLACK_USER_MAP = "U9=bob, T2:U8=bob"
    pid = runner.start("counter", {"channel": "mapped", "idle_seconds": 60})
    assert NOT_LINKED in reply(client, "send mapped 1", user="U8", trigger="t-g")  # pinned to T2
    assert "delivered" in reply(client, "send mapped 1", user="U9", trigger="t-h")
    runner.run()
    assert runner.state(pid)["values"] == [1]
    assert ExternalSend.objects.get().sender["user"] == "bob"


def test_bad_settings_map_is_a_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    from slack_integration import conf

    for bad in ("U1", "alice=bob", "U1=", "U1=a b", "X9:U1=bob", "U1=bob,U1=carol"):
        settings.SLACK_USER_MAP = bad
        with pytest.raises(ImproperlyConfigured, match="SLACK_USER_MAP"):
            conf.user_map()
    settings.SLACK_USER_MAP = {"U1": "bob", "T1:U2": "carol"}
    assert conf.user_map() == {("", "U1"): "bob", ("T1", "U2"): "carol"}


def test_the_forged_approval_through_slct_send_is_refused(runner, slack_settings, client, link, fake_slack):
    """Issue 12: `/slct status` showed the reply channel, then `/slct send slack-… {"approved":
    true, "user": <approver>}` finished the process "approved by" the approver; `null` faked a
    timeout. Even a user allowed to send and to see processes gets neither."""
    link("UMALLORY", SEND, VIEW, username="mallory")
    pid = runner.start("expense", {"amount": 9000, "approvers": ["UBOSS"]})
    m = SlackMessage.objects.get(process_id=pid, kind="approve")
    status = reply(client, f"status {pid}", user="UMALLORY")
    assert m.reply_channel not in status and "slack-" not in status
    assert f"Main waits for an answer to Slack question #{m.pk}, then Main_CheckApprove" in status
    forged = json.dumps({"approved": True, "user": "UBOSS", "user_name": "boss", "via": "slack"})
    for i, value in enumerate([forged, "true", "null"]):
        text = reply(client, f"send {m.reply_channel} {value}", user="UMALLORY", trigger=f"t-forge-{i}")
        assert text.startswith("Not sent:") and "private" in text, text
    runner.run()
    runner.advance(minutes=5)
    assert runner.process(pid).status == "running"
    assert not ExternalSend.objects.exists()
    m.refresh_from_db()
    assert (m.status, m.answered_by) == ("open", "")


def test_status_shows_what_the_process_waits_for(runner, slack_settings, client, link, fake_slack):
    link("U1", VIEW)
    pid = runner.start("expense", {"amount": 3})
    m = SlackMessage.objects.get(process_id=pid, kind="approve")
    text = reply(client, f"status {pid}")
    assert f"*expense* `{pid}` is *running*" in text
    assert f"• Main waits for an answer to Slack question #{m.pk}, then Main_CheckApprove or " in text
    assert "• Reminder waits 00:30:00 left on a timer, then Reminder_Nudge" in text
    assert "1 open Slack question" in text
    runner.advance(hours=1)
    text = reply(client, f"status {pid}")
    assert "is *done*" in text and json.dumps({"approved": False, "by": None, "timed_out": True}, sort_keys=True) in text
    assert "unknown process" in reply(client, "status nope")


def test_status_names_only_channels_the_user_could_send_into(runner, slack_settings, client, link):
    link("U1", VIEW)
    link("U2", VIEW, SEND)
    pid = runner.start("slack-test-waits", {"named": "orders"})
    inbox = runner.state(pid)["inbox"]
    viewer, sender = reply(client, f"status {pid}"), reply(client, f"status {pid}", user="U2")
    for text in (viewer, sender):
        assert inbox not in text
        assert "Main waits to receive on a channel you cannot send into, then Main_Got" in text
    assert "Named waits to receive on a channel you cannot send into, then Named_Got" in viewer
    assert "Named waits to receive on `orders`, then Named_Got" in sender


def test_status_shows_paused_goroutines_with_their_reason(runner, slack_settings, client, link):
    link("U1", VIEW)
    pid = runner.start("slack-test-waits", {"named": "orders"})
    # What the runaway guard leaves behind (DESIGN 2.9): the goroutine paused, with its reason.
    Goroutine.objects.filter(process_id=pid, name="Named").update(
        status="paused", paused_reason="its select fired at once 1000 times in a row\n(details)")
    text = reply(client, f"status {pid}")
    assert "• Named paused: its select fired at once 1000 times in a row" in text
    assert "(details)" not in text


def test_unsigned_commands_are_refused(runner, slack_settings, client, link):
    link("U1", SEND)
    pid = runner.start("counter", {"channel": "c2", "idle_seconds": 60})
    assert command(client, "send c2 1", signature="v0=deadbeef").status_code == 401
    assert command(client, "send c2 1", headers=False).status_code == 401
    runner.run()
    assert runner.state(pid)["values"] == []
    assert not ExternalSend.objects.exists()


@pytest.mark.parametrize("fields", [
    {"user_id": ""}, {"user_id": "alice"}, {"user_id": "U1" + "X" * 100}, {"team_id": "nope"},
    {"text": "send c3 " + "1" * 30_000}, {"trigger_id": "t" * 1000}, {"user_name": "n" * 1000},
], ids=["no-user", "user-not-an-id", "user-too-long", "bad-team", "huge-text", "huge-trigger", "huge-name"])
def test_malformed_signed_commands_get_400_and_change_nothing(runner, slack_settings, client, link, fields):
    link("U1", SEND)
    pid = runner.start("counter", {"channel": "c3", "idle_seconds": 60})
    r = command(client, "send c3 1", fields=fields)
    assert r.status_code == 400 and r["Content-Type"].startswith("text/plain")
    runner.run()
    assert runner.state(pid)["values"] == []
    assert not ExternalSend.objects.exists()
