"""Socket Mode (issue 16): `manage.py slack_socket` against a local fake of `apps.connections.open`
and of Slack's WebSocket (tests/slack/fake_socket.py). Envelopes reach the same parsing, services
and idempotent delivery as the signed HTTP endpoints; acknowledgements carry what the HTTP
endpoints answer."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

import tests.slack.workflows  # noqa: F401
from slack_integration import conf, socket_mode
from slack_integration.models import Delivery, SlackMessage, Status
from slct_workflows import services
from slct_workflows.models import Event, ExternalSend, ProcessInstance
from tests.conftest import ROOT, _worker_env, stop_process_group, wait_until
from tests.slack.conftest import TOKEN, WORKFLOWS, button, click_payload, post_signed
from tests.slack.fake_socket import APP_TOKEN, FakeSocketSlack

VIEW = "view_processinstance"


@pytest.fixture
def fake_slack():
    """Overrides tests/slack/conftest.py's: the fake Web API plus Socket Mode."""
    fake = FakeSocketSlack().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def socket_settings(slack_settings):
    slack_settings.SLACK_APP_TOKEN = APP_TOKEN
    return slack_settings


def command_payload(text: str, *, user: str = "U1", trigger: str = "trig-1", **extra) -> dict:
    """A slash_commands envelope's payload as Slack sends it in Socket Mode (the form fields)."""
    return {
        "token": "legacy", "team_id": "T1", "team_domain": "acme", "channel_id": "C1", "channel_name": "ops",
        "user_id": user, "user_name": "ann", "command": "/slct", "text": text, "api_app_id": "A1",
        "is_enterprise_install": "false", "response_url": "https://hooks.slack.com/commands/T1/1/x",
        "trigger_id": trigger, **extra,
    }


# -- settings --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["xoxb-123-abc", "xapp-", " xapp-1-A1-2-ab", "xapp-1 2", "secret", 42])
def test_a_bad_app_token_is_a_configuration_error(settings, value):
    settings.SLACK_APP_TOKEN = value
    with pytest.raises(ImproperlyConfigured, match="SLACK_APP_TOKEN"):
        conf.app_token()


def test_the_app_token_is_read_from_settings_or_the_environment(settings, monkeypatch):
    settings.SLACK_APP_TOKEN = APP_TOKEN
    assert conf.app_token() == APP_TOKEN
    settings.SLACK_APP_TOKEN = ""
    assert conf.app_token() == ""
    del settings.SLACK_APP_TOKEN
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-AENV-2-ff")
    assert conf.app_token() == "xapp-1-AENV-2-ff"


def test_the_command_needs_an_app_token(settings):
    settings.SLACK_APP_TOKEN = ""
    with pytest.raises(CommandError, match="SLACK_APP_TOKEN is not set"):
        call_command("slack_socket")
    settings.SLACK_APP_TOKEN = "xoxb-not-an-app-token"
    with pytest.raises(CommandError, match="app-level token"):
        call_command("slack_socket")


def test_a_token_slack_refuses_stops_the_command(socket_settings, fake_slack):
    socket_settings.SLACK_APP_TOKEN = "xapp-1-A0TEST-1-wrong"
    with pytest.raises(CommandError, match="invalid_auth"):
        call_command("slack_socket")
    (call,) = fake_slack.calls_to("apps.connections.open")
    assert call.headers["authorization"] == "Bearer xapp-1-A0TEST-1-wrong"  # the app token, not the bot token
    assert not fake_slack.ws.connections


@pytest.mark.parametrize("url", ["ws://slack.example.com/link", "wss://slack.example.com:8443/link", "http://127.0.0.1/x", "nonsense"])
def test_only_tls_websockets_are_trusted(socket_settings, fake_slack, url):
    """Socket Mode payloads are unsigned: only a TLS connection (or a loopback one) is used."""
    fake_slack.socket_url = url
    with pytest.raises(CommandError, match="TLS"):
        call_command("slack_socket")
    socket_mode.check_socket_url("wss://wss-primary.slack.com/link/?ticket=abc&app_id=A1")
    socket_mode.check_socket_url("ws://127.0.0.1:9999/link/")


# -- one envelope, in the test's transaction ------------------------------------------------------

@pytest.mark.django_db
def test_a_command_is_acknowledged_with_the_http_endpoints_reply(runner, slack_settings, client, link):
    link("U1", VIEW)
    pid = runner.start("slack-test-approve", {"channel": "#finance", "timeout": 600})
    ack = socket_mode.handle({"envelope_id": "e1", "type": "slash_commands", "payload": command_payload(f"status {pid}")})
    http = post_signed(client, "/slack/commands/", command_payload(f"status {pid}")).json()
    assert ack == {"envelope_id": "e1", "payload": http}
    assert http["response_type"] == "ephemeral" and pid in http["text"] and "waits for an answer" in http["text"]


@pytest.mark.django_db
def test_the_answer_form_over_the_socket(runner, slack_settings, fake_slack):
    """ask(): a click opens the modal (views.open), an empty submission is acknowledged with the
    form's errors, a real one answers once, as over HTTP."""
    pid = runner.start("slack-test-ask", {"text": "Why is the build red?", "channel": "#dev"})
    call = fake_slack.calls_to("chat.postMessage")[0]
    open_click = click_payload(call, button(call, "slct_ask_open"), user="U3", trigger_id="trig-9")
    assert socket_mode.handle({"envelope_id": "e1", "type": "interactive", "payload": open_click}) == {"envelope_id": "e1"}
    (opened,) = fake_slack.calls_to("views.open", ok_only=True)
    assert opened.params["trigger_id"] == "trig-9"
    view = opened.params["view"]
    submission = {
        "type": "view_submission", "user": {"id": "U3", "username": "carol"}, "team": {"id": "T1"},
        "view": {**view, "id": "V1", "state": {"values": {"slct_answer": {"slct_answer": {
            "type": "plain_text_input", "value": " "}}}}},
    }
    ack = socket_mode.handle({"envelope_id": "e2", "type": "interactive", "payload": submission})
    assert ack["payload"]["response_action"] == "errors" and "slct_answer" in ack["payload"]["errors"]
    runner.run()
    assert runner.process(pid).status == "running" and not ExternalSend.objects.exists()
    submission["view"]["state"]["values"]["slct_answer"]["slct_answer"]["value"] = "  a flaky test "
    assert socket_mode.handle({"envelope_id": "e3", "type": "interactive", "payload": submission}) == {"envelope_id": "e3"}
    assert socket_mode.handle({"envelope_id": "e4", "type": "interactive", "payload": submission}) == {"envelope_id": "e4"}
    runner.run()
    out = runner.process(pid).output
    assert (out["text"], out["user"], out["user_name"], out["timed_out"]) == ("a flaky test", "U3", "carol", False)
    assert Event.objects.filter(process_id=pid, method="Main_Answered").count() == 1
    assert ExternalSend.objects.count() == 1


MALFORMED = [
    ("interactive", {"type": "block_actions", "user": {"id": "U1"}, "actions": 5}),
    ("interactive", {"type": "block_actions", "user": "U1", "actions": []}),
    ("interactive", {"type": "block_actions", "user": {"id": "U1"}, "container": "x"}),
    ("interactive", {"type": "view_submission", "user": {"id": "U1"},
                     "view": {"callback_id": "slct_ask", "private_metadata": "../1"}}),
    ("interactive", "payload=not-an-object"),
    ("interactive", [1, 2]),
    ("interactive", {"type": 7}),
    ("slash_commands", {"user_id": "bob", "text": "send x 1", "trigger_id": "t"}),
    ("slash_commands", {"user_id": ["U1"], "text": "status x"}),
    ("slash_commands", "status x"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("kind,payload", MALFORMED)
def test_a_malformed_envelope_is_acknowledged_and_changes_nothing(runner, slack_settings, fake_slack, link, kind, payload):
    link("U1", "add_externalsend", VIEW)
    pid = runner.start("slack-test-approve", {"channel": "#finance", "timeout": 600})
    ack = socket_mode.handle({"envelope_id": "e-bad", "type": kind, "payload": payload})
    assert ack["envelope_id"] == "e-bad"
    if kind == "slash_commands":
        assert ack["payload"]["response_type"] == "ephemeral"
        assert ack["payload"]["text"].startswith("malformed Slack request:")
    else:
        assert "payload" not in ack
    assert not ExternalSend.objects.exists()
    assert SlackMessage.objects.get(process_id=pid).status == Status.OPEN
    assert runner.process(pid).status == "running"
    assert fake_slack.calls_to("chat.postEphemeral") == [] and fake_slack.calls_to("views.open") == []


def test_messages_that_are_not_envelopes_get_no_ack():
    assert socket_mode.handle({"type": "hello", "num_connections": 1}) is None
    assert socket_mode.handle({"type": "interactive", "payload": {}}) is None
    assert socket_mode.handle({"envelope_id": 5, "type": "interactive", "payload": {}}) is None
    assert socket_mode.handle(["not", "a", "dict"]) is None
    assert socket_mode.handle({"envelope_id": "e", "type": "events_api", "payload": {"event": {}}}) == {"envelope_id": "e"}


def test_an_envelope_sent_twice_at_once_is_handled_once():
    acks = socket_mode.Acks()
    calls, gate = [], threading.Event()

    def work():
        calls.append(1)
        gate.wait(5)
        return {"envelope_id": "e", "payload": {"n": len(calls)}}

    out = []
    threads = [threading.Thread(target=lambda: out.append(acks.run("e", work))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert calls == [1] and out == [{"envelope_id": "e", "payload": {"n": 1}}] * 3

    def boom():
        raise RuntimeError("database is down")

    with pytest.raises(RuntimeError):
        acks.run("f", boom)
    assert acks.run("f", lambda: {"envelope_id": "f"}) == {"envelope_id": "f"}  # a failed one is run again


def test_an_envelope_that_fails_is_not_acknowledged_and_its_resend_is(socket_settings, fake_slack, monkeypatch):
    """The database was unreachable: no ack, so Slack sends the envelope again, and that copy is
    handled (in-process SocketMode against the fake WebSocket; the handler is stubbed)."""
    seen = []

    def flaky(message):
        seen.append(message["envelope_id"])
        if len(seen) == 1:
            raise RuntimeError("could not connect to the database")
        return {"envelope_id": message["envelope_id"], "payload": {"text": "ok"}}

    monkeypatch.setattr(socket_mode, "handle", flaky)
    sm = socket_mode.SocketMode(ping_interval=1)
    try:
        sm.connect()
        ws = fake_slack.ws
        ws.wait_connected()
        env = ws.send_envelope("slash_commands", command_payload("status x"))
        wait_until(lambda: seen == [env], timeout=10)
        time.sleep(0.5)
        assert ws.acks_for(env) == []
        ws.send_envelope("slash_commands", command_payload("status x"), envelope_id=env, retry_attempt=1)
        assert ws.wait_ack(env) == {"envelope_id": env, "payload": {"text": "ok"}}
        assert seen == [env, env] and sm.handled == 1
        (opened,) = fake_slack.calls_to("apps.connections.open")
        assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"
    finally:
        sm.close()
    wait_until(lambda: not ws.live(), timeout=10, message="the client to close its connection")


# -- end to end: `manage.py slack_socket` and an RQ worker -----------------------------------------

@pytest.fixture
def socket_process(slack_worker, fake_slack, tmp_path):
    """A real `manage.py slack_socket` on the test database, connected to the fake Slack."""
    env = {**_worker_env(), "SLACK_API_URL": fake_slack.url, "SLACK_BOT_TOKEN": TOKEN, "SLACK_APP_TOKEN": APP_TOKEN,
           "SLACK_SIGNING_SECRET": "", "SLACK_DEFAULT_CHANNEL": "#general", "SLCT_WORKFLOW_MODULES": WORKFLOWS}
    log = tmp_path / "slack-socket.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "slack_socket", "--ping-interval", "1"],
                                cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
    proc.log = lambda: log.read_text(errors="replace")[-6000:]  # type: ignore[attr-defined]
    try:
        fake_slack.ws.wait_connected(timeout=60)
        yield proc
    finally:
        if proc.poll() is None:
            stop_process_group(proc, timeout=20)


def proc_status(pid: str) -> str:
    return ProcessInstance.objects.get(pk=pid).status


@pytest.mark.e2e
def test_a_click_over_the_socket_resumes_the_process_once(socket_process, slack_worker, fake_slack, link):
    ws = fake_slack.ws
    link("U1", VIEW, username="ann")
    pid = services.start_process("expense", {"amount": 250}).process.id
    wait_until(lambda: SlackMessage.objects.filter(process_id=pid, delivery=Delivery.POSTED).exists(), timeout=30,
               message=f"the question to be posted\n{slack_worker.logs()}")
    m = SlackMessage.objects.get(process_id=pid, kind="approve")
    call = next(c for c in fake_slack.calls_to("chat.postMessage", ok_only=True) if c.response["ts"] == m.ts)

    # `/slct status` is answered in the envelope's acknowledgement, as the HTTP endpoint answers.
    env = ws.send_envelope("slash_commands", command_payload(f"status {pid}"))
    reply = ws.wait_ack(env)["payload"]
    assert reply["response_type"] == "ephemeral"
    assert f"`{pid}` is *running*" in reply["text"]
    assert f"Main waits for an answer to Slack question #{m.pk}, then Main_CheckApprove" in reply["text"]

    # Malformed envelopes are acknowledged and change nothing.
    bad = click_payload(call, button(call, "slct_approve"), user="UEVIL")
    bad["actions"] = 5
    for kind, payload in (("interactive", bad), ("interactive", "nope"), ("slash_commands", {"user_id": "x"})):
        env = ws.send_envelope(kind, payload)
        assert ws.wait_ack(env).get("payload", {}).get("text", "malformed").startswith("malformed")
    time.sleep(1.0)  # give a (wrongly) woken worker the time to run a step
    assert proc_status(pid) == "running" and not ExternalSend.objects.exists()
    m.refresh_from_db()
    assert m.status == Status.OPEN

    # The click: acknowledged with no payload; the process resumes with the clicker as the answerer.
    click = click_payload(call, button(call, "slct_approve"), user="UFIN", username="fiona")
    env = ws.send_envelope("interactive", click)
    assert ws.wait_ack(env) == {"envelope_id": env}
    wait_until(lambda: proc_status(pid) == "done", timeout=30,
               message=f"the process to resume\n{slack_worker.logs()}\n{socket_process.log()}")
    assert ProcessInstance.objects.get(pk=pid).output == {"approved": True, "by": "UFIN", "timed_out": False}
    wait_until(lambda: "Approved by <@UFIN>" in (fake_slack.messages[(m.slack_channel, m.ts)]["text"] or ""),
               timeout=15, message=slack_worker.logs())

    # Slack retries: the same envelope again is acknowledged the same way, handled once; the same
    # click in a new envelope (a retry after a reconnect) delivers nothing and tells the clicker.
    ws.send_envelope("interactive", click, envelope_id=env, retry_attempt=1, retry_reason="timeout")
    assert ws.wait_ack(env, n=2) == {"envelope_id": env}
    again = ws.send_envelope("interactive", click)
    assert ws.wait_ack(again) == {"envelope_id": again}
    eph = fake_slack.wait_for("chat.postEphemeral", 1)
    assert eph[0].params["user"] == "UFIN" and "already" in eph[0].params["text"]
    time.sleep(0.5)
    assert len(fake_slack.calls_to("chat.postEphemeral")) == 1  # the repeated envelope told nobody
    assert Event.objects.filter(process_id=pid, method="Main_CheckApprove").count() == 1
    (send,) = ExternalSend.objects.filter(channel=m.reply_channel)
    assert send.status == "delivered" and send.sender["slack_user"] == "UFIN" and send.sender["via"] == "slack"
    m.refresh_from_db()
    assert (m.status, m.answered_by, m.answered_by_name) == (Status.ANSWERED, "UFIN", "fiona")

    # The status afterwards, and a clean stop on SIGTERM.
    env = ws.send_envelope("slash_commands", command_payload(f"status {pid}", trigger="trig-2"))
    assert f"`{pid}` is *done*" in ws.wait_ack(env)["payload"]["text"]
    os.killpg(socket_process.pid, signal.SIGTERM)
    assert socket_process.wait(timeout=20) == 0, socket_process.log()
    assert "Socket Mode stopped" in socket_process.log()


@pytest.mark.e2e
def test_a_disconnect_request_reconnects_through_apps_connections_open(socket_process, slack_worker, fake_slack, link):
    ws = fake_slack.ws
    link("U1", VIEW)
    first = ws.wait_connected()
    ws.send_text(json.dumps({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake"}}))
    wait_until(lambda: len(fake_slack.calls_to("apps.connections.open")) >= 2 and len(ws.connections) >= 2,
               timeout=30, message=socket_process.log())
    wait_until(lambda: not first.open, timeout=10, message="the old connection to be closed")
    pid = services.start_process("slack-test-approve", {"channel": "#finance", "timeout": 600}).process.id
    env = ws.send_envelope("slash_commands", command_payload(f"status {pid}"))
    assert pid in ws.wait_ack(env)["payload"]["text"]
