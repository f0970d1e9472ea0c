"""The ceilings: the write shape of one step through the Django ORM, alone and as RQ jobs.

The shape: lock the process row, update it (state + step count), insert a history row -- on the
runtime's own tables (ProcessInstance, Event), so indexes and row sizes are the real ones.
"""
from __future__ import annotations

import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

NAIVE_DEFINITION = "bench-naive"  # rows only; no such registered definition, nothing else runs them


def make_rows(n: int, prefix: str) -> list[str]:
    from slct_workflows.models import ProcessInstance

    ids = [f"{prefix}-{i}" for i in range(n)]
    ProcessInstance.objects.bulk_create(
        [ProcessInstance(id=pid, definition=NAIVE_DEFINITION, state={"n": 0}) for pid in ids]
    )
    return ids


def step_shaped_transaction(pid: str, *, enqueue_next=None) -> bool:
    """One step's worth of writes. False if the row is no longer running (the chain stops)."""
    from slct_workflows.models import Event, ProcessInstance

    started = time.perf_counter()
    now = timezone.now()
    with transaction.atomic():
        proc = ProcessInstance.objects.select_for_update().get(pk=pid)
        if proc.status != "running":
            return False
        proc.step_count += 1
        proc.state = {"n": proc.step_count}
        proc.save()
        Event.objects.create(
            process=proc, seq=proc.step_count, kind="step", goroutine="Main", method="Main_Naive",
            started_at=now, finished_at=now + timedelta(seconds=time.perf_counter() - started),
        )
        if enqueue_next is not None:
            transaction.on_commit(enqueue_next)
    return True


def raw_loop(pid: str, seconds: float) -> int:
    """Ceiling 1a: back-to-back step-shaped transactions on one connection."""
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step_shaped_transaction(pid)
        n += 1
    return n


_queue = None


def _get_queue():
    """One Queue (so one Redis connection pool) per process: the floor. (django_rq.get_queue()
    builds a new Redis client, hence a new TCP connection, on every call.)"""
    global _queue
    if _queue is None:
        import django_rq

        from slct_workflows import conf

        _queue = django_rq.get_queue(conf.queue_name())
    return _queue


def enqueue_naive(pids: list[str]) -> None:
    """Enqueue as the runtime's dispatcher does (enqueue_many, result_ttl=0), on a kept connection."""
    from rq import Queue

    _get_queue().enqueue_many(
        [Queue.prepare_data("bench.naive.naive_job", args=(pid,), result_ttl=0) for pid in pids]
    )


def naive_job(pid: str) -> None:
    """Ceiling 1b: the RQ job of a naive one-job-per-step pipeline -- the step-shaped transaction,
    then (after commit) the next job of the chain."""
    from slct_workflows.runtime.db import fresh_connection, with_db_retries

    fresh_connection()
    with_db_retries(lambda: step_shaped_transaction(pid, enqueue_next=lambda: enqueue_naive([pid])))
