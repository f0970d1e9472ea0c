"""How committed work reaches the workers: RQ by default, an in-memory list in tests.

Everything here runs *after* commit (transaction.on_commit, robust): if Redis is down the
database still holds the runnable goroutine and the sweep re-enqueues it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Protocol

from django.db import transaction

log = logging.getLogger("slct_workflows")


class Dispatcher(Protocol):
    def wake(self, goroutine_ids: list[int], at_front: bool = False) -> None: ...
    def wake_at(self, goroutine_id: int, when: datetime) -> None: ...
    def outbox(self, outbox_ids: list[int]) -> None: ...
    def outbox_at(self, outbox_id: int, when: datetime) -> None: ...
    def timers_at(self, when: datetime) -> None: ...


class RQDispatcher:
    def __init__(self) -> None:
        self._queues: dict[str, Any] = {}

    def _queue(self):
        """One Queue (and Redis connection pool) per queue name and process: django_rq.get_queue
        opens a new connection each call, ~2 ms an enqueue."""
        from django.conf import settings

        from slct_workflows import conf

        name = conf.queue_name()
        # Keyed by the queue's connection settings too, so a changed RQ_QUEUES (tests pointing at
        # another Redis) gets a new queue instead of the cached one.
        key = f"{name}|{sorted(getattr(settings, 'RQ_QUEUES', {}).get(name, {}).items())!r}"
        queue = self._queues.get(key)
        if queue is None:
            import django_rq

            queue = self._queues[key] = django_rq.get_queue(name)
        return queue

    def wake(self, goroutine_ids: list[int], at_front: bool = False) -> None:
        if not goroutine_ids:
            return
        from rq import Queue

        from slct_workflows import conf

        queue = self._queue()
        size = wake_job_size(len(goroutine_ids), conf.wake_batch())
        queue.enqueue_many([
            Queue.prepare_data(
                "slct_workflows.jobs.wake", args=tuple(goroutine_ids[i:i + size]), result_ttl=0, at_front=at_front
            )
            for i in range(0, len(goroutine_ids), size)
        ])

    def wake_at(self, goroutine_id: int, when: datetime) -> None:
        self._queue().enqueue_at(
            _whole_second_after(when), "slct_workflows.jobs.wake_timer", goroutine_id, result_ttl=0
        )

    def timers_at(self, when: datetime) -> None:
        """One job per second fires every timer due by then: a thousand timers due together
        cost one scheduled job and a few bulk transactions, not a thousand jobs."""
        at = _whole_second_after(when)
        self._queue().enqueue_at(
            at, "slct_workflows.jobs.fire_timers", job_id=f"slct-timers-{int(at.timestamp())}", result_ttl=0
        )

    def outbox(self, outbox_ids: list[int]) -> None:
        queue = self._queue()
        for oid in outbox_ids:
            queue.enqueue("slct_workflows.jobs.run_outbox", oid, result_ttl=0)

    def outbox_at(self, outbox_id: int, when: datetime) -> None:
        self._queue().enqueue_at(_whole_second_after(when), "slct_workflows.jobs.run_outbox", outbox_id, result_ttl=0)


SPREAD = 8


def wake_job_size(n: int, batch: int) -> int:
    """Goroutines per wake job: one each while there are few (a close waking two goroutines
    gives two workers a step each, side by side), then spread over at least SPREAD jobs, at most
    `batch` per job (a thousand timers: fifty jobs, not a thousand)."""
    return max(1, min(batch, -(-n // SPREAD)))


def _whole_second_after(when: datetime) -> datetime:
    """RQ keeps scheduled times in whole seconds (truncated): a job for 12:00:03.7 would run at
    12:00:03.0 and find its timer not yet due. Round up instead."""
    if when.microsecond:
        return when.replace(microsecond=0) + timedelta(seconds=1)
    return when


_dispatcher: Dispatcher = RQDispatcher()


def get() -> Dispatcher:
    return _dispatcher


def use(dispatcher: Dispatcher) -> Dispatcher:
    """Swap the dispatcher (tests); returns the previous one."""
    global _dispatcher
    previous, _dispatcher = _dispatcher, dispatcher
    return previous


_failing = False  # the last enqueue failed (Redis away): later failures are said in one line


def _robust(what: str, func: Callable[..., Any], *args: Any) -> None:
    """Enqueue, never raising: the work is in the database, where the recovery sweep finds it.
    Every failure is logged (it is work waiting for the sweep), the traceback only with the first
    of an outage; the first success after it says so."""
    global _failing
    try:
        func(*args)
    except Exception as exc:  # Redis down: the sweep will find the work in the database
        if _failing:
            log.warning("could not %s (%s: %s); the recovery sweep will pick it up", what, type(exc).__name__, exc)
        else:
            log.warning("could not %s; the recovery sweep will pick it up", what, exc_info=True)
        _failing = True
        return
    if _failing:
        _failing = False
        log.info("enqueueing works again")


def wake_now(goroutine_ids: list[int], *, at_front: bool = False) -> None:
    """Enqueue at once (outside any transaction), never raising: the sweep covers a failure."""
    if goroutine_ids:
        _robust("enqueue wake-ups", lambda: get().wake(list(goroutine_ids), at_front=at_front))


def after_commit_wake(goroutine_ids: Iterable[int]) -> None:
    ids = sorted(set(goroutine_ids))
    if ids:
        transaction.on_commit(lambda: _robust("enqueue wake-ups", get().wake, ids))


def after_commit_wake_at(goroutine_id: int, when: datetime) -> None:
    transaction.on_commit(lambda: _robust("schedule a timer", get().wake_at, goroutine_id, when))


def after_commit_timers_at(when: datetime) -> None:
    transaction.on_commit(lambda: _robust("schedule a timer", get().timers_at, when))


def after_commit_outbox(outbox_ids: list[int]) -> None:
    if outbox_ids:
        transaction.on_commit(lambda: _robust("enqueue outbox jobs", get().outbox, list(outbox_ids)))
