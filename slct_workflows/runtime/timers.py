"""Timers: the one module that fires them, and the one query for due timers.

A timer is a pending `timer` case of a blocked goroutine. Every path that fires timers comes
here: the workers' timer loop (`fire_due`, in bulk), the scheduled `fire_timers` job (the
same), a goroutine's own scheduled `wake_timer` job and a job that finds its goroutine blocked
with a timer due (`fire_due_timer`), and the test runner. The recovery sweep, the dashboard and
the metrics count overdue timers with `PendingCase.objects.due_timers`. Firing consumes the goroutine's select in
the firing transaction and raises `hooks.SelectFired(by="timer")` there, whichever path fired.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Callable

from django.db import transaction
from django.db.models import F, Min

from slct_workflows import clock, conf, hooks
from slct_workflows.models import Goroutine, GoroutineStatus, NextKind, PendingCase
from slct_workflows.runtime import dispatch
from slct_workflows.runtime.db import with_db_retries
from slct_workflows.runtime.runnable import Next, next_fields

log = logging.getLogger("slct_workflows")

# Called after each bulk firing has committed, with how many timers it consumed (the metrics,
# the worker's log summary); a listener that raises is logged and ignored.
timer_listeners: list[Callable[[int], None]] = []


def next_deadline() -> datetime | None:
    """The earliest deadline of any pending timer case (a read on the timer index, no lock)."""
    return PendingCase.objects.filter(kind="timer").aggregate(due=Min("deadline"))["due"]


def fire(goroutines: list[Goroutine], now: datetime) -> list[int]:
    """Consume the select of each locked, blocked goroutine whose timer is due: the first due
    timer case (in case order) fires. Returns the goroutines made runnable."""
    first_due: dict[int, tuple[str, datetime]] = {}
    for gid, target, deadline in PendingCase.objects.filter(
        goroutine__in=goroutines, kind="timer", deadline__lte=now
    ).order_by("goroutine_id", "case_index").values_list("goroutine_id", "target", "deadline"):
        first_due.setdefault(gid, (target, deadline))
    if not first_due:
        return []
    PendingCase.objects.filter(goroutine_id__in=list(first_due)).delete()
    # One UPDATE per (method, deadline): timers set for the same moment fire in one statement.
    groups: dict[tuple[str, datetime], list[int]] = {}
    for gid, case in first_due.items():
        groups.setdefault(case, []).append(gid)
    for (target, deadline), ids in groups.items():
        nxt = Next(target, NextKind.TIMER, at=deadline, source={"timer": deadline.isoformat()})
        Goroutine.objects.filter(pk__in=ids).update(
            **next_fields(nxt, now), wait_seq=F("wait_seq") + 1, updated_at=now,
        )
    if hooks.wanted(hooks.SelectFired, hooks.BY_TIMER):
        by_id = {g.id: g for g in goroutines}
        hooks.emit(
            hooks.SelectFired(
                process_id=by_id[gid].process_id, goroutine=by_id[gid].name, goroutine_id=gid, kind="timer",
                channel="", method=target, by=hooks.BY_TIMER, source={"timer": deadline.isoformat()},
            )
            for gid, (target, deadline) in first_due.items()
        )
    return sorted(first_due)


def fire_due_timer(goroutine_id: int) -> bool:
    """If the goroutine is blocked and one of its timer cases is due, consume its select."""

    def attempt() -> bool:
        with transaction.atomic():
            return fire_locked_due(goroutine_id)

    return with_db_retries(attempt)


def fire_locked_due(goroutine_id: int) -> bool:
    """The same inside the caller's transaction (a group commit's savepoint): lock the goroutine
    if it is blocked, and consume its select if one of its timers is due."""
    locked = list(Goroutine.objects.select_for_update().filter(pk=goroutine_id, status=GoroutineStatus.BLOCKED))
    return bool(locked) and bool(fire(locked, clock.now()))


BULK = 100  # blocked goroutines fired per bulk transaction


def fire_due_timers(limit: int = BULK) -> list[int]:
    """Fire due timers in bulk: one transaction for up to `limit` blocked goroutines. Rows that
    another transaction holds (a counterpart firing them now) are skipped, not waited for; if
    that transaction rolls back, the next timer job or sweep finds the timer still due."""

    def attempt() -> list[int]:
        with transaction.atomic():
            now = clock.now()
            # The due cases alone, on the timer index; whether their goroutine still waits is left
            # to the locking read below. Joined to the goroutines here (as `due_timers` joins),
            # PostgreSQL's plan hung on fresh statistics: right after a burst of timers was set,
            # it scanned every blocked goroutine once per due case (100 ms per call at 1,000).
            due = set(PendingCase.objects.filter(kind="timer", deadline__lte=now)
                      .order_by("deadline").values_list("goroutine_id", flat=True)[: limit * 2])
            locked = list(
                Goroutine.objects.select_for_update(skip_locked=True)
                .filter(pk__in=sorted(due)[:limit], status=GoroutineStatus.BLOCKED).order_by("id")
            )
            return fire(locked, now) if locked else []

    return with_db_retries(attempt)


def fire_due(until: float | None = None) -> tuple[int, bool]:
    """Fire every timer due now, a bulk transaction at a time, and enqueue the woken goroutines;
    stop at `until` (time.monotonic()) if given. Returns how many fired and whether none is left."""
    fired = 0
    # The first transaction fires one wake job's worth, so that workers start on those steps
    # while the rest fire (a burst of 1,000 due together: the first steps commit ~30 ms sooner).
    limit = min(conf.wake_batch(), BULK)
    while until is None or time.monotonic() < until:
        ids = fire_due_timers(limit)
        if not ids and limit < BULK:
            limit = BULK  # the small first window found only goroutines busy elsewhere: look wider
            continue
        limit = BULK
        if not ids:
            return fired, True
        dispatch.wake_now(ids)
        fired += len(ids)
        _tell(len(ids))
    return fired, False


def _tell(*args: Any) -> None:
    for listener in list(timer_listeners):
        try:
            listener(*args)
        except Exception:
            log.exception("a timer listener raised")
