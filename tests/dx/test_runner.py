"""The test helpers themselves: clock, driving, looking, and assertion messages."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.test import TestCase
from django.utils import timezone

from slct_workflows import clock

from slct_workflows.runtime import dispatch
from slct_workflows.definitions import registry
from slct_workflows.testing import Stuck, WorkflowRunner, forget, isolated_registry

from . import defs
from .defs import NAME, answers


@dataclasses.dataclass
class Clocked:
    """Records p.now() at each step; waits 90 minutes, then finishes."""

    times: list = dataclasses.field(default_factory=list)

    def Main_Start(self, p, input=None):
        self.times.append(p.now().isoformat())
        p.select().after(timedelta(minutes=90)).to(self.Main_Done)

    def Main_Done(self, p):
        self.times.append(p.now().isoformat())
        p.finish(len(self.times))


@dataclasses.dataclass
class Looper:
    n: int = 0

    def Main_Start(self, p, input=None):
        p.select().default().to(self.Main_Loop)

    def Main_Loop(self, p):
        self.n += 1
        p.select().default().to(self.Main_Loop)


@dataclasses.dataclass
class Notifier:
    def Main_Start(self, p, input=None):
        p.on_commit(notify, "#finance", text="hello")
        p.select().recv("never").to(self.Main_Done)

    def Main_Done(self, p, value):
        p.finish()


NOTIFIED: list = []


def notify(channel, text):
    NOTIFIED.append((channel, text))
    return "ok"


@pytest.fixture
def expense(workflow_registry, workflow_runner):
    workflow_registry.add(NAME, defs.ExpenseV1)
    return workflow_runner.start(NAME, {"amount": 42, "note": "lunch"})


# -- starting a version ---------------------------------------------------------------------------

@pytest.fixture
def two_versions(workflow_registry):
    workflow_registry.add(NAME, defs.ExpenseV1, version="1")
    workflow_registry.add(NAME, defs.ExpenseV2, version="2")


def test_start_runs_the_latest_version_or_the_one_asked_for(two_versions, workflow_runner):
    run = workflow_runner
    latest, old = run.start(NAME, {"amount": 1}), run.start(NAME, {"amount": 2}, version="1")
    assert (run.process(latest).version, run.process(old).version) == ("2", "1")
    run.send(answers(latest), True)
    run.send(answers(old), True)
    run.assert_finished(latest, {"by": "v2", "approved": True, "amount": 1})
    run.assert_finished(old, {"by": "v1", "approved": True})
    assert run.describe(old).startswith(f"process {NAME} version 1 {old}: done")


def test_starting_an_unregistered_version_is_refused(two_versions, workflow_runner):
    from slct_workflows import InvalidInput, NotFound
    from slct_workflows.models import ProcessInstance

    with pytest.raises(NotFound, match="has no version '3'"):
        workflow_runner.start(NAME, {"amount": 1}, version="3")
    with pytest.raises(InvalidInput, match="version must be a string"):
        workflow_runner.start(NAME, {"amount": 1}, version=1)
    assert not ProcessInstance.objects.exists()


def test_a_start_with_an_id_and_a_version_is_idempotent(two_versions, workflow_runner):
    from slct_workflows import Conflict

    run = workflow_runner
    assert run.start(NAME, {"amount": 1}, id="exp-v1", version="1") == "exp-v1"
    assert run.start(NAME, {"amount": 1}, id="exp-v1", version="1") == "exp-v1"  # the same start again
    assert run.start(NAME, {"amount": 1}, id="exp-v1") == "exp-v1"  # no version asked: the existing one
    with pytest.raises(Conflict, match="already exists on version '1'"):
        run.start(NAME, {"amount": 1}, id="exp-v1", version="2")
    assert run.process("exp-v1").version == "1"


# -- clock -----------------------------------------------------------------------------------------

def test_the_clock_is_frozen_and_moves_only_when_told(workflow_registry, db):
    start = datetime(2030, 1, 1, 9, 0, tzinfo=dt_timezone.utc)
    workflow_registry.add("dx-clock", Clocked)
    dispatcher = dispatch.get()
    with WorkflowRunner(now=start) as run:
        assert dispatch.get() is not dispatcher  # wake-ups are not sent to Redis
        assert run.now() == start
        pid = run.start("dx-clock")
        assert run.timers(pid) == {"Main": [timedelta(minutes=90)]}
        run.advance(minutes=89, seconds=59)
        run.assert_running(pid)
        assert run.now() == start + timedelta(minutes=89, seconds=59)
        run.advance(seconds=1)  # exactly at the deadline
        run.assert_finished(pid, 2)
        run.assert_state(pid, times=[start.isoformat(), (start + timedelta(minutes=90)).isoformat()])
    # the clock and the dispatcher are back to normal afterwards
    assert abs(clock.now() - timezone.now()) < timedelta(seconds=5)
    assert dispatch.get() is dispatcher


def test_clock_arguments_are_checked(db):
    with pytest.raises(ValueError, match="timezone-aware"):
        WorkflowRunner(now=datetime(2030, 1, 1))
    with WorkflowRunner() as run:
        with pytest.raises(ValueError, match="only moves forward"):
            run.advance(minutes=-1)


def test_advance_to_next_jumps_to_the_earliest_deadline(expense, workflow_runner):
    run = workflow_runner
    assert run.next_deadline() == run.now() + timedelta(minutes=30)
    assert run.advance_to_next() == timedelta(minutes=30)  # the Reminder's timer
    run.assert_state(expense, reminded=1)
    assert run.advance_to_next() == timedelta(minutes=30)  # Main's hour is up
    run.assert_finished(expense, {"by": "v1", "approved": False})
    assert run.next_deadline() is None
    with pytest.raises(AssertionError, match="no timer, retry or delayed outbox job is pending"):
        run.advance_to_next()


def test_advance_to(expense, workflow_runner):
    workflow_runner.advance_to(workflow_runner.now() + timedelta(hours=2))
    workflow_runner.assert_finished(expense)


# -- looking ---------------------------------------------------------------------------------------

def test_waits_targets_statuses_and_describe(expense, workflow_runner):
    run = workflow_runner
    assert run.waits(expense) == {"Main": [f"recv {answers(expense)}", "timer"], "Reminder": ["timer"]}
    assert run.targets(expense) == {"Main": ["Main_Answer", "Main_Timeout"], "Reminder": ["Reminder_Nudge"]}
    assert run.statuses(expense) == {"Main": "blocked", "Reminder": "blocked"}
    text = run.describe(expense)
    assert f"process {NAME} {expense}: running" in text
    assert f"Main: blocked on recv {answers(expense)} -> Main_Answer; timer in 60m -> Main_Timeout" in text
    assert "Reminder: blocked on timer in 30m -> Reminder_Nudge" in text
    assert '"amount": 42' in text
    assert "history: start, Main.Main_Start, Reminder.Reminder_Start" in text


def test_buffer_and_waiting_sends(workflow_runner):
    run = workflow_runner
    result = run.send("nobody-listens", {"x": 1})
    assert result.status == "waiting"
    from slct_workflows import services

    services.create_channel("buffered", capacity=2)
    assert run.send("buffered", 1).status == "buffered"
    assert run.send("buffered", 2).status == "buffered"
    assert run.buffer("buffered") == [1, 2]


def test_outbox_effects_can_be_held_back_or_run(workflow_registry, db):
    workflow_registry.add("dx-notify", Notifier)
    NOTIFIED.clear()
    with WorkflowRunner(run_outbox=False) as run:
        pid = run.start("dx-notify")
        assert run.outbox(pid) == [{
            "func": f"{__name__}.notify", "args": ["#finance"], "kwargs": {"text": "hello"},
            "status": "pending", "result": None, "error": "",
        }]
        assert NOTIFIED == []
        run.run_outbox = True
        run.run()  # now the held-back effect runs, once
        assert NOTIFIED == [("#finance", "hello")]
        assert [(o["status"], o["result"]) for o in run.outbox(pid)] == [("done", "ok")]
        run.run()
        assert NOTIFIED == [("#finance", "hello")]


# -- failures --------------------------------------------------------------------------------------

def test_a_failing_step_is_retried_on_the_clock_then_fails(workflow_registry, workflow_runner):
    run = workflow_runner
    workflow_registry.add("dx-flaky", defs.Flaky)
    pid = run.start("dx-flaky")
    run.send("flaky-in", "boom")
    assert run.history(pid)[-1] == "Main.Main_Work [error]"
    assert "Main: runnable -> Main_Work (after recv flaky-in), retry in 1s (attempt 2); " \
           "last error: RuntimeError: the step blew up" in run.describe(pid)
    assert run.advance_to_next() == timedelta(seconds=1)
    assert run.advance_to_next() == timedelta(seconds=2)
    run.assert_failed(pid, "the step blew up")
    with pytest.raises(AssertionError, match=r"failed with\n  goroutine Main, method Main_Work: RuntimeError"):
        run.assert_failed(pid, "something else")


def test_a_loop_without_waiting_is_reported_as_stuck(workflow_registry, db):
    workflow_registry.add("dx-loop", Looper)
    with WorkflowRunner(max_steps=50) as run:
        with pytest.raises(Stuck) as err:
            run.start("dx-loop")
    text = str(err.value)
    assert "more than 50 steps without coming to rest" in text
    assert "Main: runnable -> Main_Loop (after default)" in text
    assert "Main.Main_Loop, Main.Main_Loop" in text


# -- assertion messages ----------------------------------------------------------------------------

def test_assert_finished_says_what_the_process_waits_for(expense, workflow_runner):
    with pytest.raises(AssertionError) as err:
        workflow_runner.assert_finished(expense)
    text = str(err.value)
    assert text.startswith(f"expected process {expense} to be done, it is running\n")
    assert "Main: blocked on recv" in text and "Reminder: blocked on timer in 30m" in text

    workflow_runner.send(answers(expense), True)
    with pytest.raises(AssertionError, match=r'finished with output\n  \{"approved": true, "by": "v1"\}\nexpected\n  \{"approved": false\}'):
        workflow_runner.assert_finished(expense, {"approved": False})
    workflow_runner.assert_finished(expense, {"by": "v1", "approved": True})


def test_assert_waits(expense, workflow_runner):
    run = workflow_runner
    run.assert_waits(expense, Main=[f"recv {answers(expense)}", "timer"])
    run.assert_waits(expense, {"Reminder": ["timer"]})
    with pytest.raises(AssertionError) as err:
        run.assert_waits(expense, Main=["timer"], Worker=[])
    text = str(err.value)
    assert f"Main waits for ['recv {answers(expense)}', 'timer'], expected ['timer']" in text
    assert "goroutine Worker does not exist (goroutines: Main, Reminder)" in text
    with pytest.raises(TypeError):
        run.assert_waits(expense)


def test_assert_state(expense, workflow_runner):
    workflow_runner.assert_state(expense, amount=42, note="lunch")
    workflow_runner.assert_state(expense, {"amount": 42})


def test_assert_state_messages(expense, workflow_runner):
    with pytest.raises(AssertionError) as err:
        workflow_runner.assert_state(expense, amount=41, colour="red")
    text = str(err.value)
    assert "amount: 42, expected 41" in text
    assert "colour: missing (fields: amount, note, reminded)" in text


def test_assert_history(expense, workflow_runner):
    run = workflow_runner
    run.assert_history(expense, ["start", "Main.Main_Start", "Reminder.Reminder_Start"])
    run.assert_history(expense, ["start", "Reminder.Reminder_Start"], partial=True)
    with pytest.raises(AssertionError) as err:
        run.assert_history(expense, ["start", "Main.Main_Start", "Main.Main_Answer"])
    assert "  ≠ Reminder.Reminder_Start   Main.Main_Answer" in str(err.value)
    with pytest.raises(AssertionError, match="does not contain 'Main.Main_Start' in order"):
        run.assert_history(expense, ["Reminder.Reminder_Start", "Main.Main_Start"], partial=True)


def test_assert_statuses_and_status(expense, workflow_runner):
    run = workflow_runner
    run.assert_statuses(expense, Main="blocked", Reminder="blocked")
    run.advance(minutes=30)
    run.assert_statuses(expense, Reminder="done")
    with pytest.raises(AssertionError, match="Main: blocked, expected done"):
        run.assert_statuses(expense, Main="done")
    run.cancel(expense)
    run.assert_status(expense, "cancelled")
    with pytest.raises(AssertionError, match="to be running, it is cancelled"):
        run.assert_running(expense)


def test_unknown_process(workflow_runner):
    with pytest.raises(AssertionError, match="no process 'nope'"):
        workflow_runner.state("nope")


# -- registry isolation ----------------------------------------------------------------------------

def test_isolated_registry_and_forget_restore_the_registry():
    before = [(d.name, d.version) for d in registry.all()]
    assert ("counter", "") in before
    with isolated_registry():
        forget("counter")
        registry.add(NAME, defs.ExpenseV1, "1")
        registry.add(NAME, defs.ExpenseV2, "2")
        forget(NAME, "2")
        assert registry.get(NAME).version == "1"
        assert "counter" not in [d.name for d in registry.all()]
    assert [(d.name, d.version) for d in registry.all()] == before
    with isolated_registry(empty=True):
        assert registry.all() == []
    assert [(d.name, d.version) for d in registry.all()] == before


# -- Django's TestCase ---------------------------------------------------------------------------

class RunnerInsideDjangoTestCase(TestCase):
    """The runner finds work in the database, so it works inside TestCase's wrapping transaction
    (where on_commit hooks never fire)."""

    def test_counter(self):
        with WorkflowRunner() as run:
            pid = run.start("counter", {"idle_seconds": 60})
            run.send("counter", "a")
            run.advance(minutes=1)
            run.assert_finished(pid, {"count": 1})
