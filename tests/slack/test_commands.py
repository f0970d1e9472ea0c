"""The `/slct` slash command: send into a channel (idempotently), show a process's state."""
from __future__ import annotations

import json

import pytest

import tests.slack.workflows  # noqa: F401
from slct_workflows.models import Event, ExternalSend
from tests.slack.conftest import post_signed

pytestmark = pytest.mark.django_db

URL = "/slack/commands/"


def command(client, text: str, *, user: str = "U1", trigger: str = "trig-1", **kw):
    fields = {
        "token": "legacy", "team_id": "T1", "team_domain": "acme", "channel_id": "C1", "channel_name": "ops",
        "user_id": user, "user_name": "ann", "command": "/slct", "text": text,
        "api_app_id": "A1", "response_url": "https://hooks.slack.com/commands/T1/1/x", "trigger_id": trigger,
    }
    return post_signed(client, URL, fields, **kw)


def test_send_delivers_into_a_waiting_process_once(runner, slack_settings, client):
    pid = runner.start("counter", {"channel": "from-slack", "idle_seconds": 60})
    r = command(client, 'send from-slack {"n": 1}', trigger="t-a")
    assert r.status_code == 200
    body = r.json()
    assert body["response_type"] == "ephemeral"
    assert "delivered" in body["text"] and pid in body["text"]
    # Slack (or a flaky proxy) repeats the very same request: nothing new is sent.
    again = command(client, 'send from-slack {"n": 1}', trigger="t-a").json()
    assert "repeated" in again["text"]
    runner.run()
    assert runner.state(pid)["values"] == [{"n": 1}]
    assert ExternalSend.objects.get(pk="slack-command:T1:t-a").value == {"n": 1}
    assert Event.objects.filter(process_id=pid, method="Main_Count").count() == 1


def test_send_into_an_idle_channel_waits_for_a_receiver(runner, slack_settings, client):
    from slct_workflows import services

    services.create_channel("later")
    text = command(client, 'send later "hello world"', trigger="t-b").json()["text"]
    assert "waiting for a receiver" in text
    assert ExternalSend.objects.get(pk="slack-command:T1:t-b").status == "waiting"


def test_send_reports_bad_input_and_sends_nothing(runner, slack_settings, client):
    assert "not JSON" in command(client, "send chan {oops").json()["text"]
    assert "Usage" in command(client, "send").json()["text"]
    assert "unknown channel" in command(client, "send no-such-channel 1", trigger="t-c").json()["text"]
    assert "Usage" in command(client, "").json()["text"]
    assert not ExternalSend.objects.exists()


def test_send_can_be_restricted_to_some_users(runner, slack_settings, client):
    slack_settings.SLACK_COMMAND_USERS = "UADMIN"
    pid = runner.start("counter", {"channel": "guarded", "idle_seconds": 60})
    assert "not allowed" in command(client, "send guarded 1", user="UOTHER", trigger="t-d").json()["text"]
    assert not ExternalSend.objects.exists()
    assert "delivered" in command(client, "send guarded 1", user="UADMIN", trigger="t-e").json()["text"]
    runner.run()
    assert runner.state(pid)["values"] == [1]


def test_status_shows_what_the_process_waits_for(runner, slack_settings, client, fake_slack):
    pid = runner.start("expense", {"amount": 3})
    text = command(client, f"status {pid}").json()["text"]
    assert f"*expense* `{pid}` is *running*" in text
    assert "Main waits to receive on `slack-" in text and "Main_CheckApprove" in text
    assert "Reminder waits" in text
    assert "1 open Slack question" in text
    runner.advance(hours=1)
    text = command(client, f"status {pid}").json()["text"]
    assert "is *done*" in text and json.dumps({"approved": False, "by": None, "timed_out": True}, sort_keys=True) in text
    assert "unknown process" in command(client, "status nope").json()["text"]


def test_unsigned_commands_are_refused(runner, slack_settings, client):
    pid = runner.start("counter", {"channel": "c2", "idle_seconds": 60})
    assert command(client, "send c2 1", signature="v0=deadbeef").status_code == 401
    assert command(client, "send c2 1", headers=False).status_code == 401
    runner.run()
    assert runner.state(pid)["values"] == []
    assert not ExternalSend.objects.exists()
