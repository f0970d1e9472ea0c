"""The author's helpers, run in-process (WorkflowRunner) against the fake Slack Web API."""
from __future__ import annotations

from datetime import timedelta

import pytest

import tests.slack.workflows  # noqa: F401  (registers the test definitions)
from slack_integration import services as slack_services
from slack_integration import slack
from slack_integration.models import Delivery, SlackMessage, Status
from slct_workflows import services
from slct_workflows.models import Outbox, OutboxStatus, ProcessInstance
from tests.slack.conftest import TOKEN, actions_block, button, click

pytestmark = pytest.mark.django_db


def the_message(pid: str) -> SlackMessage:
    return SlackMessage.objects.get(process_id=pid)


def test_approve_posts_buttons_once_after_commit_and_stores_channel_and_ts(runner, slack_settings, fake_slack):
    pid = runner.start("expense", {"amount": 120})
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 1
    call = posts[0]
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.params["channel"] == "#finance"
    assert call.params["text"] == "Approve expense of 120?"
    elements = actions_block(call.params["blocks"])["elements"]
    assert [(e["action_id"], e["text"]["text"], e.get("style")) for e in elements] == [
        ("slct_approve", "Approve", "primary"), ("slct_reject", "Reject", "danger"),
    ]
    m = the_message(pid)
    assert (m.kind, m.status, m.delivery) == ("approve", Status.OPEN, Delivery.POSTED)
    assert m.slack_channel == call.response["channel"] == "CFINANCE"
    assert m.ts == call.response["ts"]
    assert m.goroutine == "Main"
    # The goroutine waits on the reply channel or the timer, and the Reminder on its own timer.
    assert runner.waits(pid) == {"Main": [f"recv {m.reply_channel}", "timer"], "Reminder": ["timer"]}
    assert abs((m.deadline - runner.now()).total_seconds() - 3600) < 5
    # Running again posts nothing new: the outbox row is done.
    runner.run()
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert Outbox.objects.get(func="slack_integration.jobs.post_question").status == OutboxStatus.DONE


def test_click_resumes_the_process_with_the_result_and_updates_the_message(runner, slack_settings, fake_slack, client):
    pid = runner.start("expense", {"amount": 80})
    call = fake_slack.calls_to("chat.postMessage")[0]
    response = click(client, call, button(call, "slct_approve"), user="U777", username="bob")
    assert response.status_code == 200
    runner.run()
    runner.assert_finished(pid, {"approved": True, "by": "U777", "timed_out": False})
    m = the_message(pid)
    assert (m.status, m.answered_by, m.answered_by_name, m.answered_via) == (Status.ANSWERED, "U777", "bob", "slack")
    assert runner.process(pid).output["by"] == "U777"
    updates = fake_slack.calls_to("chat.update", ok_only=True)
    assert len(updates) == 1
    assert (updates[0].params["channel"], updates[0].params["ts"]) == (m.slack_channel, m.ts)
    shown = fake_slack.messages[(m.slack_channel, m.ts)]
    assert not [b for b in shown["blocks"] if b["type"] == "actions"], "the buttons must disappear"
    assert "Approved by <@U777>" in shown["text"]


def test_reject_gives_approved_false_with_the_user(runner, slack_settings, fake_slack, client):
    pid = runner.start("slack-test-approve", {"text": "Ship it?", "channel": "C0DEPLOY"})
    call = fake_slack.calls_to("chat.postMessage")[0]
    assert call.params["channel"] == "C0DEPLOY"
    assert click(client, call, button(call, "slct_reject"), user="U9").status_code == 200
    runner.run()
    out = runner.process(pid).output
    assert (out["approved"], out["user"], out["timed_out"], out["via"]) == (False, "U9", False, "slack")
    assert out["answered_at"].startswith("2023-11-14T22:15:00")  # Slack's action_ts 1700000100.0002
    assert "Rejected by <@U9>" in fake_slack.messages[(call.response["channel"], call.response["ts"])]["text"]


def test_timeout_calls_back_with_timed_out_and_updates_the_message(runner, slack_settings, fake_slack):
    pid = runner.start("expense", {"amount": 5, "timeout_seconds": 3600, "remind_after_seconds": 7200})
    m = the_message(pid)
    runner.advance(minutes=59)
    assert runner.process(pid).status == "running"
    assert fake_slack.calls_to("chat.update") == []
    runner.advance(minutes=1)
    runner.assert_finished(pid, {"approved": False, "by": None, "timed_out": True})
    m.refresh_from_db()
    assert m.status == Status.TIMED_OUT
    updates = fake_slack.calls_to("chat.update", ok_only=True)
    assert len(updates) == 1
    shown = fake_slack.messages[(m.slack_channel, m.ts)]
    assert "Timed out" in shown["text"]
    assert not [b for b in shown["blocks"] if b["type"] == "actions"]


def test_the_reminder_goroutine_posts_a_plain_message(runner, slack_settings, fake_slack):
    pid = runner.start("expense", {"amount": 5})
    runner.advance(minutes=30)
    posts = fake_slack.calls_to("chat.postMessage", ok_only=True)
    assert [p.params["text"] for p in posts] == ["Approve expense of 5?", "An expense is still waiting for approval"]
    assert not [b for b in posts[1].params["blocks"] if b["type"] == "actions"]
    plain = SlackMessage.objects.get(process_id=pid, kind="post")
    assert (plain.status, plain.delivery, plain.ts, plain.goroutine) == (
        Status.INFO, Delivery.POSTED, posts[1].response["ts"], "Reminder")
    assert runner.process(pid).status == "running"  # Main still waits for the approval


def test_cancel_closes_the_question_and_updates_the_message(runner, slack_settings, fake_slack):
    pid = runner.start("expense", {"amount": 5})
    m = the_message(pid)
    services.cancel_process(pid, "changed my mind")
    runner.run()
    m.refresh_from_db()
    assert m.status == Status.CANCELLED
    shown = fake_slack.messages[(m.slack_channel, m.ts)]
    assert "Cancelled" in shown["text"]
    assert not [b for b in shown["blocks"] if b["type"] == "actions"]


def test_another_goroutine_finishing_the_process_closes_the_question(runner, slack_settings, fake_slack, client):
    pid = runner.start("slack-test-other-path", {"watch_seconds": 60})
    call = fake_slack.calls_to("chat.postMessage")[0]
    runner.advance(seconds=60)
    runner.assert_finished(pid, {"by": "watchdog"})
    m = the_message(pid)
    assert m.status == Status.CLOSED
    assert "went on without" in fake_slack.messages[(m.slack_channel, m.ts)]["text"]
    # A late click delivers nothing and is told so, politely and only to the clicker.
    assert click(client, call, button(call, "slct_approve"), user="U5").status_code == 200
    runner.run()
    assert runner.process(pid).output == {"by": "watchdog"}
    eph = fake_slack.calls_to("chat.postEphemeral", ok_only=True)
    assert len(eph) == 1 and eph[0].params["user"] == "U5" and "no longer open" in eph[0].params["text"]


def test_a_step_that_fails_after_asking_records_and_posts_nothing(runner, slack_settings, fake_slack, settings):
    settings.SLCT_MAX_ATTEMPTS = 2
    pid = runner.start("slack-test-fail", {})
    runner.advance(seconds=30)
    assert runner.process(pid).status == "failed"
    assert not SlackMessage.objects.filter(process_id=pid).exists()
    assert not Outbox.objects.filter(process_id=pid).exists()
    assert fake_slack.calls == []


def test_bad_arguments_fail_the_step_with_a_clear_error(runner, slack_settings, fake_slack):
    pid = runner.start("slack-test-bad", {})
    proc = runner.process(pid)
    assert proc.status == "failed"
    assert "choose() needs at least one option" in proc.error
    assert fake_slack.calls == []


def test_rate_limit_429_is_retried_after_retry_after(runner, slack_settings, fake_slack):
    fake_slack.fail_next("chat.postMessage", status=429, headers={"Retry-After": "7"})
    pid = runner.start("slack-test-approve", {"channel": "#finance"})
    m = the_message(pid)
    assert m.ts == "" and m.delivery == Delivery.PENDING
    row = Outbox.objects.get(process_id=pid, func="slack_integration.jobs.post_question")
    assert row.status == OutboxStatus.PENDING and "429" in row.last_error
    assert 6.5 <= (row.not_before - runner.now()).total_seconds() <= 7.5
    runner.advance(seconds=6)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # not before Retry-After
    runner.advance(seconds=1)
    posts = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [429, 200]
    m.refresh_from_db()
    assert m.ts == posts[1].response["ts"] and m.delivery == Delivery.POSTED


def test_server_errors_are_retried_and_permanent_errors_recorded(runner, slack_settings, fake_slack):
    fake_slack.fail_next("chat.postMessage", status=503, body={"ok": False, "error": "service_unavailable"})
    pid = runner.start("slack-test-approve", {"channel": "#finance"})
    runner.advance(seconds=10)
    assert the_message(pid).delivery == Delivery.POSTED
    pid2 = runner.start("slack-test-approve", {"channel": "#nowhere"})
    m2 = the_message(pid2)
    assert m2.delivery == Delivery.FAILED and "channel_not_found" in m2.last_error
    assert Outbox.objects.get(process_id=pid2).status == OutboxStatus.DONE  # not retried forever


def test_without_credentials_questions_are_recorded_and_not_posted(runner, no_slack_credentials, fake_slack):
    pid = runner.start("slack-test-approve", {"text": "Approve without Slack?"})
    m = the_message(pid)
    assert (m.status, m.delivery, m.ts) == (Status.OPEN, Delivery.NO_CREDENTIALS, "")
    assert fake_slack.calls == []


def test_result_decoding_reads_who_from_the_provenance_only():
    Result = slack.Result
    timer = Result.from_delivery(None, {"timer": "2024-01-02T03:04:05+00:00"}, False)
    assert timer == Result(timed_out=True) and (timer.approved, timer.answered) == (False, False)
    closed = Result.from_delivery(None, {"process": "p", "goroutine": "Closer"}, True)
    assert closed == Result(closed=True) and (closed.approved, closed.timed_out, closed.answered) == (False, False, False)
    # Whatever the value claims about who answered is ignored: the provenance says who.
    value = {"kind": "approve", "approved": True, "answered_at": "2024-01-02T03:04:05+00:00",
             "user": "UBOSS", "user_name": "boss", "via": "admin", "timed_out": True}
    source = {"external": "k", "sender": {"via": "slack", "slack_user": "U1", "user": "ann", "user_id": 3,
                                          "answer": True, "name": "annie"}}
    r = Result.from_delivery(value, source, False)
    assert (r.approved, r.user, r.user_name, r.django_user, r.via, r.timed_out, r.answered) == (
        True, "U1", "annie", "ann", "slack", False, True)
    assert r.answered_at.year == 2024
    admin = Result.from_delivery({"kind": "ask", "text": "eu-west-1"}, {"external": "k", "sender": {
        "via": "admin", "user": "olga", "user_id": 1, "answer": True, "name": "Olga Ops"}}, False)
    assert (admin.text, admin.user, admin.user_name, admin.django_user, admin.via) == (
        "eu-west-1", "olga", "Olga Ops", "olga", "admin")
    # "approved" only means something for approve questions, and only True is true.
    assert not Result.from_delivery({"kind": "approve", "approved": "yes"}, source, False).approved
    assert not Result.from_delivery({"kind": "ask", "approved": True}, source, False).approved


@pytest.mark.parametrize("value,source", [
    (None, None),  # what `null` into the reply channel used to be: a timeout
    (None, {"external": "k"}),
    (True, {"external": "k", "sender": {"via": "slack", "slack_user": "U1", "answer": True}}),
    ({"kind": "approve", "approved": True, "user": "UBOSS"}, {"external": "k"}),
    ({"kind": "approve", "approved": True}, {"external": "k", "sender": {"via": "rest", "user": "mallory"}}),
    ({"kind": "approve", "approved": True}, {"external": "k", "sender": {"via": "slack", "slack_user": "U1"}}),
    ({"kind": "approve", "approved": True}, {"external": "k", "sender": {"via": "rest", "answer": True}}),
    ({"kind": "approve", "approved": True}, {"process": "p", "goroutine": "Main", "seq": 3}),
], ids=["null", "null-external", "bare-true", "no-sender", "rest", "not-an-answer", "answer-via-rest", "a-step"])
def test_values_without_answer_provenance_are_refused(value, source):
    with pytest.raises(slack.UnverifiedAnswer, match="not an answer given in Slack or on the admin"):
        slack.Result.from_delivery(value, source, False)


def test_server_code_sending_into_the_reply_channel_fails_the_step_instead_of_answering(
        runner, slack_settings, fake_slack):
    """Trusted code (here the runner's send, no sender) can reach a private channel, but what it
    sends is not an answer: the callback's step fails at once (no retries), nothing reads as
    approved, and the question shows as closed, not as answered by the claimed user."""
    pid = runner.start("slack-test-approve", {"channel": "#finance", "timeout": 3600})
    m = the_message(pid)
    runner.send(m.reply_channel, {"kind": "approve", "approved": True, "user": "UBOSS", "via": "slack"})
    runner.assert_failed(pid, "UnverifiedAnswer")
    assert ProcessInstance.objects.get(pk=pid).output is None
    m.refresh_from_db()
    assert (m.status, m.answered_by, m.answered_via) == (Status.CLOSED, "", "unverified")
    assert "Approved" not in fake_slack.messages[(m.slack_channel, m.ts)]["text"]


def test_null_into_the_reply_channel_is_not_a_timeout(runner, slack_settings, fake_slack):
    pid = runner.start("slack-test-approve", {"channel": "#finance", "timeout": 3600})
    runner.send(the_message(pid).reply_channel, None)
    runner.assert_failed(pid, "UnverifiedAnswer")
    assert the_message(pid).status != Status.TIMED_OUT


def test_a_closed_reply_channel_reads_as_closed(runner, slack_settings, fake_slack):
    pid = runner.start("slack-test-close", {})
    runner.advance(seconds=30)
    out = runner.process(pid).output
    assert (out["closed"], out["answered"], out["approved"], out["timed_out"], out["user"]) == (
        True, False, False, False, None)
    assert the_message(pid).status == Status.CLOSED


def test_the_testing_helper_answers_like_a_click(runner, slack_settings, fake_slack, django_user_model):
    from slack_integration.testing import answer

    pid = runner.start("expense", {"amount": 120})
    assert answer(pid, approved=True, slack_user="U123ABC") == slack_services.DELIVERED
    runner.run()
    runner.assert_finished(pid, {"approved": True, "by": "U123ABC", "timed_out": False})
    pid = runner.start("slack-test-ask", {"channel": "#x"})
    olga = django_user_model.objects.create_superuser("olga", first_name="Olga")
    answer(pid, text="because", admin_user=olga)
    runner.run()
    out = runner.process(pid).output
    assert (out["text"], out["user"], out["user_name"], out["via"]) == ("because", "olga", "Olga", "admin")


def test_timeout_must_be_positive(runner, slack_settings, fake_slack):
    pid = runner.start("slack-test-approve", {"channel": "#finance", "timeout": 0})
    runner.assert_failed(pid, "timeout must be a positive timedelta")


def test_approvers_refuse_others_with_an_ephemeral_reply(runner, slack_settings, fake_slack, client):
    pid = runner.start("expense", {"amount": 9000, "approvers": ["UBOSS"]})
    call = fake_slack.calls_to("chat.postMessage")[0]
    assert "Only <@UBOSS> can answer" in str(call.params["blocks"])
    assert click(client, call, button(call, "slct_approve"), user="UINTERN").status_code == 200
    runner.run()
    assert runner.process(pid).status == "running"
    assert the_message(pid).status == Status.OPEN
    eph = fake_slack.calls_to("chat.postEphemeral", ok_only=True)
    assert [(e.params["user"], e.params["channel"]) for e in eph] == [("UINTERN", "CFINANCE")]
    assert "only <@UBOSS>" in eph[0].params["text"]
    assert fake_slack.calls_to("chat.update") == []
    assert click(client, call, button(call, "slct_approve"), user="UBOSS").status_code == 200
    runner.run()
    runner.assert_finished(pid, {"approved": True, "by": "UBOSS", "timed_out": False})


def test_reconcile_leaves_open_questions_alone(runner, slack_settings, fake_slack):
    pid = runner.start("expense", {"amount": 1})
    m = the_message(pid)
    assert slack_services.reconcile(m.pk) is False
    assert slack_services.sync_all() == 0
    m.refresh_from_db()
    assert m.status == Status.OPEN
    assert ProcessInstance.objects.get(pk=pid).status == "running"


def test_slack_sync_command_closes_questions_missed_by_the_hooks(runner, slack_settings, fake_slack):
    from io import StringIO

    from django.core.management import call_command

    from slack_integration import listeners
    from slct_workflows import hooks

    pid = runner.start("slack-test-approve", {"channel": "#finance", "timeout": 60})
    hooks.unsubscribe(hooks.SelectFired, listeners.select_fired)
    hooks.unsubscribe(hooks.ProcessEnded, listeners.process_ended)
    try:
        runner.advance(seconds=60)
    finally:
        listeners.connect()
    assert runner.process(pid).output["timed_out"] is True
    m = the_message(pid)
    assert m.status == Status.OPEN  # nobody noticed
    out = StringIO()
    call_command("slack_sync", stdout=out)
    assert "1 question(s) closed" in out.getvalue()
    runner.run()
    m.refresh_from_db()
    assert m.status == Status.TIMED_OUT
    assert "Timed out" in fake_slack.messages[(m.slack_channel, m.ts)]["text"]
