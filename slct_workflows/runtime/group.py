"""Group commit: several goroutines' steps in one transaction, and one COMMIT for all of them.

A lone step pays a COMMIT (a round trip and a WAL flush) that costs as much as the step's own
work. A job that holds several runnable goroutines (a ping-pong pair, the steps a timer batch
woke, the consumers of a busy channel) runs them here one after another in one transaction:

* each step runs in its own savepoint: a method that raises, or a lock that is not free, rolls
  back that step alone; the steps before it stay in the group;
* the first step waits for its locks as a lone step does (it holds nothing else yet); every
  later step only takes locks that are free: after the first step the transaction sets
  `lock_timeout` to SLCT_GROUP_LOCK_WAIT_MS, so a step that would wait for another transaction
  gives up within that bound and is left for a later transaction. A group therefore never waits
  for a lock while holding the locks of an earlier step (beyond that bound), and adds no
  deadlock that the one-step lock order did not have;
* the history events of the group are written by one INSERT just before the COMMIT, with
  `finished_at` taken then: an event's end is still the moment its step's writes go to the
  COMMIT, as for a lone step;
* the goroutines the steps woke are known here at once (a step's `woken`): the next ones run in
  the same group, the others go to the queue after the COMMIT, never before (they are not
  runnable for anyone else until then).

The group ends at SLCT_GROUP_STEPS steps, after SLCT_GROUP_MS milliseconds, when the job's
budget is spent, or at the first failed step (its failure is recorded in a transaction of its
own, as for a lone step). SLCT_GROUP_STEPS=1 runs one step per transaction.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from django.db import DatabaseError, connection, transaction

from slct_workflows import conf, hooks
from slct_workflows.models import Event
from slct_workflows.runtime import engine, timers
from slct_workflows.runtime.db import is_retryable
from slct_workflows.runtime.fixed_sql import (
    FixedInsert,
    Statement,
    WrongCount,
    defer,
    deferring,
    execute_together,
    owning,
    pending,
)

T = TypeVar("T")

LOCAL_QUEUE = 2  # goroutines a job keeps to run itself; more wake-ups go to RQ for other workers


@dataclass
class Outcome:
    """What one group transaction did, once it has committed."""

    ran: list[tuple[engine.StepResult, float]] = field(default_factory=list)  # each step, its seconds
    queue: list[int] = field(default_factory=list)  # the job's goroutines still to run, in order
    enqueue: list[int] = field(default_factory=list)  # woken here, for other workers: enqueue now
    failed: tuple[int, engine.StepFailed] | None = None  # a step whose method raised: record it


_INSERT_EVENTS = FixedInsert(Event)


@dataclass
class _Step:
    """One step of a group: its savepoint and what to put back if it has to be undone."""

    goroutine: int
    savepoint: Statement
    ran: int  # len(out.ran) before it
    events: int
    told: int
    queue: list[int]
    enqueue: int
    callbacks: int
    unsent: list[Statement] = field(default_factory=list)  # its last writes, waiting for the next query

    def confirmed(self) -> bool:
        return all(st.done for st in self.unsent)


def run(queue: list[int], *, max_steps: int, until: float) -> Outcome:
    """Run steps of `queue` (goroutine ids) in one transaction, as the job's loop would run them
    one transaction each; returns what ran and what is left. Raises what a whole transaction
    must retry (a lost connection, a deadlock of the first step): nothing of it committed.

    A step's last writes travel with the next step's first query. If that round trip fails in
    the earlier step's writes (a lock taken elsewhere, a counterpart fired meanwhile), the
    earlier step is rolled back to its savepoint and undone here too (what it ran, woke and
    told), and left for the next transaction; the later step has not run."""
    out = Outcome(queue=list(queue))
    group_until = min(until, time.monotonic() + conf.group_ms() / 1000)
    busy: list[int] = []  # found another transaction's lock: left for the next transaction
    with (transaction.atomic(), engine.deferring_events() as events, hooks.holding() as told,
          deferring()):
        bound = _lock_wait_bound()
        held: _Step | None = None  # the last step that ran: its last writes may not be sent yet
        first_step: _Step | None = None
        while out.queue and len(out.ran) < max_steps and (not out.ran or time.monotonic() < group_until):
            current = out.queue.pop(0)
            step = _Step(current, Statement(f"SAVEPOINT slct_step_{next(_savepoints)}", [], None, "savepoint"),
                         len(out.ran), len(events), len(told), list(out.queue), len(out.enqueue),
                         len(connection.run_on_commit))
            started = time.perf_counter()
            # Known to be the last before it runs: its last writes carry the group's events.
            last = len(out.ran) + 1 >= max_steps or time.monotonic() >= group_until
            try:
                result = _one(step, bound=bound if out.ran else None, last=last, held=held)
            except _EarlierFailed as exc:
                assert held is not None
                if held is first_step or not is_retryable(exc.cause):
                    raise exc.cause from None  # as a lone first step's failure: the whole group reruns
                _undo(held, out, events, told)
                busy.append(held.goroutine)
                held = None
                continue
            except (engine.StepFailed, _Busy) as exc:
                del events[step.events:]  # the step rolled back to its savepoint: so do its events
                del told[step.told:]
                if isinstance(exc, _Busy):
                    busy.append(current)
                    continue
                out.failed = (current, exc)
                break
            if not result.ran:
                continue
            out.ran.append((result, time.perf_counter() - started))
            step.unsent = list(pending())
            held = step
            first_step = first_step or step
            # The woken goroutine runs next: its sender is waiting for that rendezvous.
            next_up = [*result.woken, *([current] if result.runnable_again else [])]
            out.enqueue += next_up[LOCAL_QUEUE:]
            out.queue[:0] = next_up[:LOCAL_QUEUE]
            if last:
                events.clear()  # written with that step's last writes
                break
        _flush(events, held, first_step, out, told, busy)
        hooks.deliver(told)  # the listeners see the group's changes in its transaction, once
    out.queue[:0] = busy  # first in the next transaction, which waits for their locks
    return out


class _Busy(Exception):
    """A later step of the group found a lock taken: rolled back to its savepoint."""


class _EarlierFailed(Exception):
    """The round trip of a step's first query failed in the previous step's last writes (sent
    with it): the previous step is rolled back to its savepoint; this one did not run."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _lock_wait_bound() -> Statement:
    """The statement that bounds the lock waits of the group's later steps (PostgreSQL; SQLite
    has one writer at a time and no row locks). Sent with the second step's first query."""
    if connection.vendor == "postgresql":
        return Statement(f"SET LOCAL lock_timeout = '{conf.group_lock_wait_ms()}ms'", [], None, "lock_timeout")
    return Statement("", [], None, "lock_timeout")


def _one(step: _Step, *, bound: Statement | None, last: bool, held: _Step | None) -> engine.StepResult:
    """One step in a savepoint; a blocked goroutine whose timer is due is fired (in a savepoint
    of its own: a step that then fails keeps the timer fired), then run. `bound` (for every
    step but the group's first) limits its lock waits."""
    gid = step.goroutine
    first = [bound] if bound is not None and bound.sql and not bound.sent else []
    try:
        result = _in_savepoint(step, lambda: engine.step_in_group(gid, last=last), first, held)
        if result.blocked and not result.ran:
            timer = _Step(gid, Statement(f"SAVEPOINT slct_step_{next(_savepoints)}", [], None, "savepoint"),
                          *_counts(step))
            if _in_savepoint(timer, lambda: timers.fire_locked_due(gid), [], held):
                again = _Step(gid, Statement(f"SAVEPOINT slct_step_{next(_savepoints)}", [], None, "savepoint"),
                              *_counts(step))
                result = _in_savepoint(again, lambda: engine.step_in_group(gid, last=last), [], held)
        return result
    except DatabaseError as exc:
        if bound is None or not is_retryable(exc):
            raise  # the whole transaction reruns (with_db_retries), as a lone step's would
        raise _Busy() from None


def _counts(step: _Step) -> tuple:
    return (step.ran, step.events, step.told, step.queue, step.enqueue, len(connection.run_on_commit))


_savepoints = itertools.count(1)


def _in_savepoint(step: _Step, func: Callable[[], T], first: list[Statement], held: _Step | None) -> T:
    """`func` in `step`'s savepoint, whose SAVEPOINT statement travels with func's first query
    (with the held step's last writes before it) and which is never released (a group is short;
    PostgreSQL keeps a few dozen subtransactions cheaply). On an exception: back to the
    savepoint if anything was sent, and the on_commit callbacks registered since are dropped, as
    Django's atomic() does; a failure of the held step's writes raises _EarlierFailed."""
    queued = pending()
    with owning(step):
        for statement in [*first, step.savepoint]:  # `first` before the savepoint: kept if it rolls back
            defer(statement)
    try:
        with owning(step):
            return func()
    except BaseException as exc:
        held_sent = isinstance(exc, DatabaseError) and held is not None and not held.confirmed()
        rolled_back = False
        if held_sent:
            held_failed, rolled_back = _held_failed(exc, step)
            if held_failed:  # the held step's writes failed: it is undone, this step never ran
                queued.clear()
                _rollback_to(held.savepoint)
                del connection.run_on_commit[held.callbacks:]
                raise _EarlierFailed(exc) from None
            for statement in held.unsent:  # they ran, before this step's savepoint
                statement.done = True
        if not step.savepoint.sent:  # nothing of this step reached the database
            queued[:] = [st for st in queued if st.owner is not step]
        else:
            queued.clear()  # this step's own unsent writes
            if not rolled_back:
                _rollback_to(step.savepoint)
        del connection.run_on_commit[step.callbacks:]
        raise


def _held_failed(exc: DatabaseError, step: _Step) -> tuple[bool, bool]:
    """Did the round trip fail in the held step's writes (sent before `step`'s savepoint)? If
    that savepoint was never sent, yes. A wrong row count names its statement. Any other error:
    if the savepoint exists, the error came after it (and the step is rolled back to it here:
    the second answer)."""
    if not step.savepoint.sent:
        return True, False
    if isinstance(exc, WrongCount):
        return exc.statement.owner is not step, False
    try:
        _rollback_to(step.savepoint)
    except DatabaseError:
        return True, False  # the savepoint was never made: the error came before it
    return False, True


def _rollback_to(savepoint: Statement) -> None:
    # An error that passed through a Django ORM write marked the transaction for rollback
    # (mark_for_rollback_on_error); rolling back to a savepoint from before it clears that, as
    # Django's own savepoint rollback does, or Django would refuse every later query of the group.
    connection.needs_rollback = False
    with connection.cursor() as cursor:
        cursor.execute(savepoint.sql.replace("SAVEPOINT", "ROLLBACK TO SAVEPOINT", 1))


def _undo(step: _Step, out: Outcome, events: list, told: list) -> None:
    """Forget a step rolled back after it had run (its writes failed with the next query)."""
    del out.ran[step.ran:]
    del events[step.events:]
    del told[step.told:]
    out.queue[:] = step.queue
    del out.enqueue[step.enqueue:]


def _flush(events: list[Event], held: _Step | None, first_step: _Step | None, out: Outcome, told: list,
           busy: list[int]) -> None:
    """The held step's last writes (if still unsent) and the events the group's last step did not
    carry, in one round trip. If the held step's writes fail there, it is undone (and its events
    and hooks with it) and the rest is written without it."""
    if not events and not pending():
        return
    try:
        execute_together([_INSERT_EVENTS.statement(engine.group_events_ending_now())] if events else [])
        return
    except DatabaseError as exc:
        if held is None or held is first_step or held.confirmed() or not is_retryable(exc):
            raise
        cause = exc
    _rollback_to(held.savepoint)
    del connection.run_on_commit[held.callbacks:]
    pending().clear()
    _undo(held, out, events, told)
    busy.append(held.goroutine)
    if not events:
        return
    try:
        _INSERT_EVENTS(engine.group_events_ending_now())
    except DatabaseError:
        raise cause from None
