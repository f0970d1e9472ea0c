"""End to end: a real `manage.py rqworker` (with RQ's scheduler) runs the processes and the
Slack outbox jobs against the fake Slack; signed clicks come in through the Django app."""
from __future__ import annotations

import json

import pytest

import tests.slack.workflows  # noqa: F401
from slack_integration.models import Delivery, SlackMessage, Status
from slct_workflows import services
from slct_workflows.models import Event, ExternalSend, ProcessInstance
from tests.conftest import wait_until
from tests.slack.conftest import actions_block, button, click_payload, post_signed

pytestmark = pytest.mark.e2e

URL = "/slack/interactivity/"


def proc(pid: str) -> ProcessInstance:
    return ProcessInstance.objects.get(pk=pid)


def posted_question(fake_slack, pid: str, worker):
    wait_until(lambda: SlackMessage.objects.filter(process_id=pid, delivery=Delivery.POSTED).exists(), timeout=30,
               message=f"the question to be posted\n{worker.logs()}")
    m = SlackMessage.objects.get(process_id=pid, kind="approve")
    call = next(c for c in fake_slack.calls_to("chat.postMessage", ok_only=True) if c.response["ts"] == m.ts)
    return m, call


def concurrently(func, n: int) -> list:
    """Run func(test_client) in n threads released together (each thread its own DB connection)."""
    import threading

    from django.db import connection
    from django.test import Client

    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            c = Client()
            barrier.wait()
            results[i] = func(c)
        except Exception as exc:  # reported by the assertion below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def shown(fake_slack, m: SlackMessage) -> dict:
    return fake_slack.messages[(m.slack_channel, m.ts)]


def test_expense_approved_by_a_click(slack_worker, fake_slack, client):
    pid = services.start_process("expense", {"amount": 250}).process.id
    m, call = posted_question(fake_slack, pid, slack_worker)
    assert call.params["channel"] == "#finance" and call.params["text"] == "Approve expense of 250?"
    assert [e["action_id"] for e in actions_block(call.params["blocks"])["elements"]] == ["slct_approve", "slct_reject"]

    body = {"payload": json.dumps(click_payload(call, button(call, "slct_approve"), user="UFIN", username="fiona"))}
    assert post_signed(client, URL, body).status_code == 200
    wait_until(lambda: proc(pid).status == "done", timeout=30, message=f"the process to resume\n{slack_worker.logs()}")
    assert proc(pid).output == {"approved": True, "by": "UFIN", "timed_out": False}

    # The message is updated by a worker job: the outcome instead of the buttons.
    fake_slack.wait_for("chat.update", 1)
    wait_until(lambda: "Approved by <@UFIN>" in (shown(fake_slack, m)["text"] or ""), timeout=10)
    assert not [b for b in shown(fake_slack, m)["blocks"] if b["type"] == "actions"]

    # The same click again (a Slack retry) resumes nothing and gets an ephemeral reply.
    assert post_signed(client, URL, body).status_code == 200
    eph = fake_slack.wait_for("chat.postEphemeral", 1)
    assert eph[0].params["user"] == "UFIN" and "already" in eph[0].params["text"]
    assert Event.objects.filter(process_id=pid, method="Main_CheckApprove").count() == 1
    assert ExternalSend.objects.filter(channel=m.reply_channel).count() == 1
    m.refresh_from_db()
    assert (m.status, m.answered_by, m.answered_by_name) == (Status.ANSWERED, "UFIN", "fiona")


def test_the_same_click_delivered_twice_at_once_resumes_once(slack_worker, fake_slack, client):
    pid = services.start_process("slack-test-approve", {"channel": "#finance", "timeout": 600}).process.id
    m, call = posted_question(fake_slack, pid, slack_worker)
    body = {"payload": json.dumps(click_payload(call, button(call, "slct_reject"), user="U2"))}
    codes = concurrently(lambda c: post_signed(c, URL, body).status_code, 2)
    assert codes == [200, 200]
    wait_until(lambda: proc(pid).status == "done", timeout=30, message=slack_worker.logs())
    out = proc(pid).output
    assert (out["approved"], out["user"], out["timed_out"]) == (False, "U2", False)
    assert Event.objects.filter(process_id=pid, method="Main_Decided").count() == 1
    fake_slack.wait_for("chat.postEphemeral", 1)
    wait_until(lambda: "Rejected by <@U2>" in (shown(fake_slack, m)["text"] or ""), timeout=10)


def test_a_forged_click_delivers_nothing(slack_worker, fake_slack, client):
    pid = services.start_process("slack-test-approve", {"channel": "#finance", "timeout": 600}).process.id
    m, call = posted_question(fake_slack, pid, slack_worker)
    body = {"payload": json.dumps(click_payload(call, button(call, "slct_approve"), user="UEVIL"))}
    assert post_signed(client, URL, body, secret="guessed-secret").status_code == 401
    assert post_signed(client, URL, body, signature="v0=" + "f" * 64).status_code == 401
    import time

    time.sleep(1.5)  # give a (wrongly) woken worker the time to run a step
    assert proc(pid).status == "running"
    assert not ExternalSend.objects.exists()
    assert fake_slack.calls_to("chat.update") == [] and fake_slack.calls_to("chat.postEphemeral") == []
    m.refresh_from_db()
    assert m.status == Status.OPEN


def test_timeout_resumes_the_process_and_updates_the_message(slack_worker, fake_slack, client):
    pid = services.start_process("expense", {"amount": 7, "timeout_seconds": 2, "remind_after_seconds": 600}).process.id
    m, call = posted_question(fake_slack, pid, slack_worker)
    wait_until(lambda: proc(pid).status == "done", timeout=30,
               message=f"the timeout to fire (RQ scheduler)\n{slack_worker.logs()}")
    assert proc(pid).output == {"approved": False, "by": None, "timed_out": True}
    wait_until(lambda: "Timed out" in (shown(fake_slack, m)["text"] or ""), timeout=15,
               message=f"chat.update after the timeout\n{slack_worker.logs()}")
    assert not [b for b in shown(fake_slack, m)["blocks"] if b["type"] == "actions"]
    m.refresh_from_db()
    assert m.status == Status.TIMED_OUT
    # A click after the timeout delivers nothing.
    body = {"payload": json.dumps(click_payload(call, button(call, "slct_approve"), user="ULATE"))}
    assert post_signed(client, URL, body).status_code == 200
    eph = fake_slack.wait_for("chat.postEphemeral", 1)
    assert eph[0].params["user"] == "ULATE" and "no longer open" in eph[0].params["text"]
    assert not ExternalSend.objects.exists()


def test_a_rate_limited_post_is_retried_after_retry_after(slack_worker, fake_slack):
    fake_slack.fail_next("chat.postMessage", status=429, headers={"Retry-After": "2"})
    pid = services.start_process("slack-test-approve", {"channel": "#finance", "timeout": 600}).process.id
    m, call = posted_question(fake_slack, pid, slack_worker)
    attempts = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 2.0  # Retry-After honoured
    assert m.ts == attempts[1].response["ts"]


def test_cancel_updates_the_message(slack_worker, fake_slack):
    pid = services.start_process("slack-test-approve", {"channel": "#finance", "timeout": 600}).process.id
    m, call = posted_question(fake_slack, pid, slack_worker)
    services.cancel_process(pid)
    wait_until(lambda: "Cancelled" in (shown(fake_slack, m)["text"] or ""), timeout=15,
               message=f"chat.update after cancel\n{slack_worker.logs()}")
    m.refresh_from_db()
    assert m.status == Status.CANCELLED


def test_racing_approvers_only_one_answer_lands(slack_worker, fake_slack, client):
    pid = services.start_process("slack-test-approve", {"channel": "#finance", "timeout": 600}).process.id
    m, call = posted_question(fake_slack, pid, slack_worker)
    clicks = [("U1", "slct_approve"), ("U2", "slct_reject"), ("U3", "slct_approve"), ("U4", "slct_reject")]
    bodies = [{"payload": json.dumps(click_payload(call, button(call, action), user=user))} for user, action in clicks]
    it = iter(bodies)
    import threading

    lock = threading.Lock()

    def one(c):
        with lock:
            body = next(it)
        return post_signed(c, URL, body).status_code

    assert concurrently(one, len(bodies)) == [200] * len(bodies)
    wait_until(lambda: proc(pid).status == "done", timeout=30, message=slack_worker.logs())
    out = proc(pid).output
    winner = dict(clicks)[out["user"]]
    assert out["approved"] is (winner == "slct_approve")
    assert Event.objects.filter(process_id=pid, method="Main_Decided").count() == 1
    delivered = ExternalSend.objects.filter(channel=m.reply_channel, status="delivered")
    assert delivered.count() == 1 and delivered.get().sender["slack_user"] == out["user"]
    eph = fake_slack.wait_for("chat.postEphemeral", 3)
    assert sorted(e.params["user"] for e in eph) == sorted(u for u, _ in clicks if u != out["user"])
