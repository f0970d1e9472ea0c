"""Operator actions: each confirmed first, each through the service layer, each permission-checked;
service errors become admin messages, not 500s."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from slct_workflows import clock, services

from slct_workflows.runtime import dispatch
from slct_workflows.models import Event, ExternalSend, Goroutine, ProcessInstance

from .conftest import messages_of
from .workflows import FLAKY

pytestmark = pytest.mark.django_db

ADMIN = "/admin/slct_workflows"
P = f"{ADMIN}/processinstance"
C = f"{ADMIN}/channel"


def status(pid: str) -> str:
    return ProcessInstance.objects.get(pk=pid).status


@pytest.fixture
def failed(run, settings):
    settings.SLCT_MAX_ATTEMPTS = 1
    FLAKY["fail"] = True
    pid = run.start("admin-test-flaky")
    assert status(pid) == "failed"
    yield pid
    FLAKY["fail"] = True


# -- cancel -----------------------------------------------------------------------------------------

def test_cancel_asks_first_then_cancels(run, admin_client_):
    pid = run.start("reminder")
    r = admin_client_.get(f"{P}/{pid}/cancel/")
    assert r.status_code == 200
    content = r.content.decode()
    assert "Cancel process" in content and 'name="confirm" value="yes"' in content
    assert "Main waits to receive on `answers`" in content  # what will stop
    assert status(pid) == "running"
    # A POST without the confirmation changes nothing either.
    assert admin_client_.post(f"{P}/{pid}/cancel/", {}).status_code == 200
    assert status(pid) == "running"

    r = admin_client_.post(f"{P}/{pid}/cancel/", {"confirm": "yes", "reason": "customer withdrew"}, follow=True)
    assert r.redirect_chain[-1][0] == f"{P}/{pid}/change/"
    assert ("success", f"Process {pid} was cancelled; its goroutines stopped.") in messages_of(r)
    assert status(pid) == "cancelled"
    assert set(Goroutine.objects.filter(process_id=pid).values_list("status", flat=True)) == {"cancelled"}
    assert Event.objects.filter(process_id=pid, kind="cancel").get().detail == {"reason": "customer withdrew"}


def test_cancelling_a_finished_process_is_an_error_message_not_a_500(run, admin_client_):
    pid = run.start("reminder")
    run.send("answers", "done")
    assert status(pid) == "done"
    r = admin_client_.post(f"{P}/{pid}/cancel/", {"confirm": "yes"}, follow=True)
    assert r.status_code == 200
    [(level, text)] = messages_of(r)
    assert level == "error"
    assert "only running or failed processes can be cancelled" in text
    assert status(pid) == "done"


def test_cancel_and_retry_need_change_processinstance(run, failed, make_client):
    pid = run.start("reminder")
    client = make_client(*[
        "view_processinstance", "view_channel", "operator_send", "change_channel", "change_goroutine",
    ])
    for url in (f"{P}/{pid}/cancel/", f"{P}/{failed}/retry/", f"{P}/sweep/"):
        assert client.get(url).status_code == 403, url
        assert client.post(url, {"confirm": "yes"}).status_code == 403, url
    assert status(pid) == "running" and status(failed) == "failed"
    # The same user with the permission can.
    operator = make_client("view_processinstance", "change_processinstance")
    assert operator.post(f"{P}/{pid}/cancel/", {"confirm": "yes"}).status_code == 302
    assert status(pid) == "cancelled"


def test_unknown_process_is_404(admin_client_):
    assert admin_client_.get(f"{P}/nope/cancel/").status_code == 404
    assert admin_client_.post(f"{P}/nope/retry/", {"confirm": "yes"}).status_code == 404


# -- retry ------------------------------------------------------------------------------------------

def test_retry_asks_first_then_puts_the_process_back_to_work(run, failed, admin_client_):
    r = admin_client_.get(f"{P}/{failed}/retry/")
    assert r.status_code == 200
    assert "RuntimeError: boom: the approval service is down" in r.content.decode()
    assert status(failed) == "failed"

    FLAKY["fail"] = False
    r = admin_client_.post(f"{P}/{failed}/retry/", {"confirm": "yes"}, follow=True)
    assert [lvl for lvl, _ in messages_of(r)] == ["success"]
    assert status(failed) == "running"
    run.run()
    proc = ProcessInstance.objects.get(pk=failed)
    assert proc.status == "done" and proc.output == {"ok": True}


def test_retrying_a_running_process_is_an_error_message(run, admin_client_):
    pid = run.start("reminder")
    r = admin_client_.post(f"{P}/{pid}/retry/", {"confirm": "yes"}, follow=True)
    [(level, text)] = messages_of(r)
    assert level == "error" and "only failed processes can be retried" in text
    assert status(pid) == "running"


def test_bulk_cancel_from_the_list_confirms_then_reports_each(run, admin_client_):
    a = run.start("reminder", {"answers": "a1", "nudges": "n1"})
    b = run.start("reminder", {"answers": "a2", "nudges": "n2"})
    run.send("a2", "x")  # b is done: cannot be cancelled
    data = {"action": "cancel_selected", "_selected_action": [a, b]}
    r = admin_client_.post(f"{P}/", data)
    assert r.status_code == 200 and "Yes, cancel" in r.content.decode()
    assert status(a) == "running"
    r = admin_client_.post(f"{P}/", {**data, "confirm": "yes"}, follow=True)
    msgs = messages_of(r)
    assert ("success", "Cancel: 1 process(es).") in msgs
    assert any(level == "error" and b in text for level, text in msgs)
    assert status(a) == "cancelled" and status(b) == "done"


def test_bulk_actions_need_the_permission(run, make_client):
    run.start("reminder")
    client = make_client("view_processinstance")
    content = client.get(f"{P}/").content.decode()
    assert "cancel_selected" not in content


# -- send -------------------------------------------------------------------------------------------

def send_key(content: str) -> str:
    return re.search(r'name="key" value="(admin-[0-9a-f]{32})"', content).group(1)


def test_send_from_the_channel_page_reviews_then_delivers_and_the_process_advances(run, admin_client_):
    pid = run.start("reminder")
    page = admin_client_.get(f"{C}/answers/change/").content.decode()
    key = send_key(page)
    # Step 1: review. Nothing is sent yet.
    r = admin_client_.post(f"{C}/answers/send/", {"value": '{"approved": true}', "wait": "on", "key": key})
    assert r.status_code == 200
    review = r.content.decode()
    assert "Yes, send it" in review and f'value="{key}"' in review
    assert ExternalSend.objects.count() == 0
    # Step 2: confirm.
    r = admin_client_.post(
        f"{C}/answers/send/", {"value": '{"approved": true}', "wait": "on", "key": key, "confirm": "yes"}, follow=True
    )
    assert r.redirect_chain[-1][0] == f"{C}/answers/change/"
    [(level, text)] = messages_of(r)
    assert level == "success" and text.startswith('Sent {"approved": true} into answers: delivered to')
    assert ExternalSend.objects.get(pk=key).status == "delivered"
    run.run()
    proc = ProcessInstance.objects.get(pk=pid)
    assert proc.status == "done" and proc.output == {"answer": {"approved": True}, "reminders": 0}


def test_a_double_submitted_send_delivers_once(run, admin_client_):
    pid = run.start("counter", {"channel": "cnt"})
    key = send_key(admin_client_.get(f"{C}/cnt/send/").content.decode())
    data = {"value": "1", "wait": "on", "key": key, "confirm": "yes"}
    first = admin_client_.post(f"{C}/cnt/send/", data, follow=True)
    run.run()
    second = admin_client_.post(f"{C}/cnt/send/", data, follow=True)
    run.run()
    assert messages_of(first)[0][0] == "success"
    [(level, text)] = messages_of(second)
    assert level == "warning" and "already submitted" in text and "sent once" in text
    assert ExternalSend.objects.count() == 1
    assert ProcessInstance.objects.get(pk=pid).state["counter"] == 1
    # Each rendering of the form has its own key: a new form sends again.
    assert send_key(admin_client_.get(f"{C}/cnt/send/").content.decode()) != key


def test_invalid_json_is_refused_with_the_form_again(run, admin_client_):
    run.start("reminder")
    key = send_key(admin_client_.get(f"{C}/answers/send/").content.decode())
    for bad in ("yes", "{'a': 1}", "", "[1,"):
        r = admin_client_.post(f"{C}/answers/send/", {"value": bad, "wait": "on", "key": key, "confirm": "yes"})
        assert r.status_code == 400, bad
        assert "errorlist" in r.content.decode()
    r = admin_client_.post(f"{C}/answers/send/", {"value": "1", "key": "not-a-key", "confirm": "yes"})
    assert r.status_code == 400
    assert ExternalSend.objects.count() == 0
    assert Goroutine.objects.get(name="Main").status == "blocked"


def test_send_without_waiting_and_nobody_receiving_is_an_error_message(run, admin_client_):
    services.create_channel("quiet")
    key = send_key(admin_client_.get(f"{C}/quiet/send/").content.decode())
    r = admin_client_.post(f"{C}/quiet/send/", {"value": '"hi"', "key": key, "confirm": "yes"}, follow=True)
    [(level, text)] = messages_of(r)
    assert level == "error" and "no receiver is waiting on channel 'quiet'" in text
    assert services.get_channel("quiet").buffer.count() == 0


def test_send_into_a_closed_channel_is_an_error_message(run, admin_client_):
    services.create_channel("shut")
    services.close_channel("shut")
    key = send_key(admin_client_.get(f"{C}/shut/send/").content.decode())
    r = admin_client_.post(f"{C}/shut/send/", {"value": "1", "wait": "on", "key": key, "confirm": "yes"}, follow=True)
    [(level, text)] = messages_of(r)
    assert level == "error" and "closed" in text
    assert ExternalSend.objects.count() == 0


def test_send_needs_operator_send(run, make_client):
    pid = run.start("reminder")
    client = make_client("view_processinstance", "view_channel", "change_channel", "change_processinstance")
    assert 'id="slct-send"' not in client.get(f"{C}/answers/change/").content.decode()
    assert client.get(f"{C}/answers/send/").status_code == 403
    data = {"value": "1", "wait": "on", "key": "admin-" + "a" * 32, "confirm": "yes"}
    assert client.post(f"{C}/answers/send/", data).status_code == 403
    assert ExternalSend.objects.count() == 0 and status(pid) == "running"
    sender = make_client("view_channel", "operator_send")
    assert sender.post(f"{C}/answers/send/", data).status_code == 302
    assert ExternalSend.objects.count() == 1


# -- close ------------------------------------------------------------------------------------------

def test_close_asks_first_then_closes_and_wakes_the_receivers(run, admin_client_):
    pid = run.start("reminder")
    r = admin_client_.get(f"{C}/answers/close/")
    assert r.status_code == 200 and f"{pid}/Main" in r.content.decode()
    assert not services.get_channel("answers").closed
    r = admin_client_.post(f"{C}/answers/close/", {"confirm": "yes"}, follow=True)
    assert [lvl for lvl, _ in messages_of(r)] == ["success"]
    assert services.get_channel("answers").closed
    run.run()
    assert ProcessInstance.objects.get(pk=pid).output == {"answer": None, "reminders": 0}
    r = admin_client_.post(f"{C}/answers/close/", {"confirm": "yes"}, follow=True)
    assert messages_of(r) == [("info", "Channel answers was already closed; nothing changed.")]


def test_close_needs_change_channel(run, make_client):
    run.start("reminder")
    client = make_client("view_channel", "operator_send", "change_processinstance")
    assert client.get(f"{C}/answers/close/").status_code == 403
    assert client.post(f"{C}/answers/close/", {"confirm": "yes"}).status_code == 403
    assert not services.get_channel("answers").closed


# -- sweep ------------------------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.woken = []

    def wake(self, ids, at_front=False):
        self.woken.extend(ids)

    def wake_at(self, gid, when):
        pass

    def timers_at(self, when):
        pass

    def outbox(self, ids):
        pass

    def outbox_at(self, oid, when):
        pass


def test_sweep_asks_first_then_reenqueues_lost_work(run, admin_client_):
    started = services.start_process("reminder", {"every": 60})  # runnable; its wake-up went nowhere
    clock.advance(timedelta(seconds=30))  # past the grace period
    r = admin_client_.get(f"{P}/sweep/")
    assert r.status_code == 200 and "Yes, run the sweep" in r.content.decode()
    recorder = Recorder()
    previous = dispatch.use(recorder)
    try:
        assert recorder.woken == []
        r = admin_client_.post(f"{P}/sweep/", {"confirm": "yes"}, follow=True)
    finally:
        dispatch.use(previous)
    main = Goroutine.objects.get(process=started.process, name="Main")
    assert recorder.woken == [main.id]
    assert messages_of(r) == [(
        "success", "Recovery sweep done: re-enqueued 1 runnable goroutine(s), 0 due timer(s) and 0 outbox job(s).",
    )]


def test_sweep_with_redis_unreachable_is_an_error_message(run, admin_client_, settings, unused_port):
    services.start_process("reminder")
    clock.advance(timedelta(seconds=30))
    settings.RQ_QUEUES = {settings.SLCT_QUEUE: {"URL": f"redis://127.0.0.1:{unused_port}/0"}}
    previous = dispatch.use(dispatch.RQDispatcher())
    try:
        r = admin_client_.post(f"{P}/sweep/", {"confirm": "yes"}, follow=True)
    finally:
        dispatch.use(previous)
    assert r.status_code == 200
    [(level, text)] = messages_of(r)
    assert level == "error" and "the job queue (Redis) is unavailable" in text
