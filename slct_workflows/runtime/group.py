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

The group ends at SLCT_GROUP_STEPS steps, after SLCT_GROUP_MS milliseconds (four times that
while none of its steps has woken a goroutine: nobody else waits for its COMMIT), when the job's
budget is spent, or at the first failed step (its failure is recorded in a transaction of its
own, as for a lone step). SLCT_GROUP_STEPS=1 runs one step per transaction.
"""
from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

from django.db import DatabaseError, connection, transaction

from slct_workflows import conf, hooks
from slct_workflows.models import Event
from slct_workflows.runtime import engine, timers
from slct_workflows.runtime.db import is_retryable
from slct_workflows.runtime.fixed_sql import FixedInsert, Statement, defer, deferring

T = TypeVar("T")

LOCAL_QUEUE = 2  # goroutines a job keeps to run itself; more wake-ups go to RQ for other workers
QUIET_GROUP = 4  # a group whose steps woke nobody may run this many times SLCT_GROUP_MS


@dataclass
class Outcome:
    """What one group transaction did, once it has committed."""

    ran: list[tuple[engine.StepResult, float]] = field(default_factory=list)  # each step, its seconds
    queue: list[int] = field(default_factory=list)  # the job's goroutines still to run, in order
    enqueue: list[int] = field(default_factory=list)  # woken here, for other workers: enqueue now
    failed: tuple[int, engine.StepFailed] | None = None  # a step whose method raised: record it


_INSERT_EVENTS = FixedInsert(Event)


class HooksBroke(Exception):
    """A listener broke the group's transaction when the group handed it its events (a failed
    query, or an error it swallowed inside an ORM write): nothing of the group committed. The
    caller runs the same goroutines again with each step's events handed over in the step
    (`hold_hooks=False`), where a breaking listener fails that step alone, recorded and retried
    like any failed write of the step."""


def run(queue: list[int], *, max_steps: int, until: float, hold_hooks: bool = True) -> Outcome:
    """Run steps of `queue` (goroutine ids) in one transaction, as the job's loop would run them
    one transaction each; returns what ran and what is left. Raises what a whole transaction
    must retry (a lost connection, a deadlock of the first step): nothing of it committed."""
    out = Outcome(queue=list(queue))
    started_at = time.monotonic()
    # SLCT_GROUP_MS bounds how long a goroutine woken by the group's steps waits for its COMMIT.
    # While no step has woken anyone (a burst of timer steps that finish their processes), only
    # the group's own steps wait for it: such a group may run QUIET_GROUP times as long.
    group_until = min(until, started_at + QUIET_GROUP * conf.group_ms() / 1000)
    busy: list[int] = []  # found another transaction's lock: left for the next transaction
    with transaction.atomic(), engine.deferring_events() as events, _holding(hold_hooks) as told:
        _savepoints.numbers = itertools.count(1)  # each group's savepoints are named alike
        bound = _lock_wait_bound()
        attempted = False  # a step has run or locked something: later steps' lock waits are bounded
        while out.queue and len(out.ran) < max_steps and (not out.ran or time.monotonic() < group_until):
            current = out.queue.pop(0)
            started, marks = time.perf_counter(), _Marks(len(events), len(told))
            # Known to be the last before it runs: its last writes carry the group's events.
            last = len(out.ran) + 1 >= max_steps or time.monotonic() >= group_until
            try:
                result = _one(current, bound=bound if attempted else None, last=last, marks=marks,
                              events=events, told=told)
            except (engine.StepFailed, _Busy) as exc:
                attempted = True
                del events[marks.events:]  # the step rolled back to its savepoint: so do its events
                del told[marks.told:]
                if isinstance(exc, _Busy):
                    busy.append(current)
                    continue
                out.failed = (current, exc)
                break
            attempted = True  # even a step that did not run holds its process lock until the COMMIT
            if not result.ran:
                continue
            out.ran.append((result, time.perf_counter() - started))
            if result.woken:
                group_until = min(group_until, started_at + conf.group_ms() / 1000)
            # The woken goroutine runs next: its sender is waiting for that rendezvous.
            next_up = [*result.woken, *([current] if result.runnable_again else [])]
            out.enqueue += next_up[LOCAL_QUEUE:]
            out.queue[:0] = next_up[:LOCAL_QUEUE]
            if last:
                events.clear()  # written with that step's last writes
                break
        _flush(events)
        if told:
            _deliver(told)  # the listeners see the group's changes in its transaction, once
    out.queue[:0] = busy  # first in the next transaction, which waits for their locks
    return out


class _Busy(Exception):
    """A later step of the group found a lock taken: rolled back to its savepoint."""


@dataclass
class _Marks:
    """Where a step's events and hook events start in the group's lists (what its rollback drops)."""

    events: int
    told: int


@contextmanager
def _holding(hold: bool) -> Iterator[list]:
    if hold:
        with hooks.holding() as told:
            yield told
    else:
        yield []  # events reach the listeners inside each step, as for a lone step


def _deliver(told: list) -> None:
    """Hand the group's hook events to the listeners. A listener that breaks the transaction (a
    failed query re-raised, or an error swallowed inside an ORM write, which marks the
    transaction for rollback) must not pass unseen: the group fails with HooksBroke and rolls
    back whole (no savepoint needed, nor its two round trips)."""
    try:
        hooks.deliver(told)
    except DatabaseError as exc:
        raise HooksBroke(f"a listener broke the transaction: {exc}") from exc
    if connection.needs_rollback:
        raise HooksBroke("a listener left the transaction marked for rollback")


def _lock_wait_bound() -> Statement:
    """The statement that bounds the lock waits of the group's later steps (PostgreSQL; SQLite
    has one writer at a time and no row locks). Sent with the second step's first query."""
    if connection.vendor == "postgresql":
        return Statement(f"SET LOCAL lock_timeout = '{conf.group_lock_wait_ms()}ms'", [], None, "lock_timeout", prepare=False)
    return Statement("", [], None, "lock_timeout")


def _one(goroutine_id: int, *, bound: Statement | None, last: bool, marks: _Marks, events: list,
         told: list) -> engine.StepResult:
    """One step in a savepoint; a blocked goroutine whose timer is due is fired (in a savepoint
    of its own: a step that then fails keeps the timer fired, and its hook event), then run.
    `bound` (for every step after the group's first attempt) limits its lock waits."""
    first = [bound] if bound is not None and bound.sql and not bound.sent else []
    try:
        result = _in_savepoint(lambda: engine.step_in_group(goroutine_id, last=last), first)
        if result.blocked and not result.ran and _in_savepoint(lambda: timers.fire_locked_due(goroutine_id)):
            marks.events, marks.told = len(events), len(told)  # the firing stays whatever follows
            result = _in_savepoint(lambda: engine.step_in_group(goroutine_id, last=last))
        return result
    except DatabaseError as exc:
        if bound is None or not is_retryable(exc):
            raise  # the whole transaction reruns (with_db_retries), as a lone step's would
        raise _Busy() from None


class _SavepointNumbers(threading.local):
    """Savepoint names repeat from group to group (slct_step_1, _2, ...), so the text of a step's
    first round trip repeats too, and psycopg's cache of parsed query texts serves it instead of
    splitting a new text at every step. Unique within a transaction, which is all PostgreSQL
    needs (and ROLLBACK TO names the latest of a name anyway)."""

    numbers: Iterator[int] = itertools.count(1)


_savepoints = _SavepointNumbers()


def _in_savepoint(func: Callable[[], T], first: list[Statement] = ()) -> T:
    """`func` in a savepoint whose SAVEPOINT statement travels with func's first query (no
    round trip of its own) and which is never released (a group is short; PostgreSQL keeps a
    few dozen subtransactions cheaply). On an exception: back to the savepoint, if anything was
    sent, and the on_commit callbacks registered since are dropped, as Django's atomic() does."""
    savepoint = Statement(f"SAVEPOINT slct_step_{next(_savepoints.numbers)}", [], None, "savepoint", prepare=False)
    callbacks = len(connection.run_on_commit)
    try:
        with deferring():
            for statement in [*first, savepoint]:  # `first` before the savepoint: kept if it rolls back
                defer(statement)
            return func()
    except BaseException:
        if savepoint.sent:
            # An error that passed through a Django ORM write marked the transaction for rollback
            # (mark_for_rollback_on_error); rolling back to a savepoint from before it clears
            # that, as Django's own savepoint rollback does, or Django refuses every later query.
            connection.needs_rollback = False
            with connection.cursor() as cursor:
                cursor.execute(savepoint.sql.replace("SAVEPOINT", "ROLLBACK TO SAVEPOINT", 1))
        del connection.run_on_commit[callbacks:]
        raise


def _flush(events: list[Event]) -> None:
    """The events the group's last step did not carry (the queue ran out before the group's
    limits), in one INSERT."""
    if events:
        _INSERT_EVENTS(engine.group_events_ending_now())
