"""The step engine through the in-process runner: failures, declarations, children, close, cancel."""
from __future__ import annotations

import pytest

from slct_workflows import Conflict, InvalidInput, NotFound, services
from slct_workflows.models import Event, Goroutine, PendingCase, ProcessInstance

from . import workflows_for_tests  # noqa: F401  (registers the t-* definitions)

pytestmark = pytest.mark.django_db


def test_a_raising_step_rolls_back_and_is_retried_with_backoff(runner, settings):
    settings.SLCT_MAX_ATTEMPTS = 3
    pid = runner.start("t-flaky", {"fail_times": 2})
    g = Goroutine.objects.get(process_id=pid)
    assert g.attempts == 1 and g.retry_at is not None and "boom 1" in g.last_error
    assert runner.process(pid).status == "running"
    runner.advance(seconds=1)  # first backoff: 1 s
    assert Goroutine.objects.get(process_id=pid).attempts == 2
    runner.advance(seconds=1)
    assert runner.process(pid).status == "running"  # second backoff is 2 s
    runner.advance(seconds=1)
    runner.assert_finished(pid, {"ok": True})
    kinds = list(Event.objects.filter(process_id=pid).order_by("seq").values_list("kind", flat=True))
    assert kinds == ["start", "error", "error", "step"]


def test_a_step_failing_past_the_limit_fails_the_process_and_can_be_retried(runner, settings):
    settings.SLCT_MAX_ATTEMPTS = 2
    pid = runner.start("t-flaky", {"fail_times": 2})
    runner.advance(seconds=5)
    proc = runner.process(pid)
    assert proc.status == "failed"
    assert "boom 2" in proc.error and "Traceback" in proc.error
    assert Goroutine.objects.get(process_id=pid).status == "failed"
    services.retry_process(pid)
    runner.run()
    runner.assert_finished(pid, {"ok": True})
    with pytest.raises(Conflict):
        services.retry_process(pid)


@pytest.mark.parametrize("mode,message", [
    ("default-not-last", "default() must be the last case"),
    ("other-goroutine", "belongs to goroutine Helper"),
    ("bad-name", "does not follow the {Goroutine}_{Status} naming rule"),
    ("not-json", "is not JSON"),
    ("state-not-json", "the state is not JSON"),
    ("other-object", "is not a method of this process"),
    ("no-to", "without .to(method)"),
    ("empty-select", "select() with no cases"),
])
def test_bad_declarations_fail_at_once_naming_process_goroutine_and_method(runner, mode, message):
    pid = runner.start("t-bad", mode)
    proc = runner.process(pid)
    assert proc.status == "failed"
    assert message in proc.error
    assert f"process t-bad {pid}, goroutine Main, method Main_Start" in proc.error
    assert not PendingCase.objects.filter(goroutine__process_id=pid).exists()  # nothing half-applied


def test_call_starts_a_child_and_wakes_the_parent_with_its_output(runner):
    pid = runner.start("t-parent", {"n": 21})
    runner.assert_finished(pid, {"child": {"double": 42}, "closed": False})
    child = ProcessInstance.objects.get(parent_id=pid)
    assert child.status == "done" and child.output == {"double": 42}


def test_cancelling_a_child_wakes_the_parent_with_closed(runner):
    pid = runner.start("t-parent", {"n": -1})
    child = ProcessInstance.objects.get(parent_id=pid)
    assert runner.waits(child.id)["Main"] == ["recv never"]
    services.cancel_process(child.id)
    runner.run()
    runner.assert_finished(pid, {"child": None, "closed": True})


def test_close_wakes_receivers_after_the_buffer_drains(runner):
    services.create_channel("closer-c", capacity=2)
    runner.send("closer-c", "a")
    runner.send("closer-c", "b")
    runner.close("closer-c")
    pid = runner.start("t-closer", "closer-c")
    runner.assert_finished(pid, [["a", False], ["b", False], [None, True]])
    assert runner.close("closer-c") is False  # double close is a no-op


def test_goroutines_of_one_process_rendezvous_on_a_made_channel(runner):
    pid = runner.start("t-two")
    runner.assert_finished(pid, [3, 2, 1, None])
    assert runner.statuses(pid) == {"Main": "done", "Worker": "done"}


def test_cancel_removes_pending_cases_and_stops_timers(runner):
    pid = runner.start("t-sleeper")
    assert runner.waits(pid) == {"Main": ["timer"]}
    services.cancel_process(pid)
    runner.advance(hours=2)
    assert runner.process(pid).status == "cancelled"
    assert not PendingCase.objects.exists()
    with pytest.raises(Conflict):
        services.cancel_process(pid)


def test_start_is_idempotent_by_id(runner):
    a = services.start_process("t-sleeper", {"x": 1}, id="order-1")
    b = services.start_process("t-sleeper", {"x": 1}, id="order-1")
    assert a.created and not b.created and a.process.pk == b.process.pk
    with pytest.raises(Conflict):
        services.start_process("t-sleeper", {"x": 2}, id="order-1")
    assert ProcessInstance.objects.count() == 1


def test_bad_service_input_changes_nothing(runner):
    with pytest.raises(NotFound):
        services.start_process("no-such-definition")
    with pytest.raises(InvalidInput):
        services.start_process("t-sleeper", {"x": float("nan")})
    with pytest.raises(InvalidInput):
        services.create_channel("c", capacity=-1)
    with pytest.raises(NotFound):
        services.send("missing", 1, "k")
    assert ProcessInstance.objects.count() == 0 and Event.objects.count() == 0


def test_external_send_idempotency_and_outcomes(runner):
    from slct_workflows import ChannelClosed, NoReceiver

    services.create_channel("ext", capacity=1)
    assert services.send("ext", 1, "k1").status == "buffered"
    again = services.send("ext", 1, "k1")
    assert again.repeated and again.status == "buffered"
    with pytest.raises(Conflict):
        services.send("ext", 2, "k1")  # same key, other value
    with pytest.raises(NoReceiver):
        services.send("ext", 2, "k2", wait=False)  # buffer full, nobody waiting
    with pytest.raises(NoReceiver):
        services.send("ext", 2, "k2", wait=False)  # the refusal is remembered
    assert services.send("ext", 3, "k3").status == "waiting"
    services.close_channel("ext")
    assert services.get_send("k3").status == "closed"
    with pytest.raises(ChannelClosed):
        services.send("ext", 4, "k4")
    from slct_workflows.runtime.channels import buffer_values

    assert buffer_values("ext") == [1]


@pytest.mark.parametrize("value", ["nul\x00inside", {"k\x00": 1}, "lone \ud800 surrogate", float("inf")])
def test_values_a_database_cannot_store_are_refused_before_any_write(runner, value):
    services.create_channel("strict", capacity=5)
    with pytest.raises(InvalidInput):
        services.send("strict", value, "k-strict")
    with pytest.raises(InvalidInput):
        services.start_process("t-sleeper", value)
    assert services.send("strict", "emoji \U0001F600 and \\u0000 as text", "k-ok").status == "buffered"
    assert ProcessInstance.objects.count() == 0 and Event.objects.count() == 1


def test_names_follow_one_rule_and_unknown_keys_are_not_found(runner):
    with pytest.raises(InvalidInput):
        services.create_channel("has space")
    with pytest.raises(InvalidInput):
        services.create_channel("big", capacity=10**12)
    for lookup in (services.get_process, services.get_channel, services.get_send):
        with pytest.raises(NotFound):
            lookup("nul\x00id")
    services.create_channel("twice")
    with pytest.raises(Conflict):
        services.create_channel("twice")


def test_a_value_taken_from_a_buffer_remembers_its_sender(runner):
    services.create_channel("buf-src", capacity=2)
    runner.send("buf-src", "hello", key="ext-1")
    pid = runner.start("counter", {"channel": "buf-src"})
    step = Event.objects.get(process_id=pid, method="Main_Count")
    assert step.value == "hello" and step.source == {"external": "ext-1"}


def test_an_operator_can_replace_the_state_deliberately(runner):
    pid = runner.start("counter", {"channel": "st-c"})
    runner.send("st-c", 1)
    seen = runner.process(pid).step_count
    with pytest.raises(InvalidInput):
        services.set_state(pid, {"no_such_field": 1})
    with pytest.raises(Conflict):
        services.set_state(pid, {"counter": 5}, expected_step_count=seen - 1)
    assert runner.state(pid)["counter"] == 1  # refused edits change nothing
    services.set_state(pid, {**runner.state(pid), "counter": 41}, expected_step_count=seen, reason="fix count")
    runner.send("st-c", 2)
    assert runner.state(pid)["counter"] == 42
    edit = Event.objects.get(process_id=pid, kind="state")
    assert edit.detail["reason"] == "fix count" and edit.detail["before"]["counter"] == 1


def test_due_timers_fire_in_bulk_once(runner):
    from datetime import timedelta

    from slct_workflows import clock

    from slct_workflows.runtime import timers

    pids = [runner.start("t-sleeper") for _ in range(3)]
    later = runner.start("counter", {"idle_seconds": 7200, "channel": "bulk-c"})
    clock.advance(timedelta(hours=1, seconds=1))
    fired = timers.fire_due_timers()
    assert len(fired) == 3
    assert timers.fire_due_timers() == []  # consumed: a second run finds nothing
    assert set(Goroutine.objects.filter(pk__in=fired).values_list("next_method", flat=True)) == {"Main_Woke"}
    assert runner.waits(later)["Main"] == ["recv bulk-c", "timer"]  # not due yet, untouched
    runner.run()
    for pid in pids:
        runner.assert_finished(pid, "woke")


def test_cancelling_a_parent_cancels_its_running_children(runner):
    pid = runner.start("t-parent", {"n": -1})
    child = ProcessInstance.objects.get(parent_id=pid)
    services.cancel_process(pid)
    runner.run()  # the outbox job cancels the child after the parent's commit
    child.refresh_from_db()
    assert child.status == "cancelled"
    assert Event.objects.get(process_id=child.id, kind="cancel").detail == {"reason": f"parent {pid} was cancelled"}
    assert runner.process(pid).status == "cancelled"
