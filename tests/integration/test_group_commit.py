"""Group commit (runtime/group.py): a job's runnable goroutines' steps in one transaction.

What is checked, on the real engine and database (SQLite, and PostgreSQL where row locks matter):

* several steps commit with ONE COMMIT, each step's history event is written, all with the
  group's `finished_at` (the moment its writes went to the COMMIT);
* a step whose method raises ends the group: the steps before it are kept, its own writes (ORM
  writes of the method, on_commit callbacks) are gone, the rest of the queue is handed back, and
  `engine.record_failure` records it as a lone failed step would be;
* the goroutines a step wakes (new ones, counterparts a send or a close fired) run next in the
  same group, two at most; the others are in `Outcome.enqueue`, enqueued only after the COMMIT;
  a fan-in driven only through `jobs.wake` runs to its end whatever the group size;
* PostgreSQL: a later step whose process row another transaction holds is left for the next
  transaction at once (lock_timeout), the group's first step waits for its lock as a lone step;
* a counterpart fired by one conditional UPDATE: a stale waiter (changed by another transaction)
  makes the transaction rerun, the rerun checks the channel's waiters with locks;
* the runaway guard pauses at the same count with groups as without.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from slct_workflows import Process, clock, hooks, register, services
from slct_workflows.models import (
    Channel,
    Event,
    EventKind,
    Goroutine,
    GoroutineStatus,
    PendingCase,
    ProcessInstance,
    ProcessStatus,
)
from slct_workflows.runtime import channels, dispatch, engine, group
from slct_workflows.workers import jobs
from tests.conftest import postgres_only

from . import workflows_for_tests  # noqa: F401  (registers the t-* definitions)

# -- definitions ----------------------------------------------------------------------------------

ON_COMMIT_RAN: list[str] = []  # on_commit callbacks of gc-boom steps that ran (none may)


@register("gc-once")
@dataclass
class Once:
    """One step: finishes with its input."""

    got: object = None

    def Main_Start(self, p: Process, input=None):
        self.got = input
        p.finish(input)


@register("gc-boom")
@dataclass
class Boom:
    """Writes through the ORM, registers an on_commit callback, then raises."""

    def Main_Start(self, p: Process, input):
        Channel.objects.create(name=input["side"])
        side = input["side"]
        transaction.on_commit(lambda: ON_COMMIT_RAN.append(side))
        raise RuntimeError(f"gc boom {side}")


@register("gc-dup")
@dataclass
class Duplicate:
    """Creates a channel through the ORM under a name that is taken: an IntegrityError, raised
    through Django's save() (which marks the transaction as needing a rollback)."""

    def Main_Start(self, p: Process, name):
        Channel.objects.create(name=name)


@register("gc-spawner")
@dataclass
class Spawner:
    """Starts `n` Workers and ends; each Worker ends at once (the last one ends the process)."""

    def Main_Start(self, p: Process, n):
        for i in range(n):
            p.go(self.Worker_Run, i)

    def Worker_Run(self, p: Process, i):
        pass


@register("gc-closer")
@dataclass
class Closer:
    """Closes the channel named by its input, then finishes."""

    def Main_Start(self, p: Process, chan):
        p.close(chan)
        p.finish("closed")


@register("gc-fan-sender")
@dataclass
class FanSender:
    """Sends [who, 0], [who, 1], ... [who, n-1] into `chan`, then finishes."""

    chan: str = ""
    who: int = 0
    n: int = 0
    i: int = 0

    def Main_Start(self, p: Process, input):
        self.chan, self.who, self.n = input["chan"], input["who"], input["n"]
        p.select().send(self.chan, [self.who, self.i]).to(self.Main_Sent)

    def Main_Sent(self, p: Process):
        self.i += 1
        if self.i == self.n:
            p.finish("sent")
        else:
            p.select().send(self.chan, [self.who, self.i]).to(self.Main_Sent)


@register("gc-spinner")
@dataclass
class Spinner:
    """A default() loop: its select fires at once on its own, forever (the runaway guard's case)."""

    polls: int = 0

    def Main_Start(self, p: Process, input=None):
        self.Main_Poll(p)

    def Main_Poll(self, p: Process):
        self.polls += 1
        p.select().recv("gc-never").to(self.Main_Poll).default().to(self.Main_Poll)


@register("gc-slow-poller")
@dataclass
class SlowPoller:
    """Polls with default() `n` times, each step taking a second of (test) clock, then finishes."""

    n: int = 0
    polls: int = 0

    def Main_Start(self, p: Process, n):
        self.n = n
        self.Main_Poll(p)

    def Main_Poll(self, p: Process):
        self.polls += 1
        clock.advance(timedelta(seconds=1))  # the step's own work
        if self.polls >= self.n:
            p.finish({"polls": self.polls})
        else:
            p.select().recv("gc-never").to(self.Main_Poll).default().to(self.Main_Poll)


# -- helpers --------------------------------------------------------------------------------------

class Recorder:
    """A Dispatcher that records what would be enqueued, and whether a transaction was open."""

    def __init__(self) -> None:
        self.wakes: list[list[int]] = []
        self.in_atomic: list[bool] = []
        self.at_front: list[bool] = []
        self.wake_ats: list[tuple[int, object]] = []

    def wake(self, goroutine_ids, at_front=False):
        self.wakes.append(list(goroutine_ids))
        self.in_atomic.append(connection.in_atomic_block)
        self.at_front.append(at_front)

    def wake_at(self, goroutine_id, when):
        self.wake_ats.append((goroutine_id, when))

    def timers_at(self, when):
        pass

    def outbox(self, outbox_ids):
        pass

    def outbox_at(self, outbox_id, when):
        pass

    def woken(self) -> list[int]:
        return [g for ids in self.wakes for g in ids]

    def clear(self) -> None:
        self.wakes.clear()
        self.in_atomic.clear()
        self.at_front.clear()
        self.wake_ats.clear()


@pytest.fixture
def recorder():
    rec = Recorder()
    previous = dispatch.use(rec)
    try:
        yield rec
    finally:
        dispatch.use(previous)


@pytest.fixture
def roomy(settings):
    """Only the step limits end a group or a job here: no time limit can cut one short."""
    settings.SLCT_GROUP_MS = 5_000
    settings.SLCT_JOB_SECONDS = 30
    return settings


@pytest.fixture
def commits(monkeypatch):
    """Counts the COMMITs of this thread's default connection."""
    conn = connections["default"]
    original = conn.commit
    counted: list[int] = []

    def commit():
        counted.append(1)
        return original()

    monkeypatch.setattr(conn, "commit", commit)
    return counted


def start(definition: str, input=None) -> tuple[str, int]:
    """Start a process; returns its id and its Main goroutine's id."""
    pid = services.start_process(definition, input).process.id
    return pid, Goroutine.objects.get(process_id=pid, name="Main").id


def run_group(queue: list[int], max_steps: int = 8) -> group.Outcome:
    return group.run(queue, max_steps=max_steps, until=time.monotonic() + 5)


def drive(recorder: Recorder, first: list[int], *, max_jobs: int = 2000) -> int:
    """Run `jobs.wake` on `first`, then on every wake list enqueued, until nothing is left.
    Returns the jobs run."""
    pending = [list(first)]
    n = 0
    while pending or recorder.wakes:
        pending += recorder.wakes
        recorder.clear()
        ids = pending.pop(0)
        jobs.wake(*ids)
        n += 1
        assert n <= max_jobs, "no end in sight: wake-ups keep coming (or progress stalled)"
    return n


def step_events(pid: str) -> list[Event]:
    return list(Event.objects.filter(process_id=pid, kind=EventKind.STEP).order_by("seq"))


# -- one transaction, one COMMIT ------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("max_steps", [8, 3], ids=["queue-runs-out", "step-limit"])
def test_independent_steps_share_one_commit_and_one_finished_at(recorder, roomy, commits, max_steps):
    started = [start("gc-once", {"n": i}) for i in range(4)]
    ids = [gid for _, gid in started]
    recorder.clear()  # the starts' own wake-ups
    before = len(commits)
    t0 = timezone.now()
    out = run_group(ids, max_steps=max_steps)
    t1 = timezone.now()
    assert len(commits) - before == 1, "the group's steps did not share one COMMIT"
    n = min(4, max_steps)
    assert [r.ran for r, _ in out.ran] == [True] * n
    assert out.failed is None and out.enqueue == []
    assert out.queue == ids[n:]  # not run: handed back, in order
    events = [e for pid, _ in started[:n] for e in step_events(pid)]
    assert len(events) == n  # every step's event is written
    ends = {e.finished_at for e in events}
    assert len(ends) == 1, f"the events of one group end at different times: {ends}"
    (end,) = ends
    assert all(t0 <= e.started_at <= e.finished_at <= t1 for e in events)
    assert max(e.started_at for e in events) <= end  # the group ends after its last step started
    for i, (pid, _) in enumerate(started[:n]):
        proc = ProcessInstance.objects.get(pk=pid)
        assert proc.status == ProcessStatus.DONE and proc.output == {"n": i}
    for pid, gid in started[n:]:
        assert ProcessInstance.objects.get(pk=pid).status == ProcessStatus.RUNNING
        assert Goroutine.objects.get(pk=gid).status == GoroutineStatus.RUNNABLE and not step_events(pid)
    assert recorder.wakes == []  # a group enqueues nothing itself; its caller does (Outcome.enqueue)


@pytest.mark.django_db(transaction=True)
def test_a_rendezvous_pair_runs_to_its_end_in_one_transaction(recorder, roomy, commits):
    pid, main = start("t-two")
    recorder.clear()
    before = len(commits)
    out = run_group([main], max_steps=30)
    assert len(commits) - before == 1
    proc = ProcessInstance.objects.get(pk=pid)
    assert proc.status == ProcessStatus.DONE and proc.output == [3, 2, 1, None]
    events = step_events(pid)
    assert len(events) == len(out.ran) >= 8  # Main and Worker took turns, each step in the group
    assert {e.goroutine for e in events} == {"Main", "Worker"}
    seqs = list(Event.objects.filter(process_id=pid).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, proc.step_count + 1))  # one history, no gaps, no repeats
    assert len({e.finished_at for e in events}) == 1
    assert all(e.finished_at >= e.started_at for e in events)
    # Each woken goroutine ran next, locally: nothing was left to enqueue or hand back.
    assert out.queue == [] and out.enqueue == [] and recorder.wakes == []


# -- a failing step -------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("max_steps", [8, 2], ids=["mid-group", "last-of-group"])
def test_a_failing_step_ends_the_group_keeps_the_earlier_steps_and_is_recorded_alone(
        recorder, roomy, commits, settings, max_steps):
    settings.SLCT_MAX_ATTEMPTS = 3
    ON_COMMIT_RAN.clear()
    a_pid, a = start("gc-once", "a")
    b_pid, b = start("gc-boom", {"side": "gc-boom-side"})
    c_pid, c = start("gc-once", "c")
    d_pid, d = start("gc-once", "d")
    before = len(commits)
    out = run_group([a, b, c, d], max_steps=max_steps)
    assert len(commits) - before == 1
    assert [r.ran for r, _ in out.ran] == [True]  # a only
    assert out.failed is not None
    failed_id, failure = out.failed
    assert failed_id == b and isinstance(failure, engine.StepFailed)
    assert "gc boom gc-boom-side" in str(failure) and "RuntimeError" in failure.tb
    assert out.queue == [c, d]  # the rest, for the next transaction
    # The step before it is committed, with its event.
    assert ProcessInstance.objects.get(pk=a_pid).status == ProcessStatus.DONE
    assert len(step_events(a_pid)) == 1
    # Nothing of the failed step is left: its ORM write, its on_commit callback, any event.
    assert not Channel.objects.filter(pk="gc-boom-side").exists()
    assert ON_COMMIT_RAN == []
    assert list(Event.objects.filter(process_id=b_pid).values_list("kind", flat=True)) == [EventKind.START]
    g = Goroutine.objects.get(pk=b)
    assert (g.status, g.attempts, g.last_error) == (GoroutineStatus.RUNNABLE, 0, "")
    # The steps after it did not run.
    assert ProcessInstance.objects.get(pk=c_pid).status == ProcessStatus.RUNNING

    result = engine.record_failure(b, failure)
    assert result.ran and result.failed
    g = Goroutine.objects.get(pk=b)
    assert g.status == GoroutineStatus.RUNNABLE and g.attempts == 1 and g.retry_at is not None
    assert "gc boom gc-boom-side" in g.last_error
    errors = list(Event.objects.filter(process_id=b_pid, kind=EventKind.ERROR))
    assert len(errors) == 1 and "gc boom" in errors[0].error and errors[0].detail["attempt"] == 1
    assert recorder.wake_ats == [(b, g.retry_at)]  # its retry, scheduled after that commit
    assert not Channel.objects.filter(pk="gc-boom-side").exists() and ON_COMMIT_RAN == []
    assert engine.record_failure(b, failure).ran is False  # a duplicate finds it recorded

    rest = run_group(out.queue)
    assert [r.ran for r, _ in rest.ran] == [True, True] and rest.queue == []
    assert ProcessInstance.objects.get(pk=d_pid).output == "d"


@pytest.mark.django_db(transaction=True)
def test_a_failing_first_step_commits_nothing_but_hands_back_the_rest(recorder, roomy):
    ON_COMMIT_RAN.clear()
    _, b = start("gc-boom", {"side": "gc-boom-first"})
    _, c = start("gc-once", "c")
    out = run_group([b, c])
    assert out.ran == [] and out.failed[0] == b and out.queue == [c]
    assert not Channel.objects.filter(pk="gc-boom-first").exists() and ON_COMMIT_RAN == []
    assert engine.record_failure(b, out.failed[1]).failed
    assert Goroutine.objects.get(pk=b).attempts == 1


# An error that passed through a Django ORM write (save(), update(), bulk_create()) marks the
# transaction for rollback (needs_rollback); the group's own savepoint rollback must clear that,
# as Django's does, or every later query of the group is refused (found by these tests, fixed in
# runtime/group.py _rollback_to).


@pytest.mark.django_db(transaction=True)
def test_a_method_whose_orm_write_fails_in_the_database_is_recorded_as_a_failed_step(recorder, roomy):
    services.create_channel("gc-taken-1")
    pid, gid = start("gc-dup", "gc-taken-1")
    recorder.clear()
    jobs.wake(gid)  # must not raise: the failure is the step's, recorded with a retry
    g = Goroutine.objects.get(pk=gid)
    assert g.status == GoroutineStatus.RUNNABLE and g.attempts == 1 and "IntegrityError" in g.last_error
    assert Event.objects.filter(process_id=pid, kind=EventKind.ERROR).count() == 1
    assert recorder.wake_ats == [(gid, g.retry_at)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("group_steps", [1, 8])
def test_a_step_whose_own_orm_write_fails_in_the_database_is_recorded_alone(recorder, roomy, settings, group_steps):
    settings.SLCT_GROUP_STEPS = group_steps
    services.create_channel("gc-taken")
    a_pid, a = start("gc-once", "a")
    b_pid, b = start("gc-dup", "gc-taken")
    c_pid, c = start("gc-once", "c")
    recorder.clear()
    jobs.wake(a, b, c)
    assert ProcessInstance.objects.get(pk=a_pid).output == "a"
    assert ProcessInstance.objects.get(pk=c_pid).output == "c"
    g = Goroutine.objects.get(pk=b)
    assert g.status == GoroutineStatus.RUNNABLE and g.attempts == 1 and "IntegrityError" in g.last_error
    assert Event.objects.filter(process_id=b_pid, kind=EventKind.ERROR).count() == 1
    assert Channel.objects.filter(pk="gc-taken").count() == 1


@pytest.mark.django_db
def test_a_later_step_whose_close_finds_a_stale_waiter_is_left_for_the_next_transaction(recorder, roomy):
    services.create_channel("gc-x")
    _, stale = _blocked_receiver("gc-x")
    before = _make_stale(stale)
    a_pid, a = start("gc-once", "a")
    closer_pid, closer = start("gc-closer", "gc-x")
    d_pid, d = start("gc-once", "d")
    _, e = start("gc-once", "e")
    # close() fires the (stale) waiter with a deferred conditional UPDATE, sent first by the
    # channel's ORM update: the Conflict comes out of that update.
    out = run_group([a, closer, d, e], max_steps=2)
    assert out.failed is None and out.queue == [closer, e]
    assert ProcessInstance.objects.get(pk=a_pid).output == "a"
    assert ProcessInstance.objects.get(pk=d_pid).output == "d"
    again = run_group(out.queue)
    assert again.failed is None
    assert ProcessInstance.objects.get(pk=closer_pid).output == "closed"
    assert Channel.objects.get(pk="gc-x").closed
    assert _snapshot(stale) == before


# -- wake-ups -------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_goroutines_a_step_starts_beyond_two_are_enqueued_not_run(recorder, roomy, commits):
    pid, main = start("gc-spawner", 4)
    recorder.clear()
    out = run_group([main], max_steps=1)
    assert len(out.ran) == 1
    (result, _), = out.ran
    workers = list(Goroutine.objects.filter(process_id=pid).exclude(pk=main).order_by("id").values_list("id", flat=True))
    assert len(workers) == 4 and list(result.woken) == workers
    assert out.queue == workers[:2]  # kept to run next here
    assert out.enqueue == workers[2:]  # for other workers, once the group has committed
    assert recorder.wakes == []  # the group itself enqueues nothing


@pytest.mark.django_db(transaction=True)
def test_counterparts_fired_by_a_close_are_woken_and_enqueued_only_after_the_commit(recorder, roomy, settings):
    services.create_channel("gc-wide")
    receivers = [start("t-receiver", {"chan": "gc-wide", "n": 1}) for _ in range(3)]
    assert len(run_group([gid for _, gid in receivers]).ran) == 3  # all three block on gc-wide
    _, closer = start("gc-closer", "gc-wide")
    r_ids = [gid for _, gid in receivers]

    out = run_group([closer], max_steps=1)
    (result, _), = out.ran
    assert sorted(result.woken) == sorted(r_ids)  # counterparts count among the woken
    assert len(out.queue) == 2 and len(out.enqueue) == 1
    assert sorted(out.queue + out.enqueue) == sorted(r_ids)
    assert all(Goroutine.objects.get(pk=g).status == GoroutineStatus.RUNNABLE for g in r_ids)

    # Through a job: one step per job, so the woken are all handed to the dispatcher.
    services.create_channel("gc-wide-2")
    receivers = [start("t-receiver", {"chan": "gc-wide-2", "n": 1}) for _ in range(3)]
    run_group([gid for _, gid in receivers])
    _, closer = start("gc-closer", "gc-wide-2")
    recorder.clear()
    settings.SLCT_STEPS_PER_JOB = 1
    assert jobs.wake(closer) == 1
    assert recorder.in_atomic and not any(recorder.in_atomic), "a wake-up was enqueued before the COMMIT"
    assert sorted(recorder.woken()) == sorted(gid for _, gid in receivers)
    # the enqueued one, then the job's unrun queue: behind the queue, the job's budget is spent
    assert recorder.at_front == [False, False]
    settings.SLCT_STEPS_PER_JOB = 20
    drive(recorder, [])
    for pid, _ in receivers:
        assert ProcessInstance.objects.get(pk=pid).output == [None]


@pytest.mark.django_db
@pytest.mark.parametrize("group_steps", [1, 2, 3, 8])
def test_a_fan_in_driven_only_by_wake_jobs_runs_to_its_end(recorder, roomy, settings, group_steps):
    """Regression: a goroutine woken by the last step of a group was left out of the queue (and
    of the enqueued ones): the fan-in stalled with its receiver runnable and nobody to run it."""
    settings.SLCT_GROUP_STEPS = group_steps
    senders, n = 5, 6
    services.create_channel("gc-fan", capacity=2)
    recv_pid, recv = start("t-receiver", {"chan": "gc-fan", "n": senders * n})
    sent = [start("gc-fan-sender", {"chan": "gc-fan", "who": w, "n": n}) for w in range(senders)]
    # The starts' own wake-ups wait for a commit the test's transaction never makes: the test
    # hands them to the jobs itself, and from then on only what the jobs enqueue runs.
    drive(recorder, [recv, *(gid for _, gid in sent)])
    proc = ProcessInstance.objects.get(pk=recv_pid)
    assert proc.status == ProcessStatus.DONE, (
        f"stalled: {proc.state} / " + str(list(Goroutine.objects.values_list("id", "status", "next_method")))
    )
    got = proc.output
    assert sorted(map(tuple, got)) == [(w, i) for w in range(senders) for i in range(n)]
    for w in range(senders):  # each sender's values arrive in the order sent
        assert [i for who, i in got if who == w] == list(range(n))
    for pid, _ in sent:
        assert ProcessInstance.objects.get(pk=pid).output == "sent"
    assert not PendingCase.objects.exists()
    assert not Goroutine.objects.filter(status=GoroutineStatus.RUNNABLE).exists()


# -- optimistic counterpart firing ----------------------------------------------------------------

def _blocked_receiver(chan: str) -> tuple[str, int]:
    pid, gid = start("t-receiver", {"chan": chan, "n": 1})
    run_group([gid])
    assert Goroutine.objects.get(pk=gid).status == GoroutineStatus.BLOCKED
    return pid, gid


def _make_stale(gid: int) -> tuple:
    """Another transaction moved the goroutine on: its pending case (still there) is stale."""
    g = Goroutine.objects.get(pk=gid)
    Goroutine.objects.filter(pk=gid).update(wait_seq=g.wait_seq + 100)
    return _snapshot(gid)


def _snapshot(gid: int) -> tuple:
    g = Goroutine.objects.get(pk=gid)
    return (g.status, g.wait_seq, g.next_method, g.next_value, g.runnable_since,
            ProcessInstance.objects.get(pk=g.process_id).state,
            Event.objects.filter(process_id=g.process_id).count(),
            PendingCase.objects.filter(goroutine_id=gid).count())


@pytest.mark.django_db
def test_a_send_to_a_stale_waiter_reruns_and_the_rerun_skips_it(recorder, roomy, settings, caplog):
    settings.SLCT_DB_RETRIES = 3  # a rerun that conflicts again fails fast
    _, stale = _blocked_receiver("gc-opt")
    live_pid, _ = _blocked_receiver("gc-opt")
    before = _make_stale(stale)
    s_pid, s = start("t-sender", {"chan": "gc-opt", "value": "v"})
    with caplog.at_level(logging.INFO, logger="slct_workflows"):
        drive(recorder, [s], max_jobs=10)
    # The optimistic UPDATE lost (the stale goroutine was not blocked on that select any more):
    # the transaction reran, and the rerun checked the channel's waiters with locks.
    assert any("another transaction" in r.getMessage() for r in caplog.records), caplog.text
    assert "gc-opt" not in channels._suspects  # used by the rerun, once
    assert ProcessInstance.objects.get(pk=s_pid).output == "sent"
    assert ProcessInstance.objects.get(pk=live_pid).output == ["v"]  # the next live waiter got it
    assert _snapshot(stale) == before  # the stale goroutine is left exactly as it was


@pytest.mark.django_db
def test_a_send_whose_only_waiter_is_stale_blocks_and_leaves_it_alone(recorder, roomy, settings):
    settings.SLCT_DB_RETRIES = 3
    _, stale = _blocked_receiver("gc-opt1")
    before = _make_stale(stale)
    s_pid, s = start("t-sender", {"chan": "gc-opt1", "value": "v"})
    drive(recorder, [s], max_jobs=10)
    # The sender's step completed: it waits to send (nobody live receives).
    assert [e.method for e in step_events(s_pid)] == ["Main_Start"]
    g = Goroutine.objects.get(pk=s)
    assert g.status == GoroutineStatus.BLOCKED
    assert list(PendingCase.objects.filter(goroutine_id=s).values_list("kind", "channel_id")) == [("send", "gc-opt1")]
    assert _snapshot(stale) == before
    assert "gc-opt1" not in channels._suspects


@pytest.mark.django_db
def test_a_later_step_that_loses_the_race_is_left_for_the_next_transaction(recorder, roomy):
    _, stale = _blocked_receiver("gc-opt2")
    live_pid, _ = _blocked_receiver("gc-opt2")
    before = _make_stale(stale)
    once_pid, once = start("gc-once", "first")
    s_pid, s = start("t-sender", {"chan": "gc-opt2", "value": "v"})
    other_pid, other = start("gc-once", "third")
    _, fourth = start("gc-once", "fourth")
    out = run_group([once, s, other, fourth], max_steps=2)
    # The sender's step found its counterpart changed: rolled back to its savepoint alone,
    # first in the next transaction; the steps around it are kept.
    assert out.failed is None
    assert out.queue == [s, fourth]
    assert [r.ran for r, _ in out.ran] == [True, True]
    assert ProcessInstance.objects.get(pk=once_pid).output == "first"
    assert ProcessInstance.objects.get(pk=other_pid).output == "third"
    assert step_events(s_pid) == [] and Goroutine.objects.get(pk=s).status == GoroutineStatus.RUNNABLE
    assert "gc-opt2" in channels._suspects
    again = run_group([s])  # the rerun checks gc-opt2's waiters with locks
    assert again.failed is None and again.queue == [] and again.enqueue == []
    assert "gc-opt2" not in channels._suspects
    assert ProcessInstance.objects.get(pk=s_pid).output == "sent"
    assert ProcessInstance.objects.get(pk=live_pid).output == ["v"]  # the live waiter got the value
    assert _snapshot(stale) == before


# -- the runaway guard ----------------------------------------------------------------------------

@pytest.fixture
def frozen_clock():
    frozen = timezone.now()
    previous = clock.use(lambda: frozen)
    clock.reset()
    try:
        yield
    finally:
        clock.use(previous)
        clock.reset()


@pytest.mark.django_db
@pytest.mark.parametrize("limit", [5, 12])
@pytest.mark.parametrize("group_steps", [1, 8])
def test_the_runaway_guard_pauses_at_the_same_count_with_groups(recorder, roomy, settings, frozen_clock,
                                                                 group_steps, limit):
    settings.SLCT_RUNAWAY_STEPS = limit
    settings.SLCT_RUNAWAY_RATE = 0
    settings.SLCT_GROUP_STEPS = group_steps
    pid, main = start("gc-spinner")
    drive(recorder, [main], max_jobs=50)
    g = Goroutine.objects.get(pk=main)
    assert g.status == GoroutineStatus.PAUSED and g.hot_steps == limit
    assert len(step_events(pid)) == limit
    assert ProcessInstance.objects.get(pk=pid).state["polls"] == limit
    assert Event.objects.filter(process_id=pid, kind=EventKind.PAUSE).count() == 1
    kinds = list(Event.objects.filter(process_id=pid).order_by("seq").values_list("kind", flat=True))
    assert kinds == [EventKind.START, *[EventKind.STEP] * limit, EventKind.PAUSE]


@pytest.mark.django_db
@pytest.mark.parametrize("group_steps", [1, 8])
def test_the_runaway_rate_sees_the_steps_of_the_open_group(recorder, roomy, settings, frozen_clock, group_steps):
    """With SLCT_RUNAWAY_RATE the guard measures the streak from its steps' start times; in a
    group those events are not written yet. A slow poller (a second a step) is never paused."""
    settings.SLCT_RUNAWAY_STEPS = 5
    settings.SLCT_RUNAWAY_RATE = 2  # steps per second: the poller does one
    settings.SLCT_GROUP_STEPS = group_steps
    pid, main = start("gc-slow-poller", 12)
    drive(recorder, [main], max_jobs=50)
    assert ProcessInstance.objects.get(pk=pid).output == {"polls": 12}
    assert not Event.objects.filter(process_id=pid, kind=EventKind.PAUSE).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("group_steps", [1, 8])
def test_a_fast_loop_is_paused_with_the_rate_set(recorder, roomy, settings, group_steps):
    settings.SLCT_RUNAWAY_STEPS = 5
    settings.SLCT_RUNAWAY_RATE = 1  # the spinner runs far faster than a step a second
    settings.SLCT_GROUP_STEPS = group_steps
    pid, main = start("gc-spinner")
    drive(recorder, [main], max_jobs=50)
    g = Goroutine.objects.get(pk=main)
    assert g.status == GoroutineStatus.PAUSED and len(step_events(pid)) == 5


# -- PostgreSQL: row locks ------------------------------------------------------------------------

@contextmanager
def held_elsewhere(take: Callable[[], object], *, release_after: float | None = None) -> Iterator[threading.Event]:
    """Another connection (a thread of its own) runs `take` in a transaction and keeps it open,
    with the locks it took, until the yielded event is set (or `release_after` seconds)."""
    taken, release, errors = threading.Event(), threading.Event(), []

    def holder():
        try:
            with transaction.atomic():
                take()
                taken.set()
                release.wait(10 if release_after is None else release_after)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(10), "the other connection did not take its locks"
        yield release
    finally:
        release.set()
        thread.join(10)
    assert errors == []


def process_locked(pid: str, *, release_after: float | None = None):
    """Another connection holds the process row's lock (see held_elsewhere)."""
    return held_elsewhere(lambda: ProcessInstance.objects.select_for_update().get(pk=pid), release_after=release_after)


def _show_lock_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_later_step_whose_process_is_locked_is_left_for_the_next_transaction(recorder, roomy, commits):
    postgres_only("row locks and lock_timeout")
    a_pid, a = start("gc-once", "a")
    b_pid, b = start("gc-once", "b")
    c_pid, c = start("gc-once", "c")
    d_pid, d = start("gc-once", "d")
    with process_locked(b_pid):
        before = len(commits)
        t0 = time.monotonic()
        out = run_group([a, b, c, d], max_steps=2)
        waited = time.monotonic() - t0
        assert waited < 1.0, f"the group waited {waited:.2f} s for a lock another transaction holds"
        assert len(commits) - before == 1
        assert out.queue == [b, d]  # b first in the next transaction, which waits for its lock
        assert out.failed is None and len(out.ran) == 2
        assert ProcessInstance.objects.get(pk=a_pid).output == "a"
        assert ProcessInstance.objects.get(pk=c_pid).output == "c"
        assert ProcessInstance.objects.get(pk=b_pid).status == ProcessStatus.RUNNING
        assert step_events(b_pid) == [] and Goroutine.objects.get(pk=b).status == GoroutineStatus.RUNNABLE
        # The group's bound on lock waits ended with its transaction.
        assert _show_lock_timeout() == "0"
    out = run_group(out.queue)
    assert len(out.ran) == 2 and out.queue == []
    assert ProcessInstance.objects.get(pk=b_pid).output == "b"
    assert ProcessInstance.objects.get(pk=d_pid).output == "d"
    assert len(step_events(b_pid)) == 1


@pytest.mark.django_db(transaction=True)
def test_the_first_step_of_a_group_waits_for_its_lock_as_a_lone_step(recorder, roomy):
    postgres_only("row locks and lock_timeout")
    a_pid, a = start("gc-once", "a")
    b_pid, b = start("gc-once", "b")
    with process_locked(a_pid, release_after=0.3):
        t0 = time.monotonic()
        out = run_group([a, b])
        waited = time.monotonic() - t0
    assert waited >= 0.25, f"the first step did not wait for its lock ({waited:.2f} s)"
    assert waited < 3
    assert len(out.ran) == 2 and out.queue == [] and out.failed is None
    assert ProcessInstance.objects.get(pk=a_pid).output == "a"
    assert ProcessInstance.objects.get(pk=b_pid).output == "b"


@pytest.mark.django_db(transaction=True)
def test_a_later_step_busy_inside_an_orm_write_is_left_for_the_next_transaction(recorder, roomy):
    postgres_only("row locks and lock_timeout")
    a_pid, a = start("gc-once", "a")
    _, r = start("t-receiver", {"chan": "gc-race", "n": 1})
    c_pid, c = start("gc-once", "c")
    # Another transaction creates the same channel and has not committed yet.
    with held_elsewhere(lambda: Channel.objects.create(name="gc-race")):
        t0 = time.monotonic()
        out = run_group([a, r, c])
        assert time.monotonic() - t0 < 1.0
    assert out.failed is None and out.queue == [r]
    assert ProcessInstance.objects.get(pk=a_pid).output == "a"
    assert ProcessInstance.objects.get(pk=c_pid).output == "c"
    run_group(out.queue)
    assert Goroutine.objects.get(pk=r).status == GoroutineStatus.BLOCKED


# -- a later step that loses the optimistic race ---------------------------------------------------

@pytest.mark.django_db
def test_a_later_step_whose_conditional_update_loses_is_undone_alone(recorder, roomy):
    """[a, s, b]: `s` sends to a waiter that went stale; its conditional UPDATE finds no row. `s`
    is rolled back to its savepoint (its event, its wake-up), left first for the next
    transaction, and the steps around it (`a` before, `b` after) commit with the group."""
    _, stale = _blocked_receiver("gc-held")
    before = _make_stale(stale)
    a_pid, a = start("t-receiver", {"chan": "gc-held-a", "n": 1})
    s_pid, s = start("t-sender", {"chan": "gc-held", "value": "v"})
    b_pid, b = start("t-receiver", {"chan": "gc-held-b", "n": 1})

    out = run_group([a, s, b])

    assert [e.method for e in step_events(a_pid)] == ["Main_Start"]
    assert [e.method for e in step_events(b_pid)] == ["Main_Start"]
    assert step_events(s_pid) == []  # undone: nothing of its step was kept
    assert [r.ran for r, _ in out.ran] == [True, True] and out.failed is None
    assert out.queue[0] == s and stale not in out.queue + out.enqueue
    assert _snapshot(stale) == before
    assert recorder.wakes == []

    again = run_group(out.queue)  # the channel is read with locks now: the stale waiter is skipped
    assert [e.method for e in step_events(s_pid)] == ["Main_Start"]
    assert Goroutine.objects.get(pk=s).status == GoroutineStatus.BLOCKED
    assert _snapshot(stale) == before
    assert not again.failed


# -- hook listeners that break the group's transaction ---------------------------------------------

def _swallowing_listener(events):
    """A listener that swallows an error from inside an ORM write: Django has then marked the
    transaction for rollback, and nothing raises."""
    try:
        Channel(name="gc-bad-listener", capacity="not a number").save()
    except Exception:  # noqa: BLE001  (the point of the test)
        pass


@pytest.mark.django_db(transaction=True)
def test_a_listener_that_breaks_the_transaction_does_not_pass_unseen(recorder, roomy):
    """The group hands its hook events over at its end; a listener that leaves the transaction
    marked for rollback must not make the group report steps that then roll back. The job runs
    the goroutines again with each step's events handed over in the step, where the breaking
    listener fails that step: recorded, with a retry."""
    pids = [start("gc-once", {"n": i}) for i in range(2)]
    hooks.subscribe(hooks.ProcessEnded, _swallowing_listener)
    try:
        steps = jobs.wake(*[gid for _, gid in pids])
    finally:
        hooks.unsubscribe(hooks.ProcessEnded, _swallowing_listener)
    for pid, gid in pids:
        g = Goroutine.objects.get(pk=gid)
        events = list(Event.objects.filter(process_id=pid).values_list("kind", flat=True))
        # Not left silently runnable in no queue: its step failed, with its error and a retry.
        assert g.attempts == 1 and g.last_error, (g.status, g.attempts, events)
        assert events == [EventKind.START, EventKind.ERROR], events
        assert ProcessInstance.objects.get(pk=pid).status == ProcessStatus.RUNNING
    assert steps == 2  # the two failed steps, recorded


@pytest.mark.django_db(transaction=True)
def test_without_a_breaking_listener_the_events_reach_listeners_once_per_group(recorder, roomy):
    seen = []

    def listener(events):
        seen.append(sorted(e.process_id for e in events))

    pids = [start("gc-once", {"n": i}) for i in range(3)]
    hooks.subscribe(hooks.ProcessEnded, listener)
    try:
        out = run_group([gid for _, gid in pids])
    finally:
        hooks.unsubscribe(hooks.ProcessEnded, listener)
    assert len(out.ran) == 3
    assert seen == [sorted(pid for pid, _ in pids)]  # one list for the group's three ends
