"""RQ job functions: module-level, taking ids, thin callers of the engine and services."""
from __future__ import annotations

import importlib
import logging
import time
from datetime import timedelta

from django.db import transaction

from . import clock, conf, dispatch, engine, services
from .db import fresh_connection, with_db_retries
from .models import Outbox, OutboxStatus
from .timer_loop import fire_due

log = logging.getLogger("slct_workflows")


def wake(*goroutine_ids: int) -> int:
    """Run the goroutines, each while it stays runnable (its selects firing at once), within
    the job's time budget; a blocked goroutine with a due timer is fired first. Returns the
    steps run."""
    fresh_connection()
    return _run(list(goroutine_ids))


def wake_timer(goroutine_id: int) -> int:
    """A scheduled job (a timer, or a failed step's retry): fire the due timer if the goroutine
    still waits on it, then run whatever is runnable."""
    fresh_connection()
    engine.fire_due_timer(goroutine_id)
    return _run([goroutine_id])


LOCAL_QUEUE = 2  # goroutines a job keeps to run itself; more wake-ups go to RQ for other workers


def fire_timers() -> int:
    """The scheduled timer job of one second: fire every due timer in bulk and enqueue the
    goroutines they woke. Returns how many fired."""
    fresh_connection()
    fired, done = fire_due(until=time.monotonic() + 5 * conf.job_seconds())
    if not done:
        dispatch.get().timers_at(clock.now())  # more is due than a job's time allows: go on in a new job
    return fired


def _run(goroutine_ids: list[int]) -> int:
    """Run steps: the goroutines a step wakes first (a couple kept here, the rest enqueued at
    once), then the goroutine itself while its selects fire at once, then the job's other
    goroutines; until the job's step or time budget is spent. What is left goes back to the
    front of the queue, also when a step raises."""
    from . import metrics

    steps = 0
    queue = list(goroutine_ids)
    deadline = time.monotonic() + conf.job_seconds()
    with dispatch.claiming_wakes() as claimed:
        try:
            while queue and steps < conf.steps_per_job() and time.monotonic() < deadline:
                current = queue.pop(0)
                started = time.perf_counter()
                result = engine.run_step(current)
                if result.blocked and engine.fire_due_timer(current):
                    started = time.perf_counter()
                    result = engine.run_step(current)
                if not result.ran:
                    continue
                metrics.observe_step(result, time.perf_counter() - started)
                steps += 1
                # The woken goroutine runs next: its sender is waiting for that rendezvous.
                next_up = [*claimed, *([current] if result.runnable_again else [])]
                claimed.clear()
                dispatch.wake_now(next_up[LOCAL_QUEUE:])
                queue[:0] = next_up[:LOCAL_QUEUE]
        finally:
            dispatch.wake_now([*queue, *claimed], at_front=True)
    return steps


def run_outbox(outbox_id: int) -> str:
    """Perform a recorded side effect once. The row is claimed in a transaction, so two jobs for
    the same row cannot both run it; a failure is retried with backoff by the sweep."""
    fresh_connection()

    def claim():
        with transaction.atomic():
            row = Outbox.objects.select_for_update().filter(pk=outbox_id).first()
            if row is None or row.status != OutboxStatus.PENDING:
                return None
            if row.not_before and row.not_before > clock.now():
                return None
            row.attempts += 1
            # Push not_before out while we run: a concurrent sweep will not start it twice.
            row.not_before = clock.now() + timedelta(minutes=5)
            row.save(update_fields=["attempts", "not_before"])
            return row

    row = with_db_retries(claim)
    if row is None:
        return "skipped"
    module, _, name = row.func.rpartition(".")
    try:
        func = getattr(importlib.import_module(module), name)
        result = func(*row.args, **row.kwargs)
    except Exception as exc:
        retry_after = getattr(exc, "retry_after", None)  # a rate limit: wait as told, never give up
        delay = retry_after or min(300.0, conf.retry_backoff() * 2 ** row.attempts)
        failed = row.attempts >= 10 and not retry_after
        Outbox.objects.filter(pk=row.pk).update(
            last_error=f"{type(exc).__name__}: {exc}",
            status=OutboxStatus.FAILED if failed else OutboxStatus.PENDING,
            not_before=clock.now() + timedelta(seconds=float(delay)),
        )
        if not failed:
            dispatch.get().outbox_at(row.pk, clock.now() + timedelta(seconds=float(delay)))
        log.warning("outbox %s (%s) failed: %s", row.pk, row.func, exc)
        return "failed"
    try:
        from .values import to_json

        result = to_json(result)
    except Exception:
        result = None
    Outbox.objects.filter(pk=row.pk).update(status=OutboxStatus.DONE, done_at=clock.now(), result=result)
    return "done"


def sweep() -> dict:
    """The periodic recovery sweep; it schedules its own next run."""
    fresh_connection()
    report = services.sweep()
    schedule_sweep()
    return report.__dict__


def schedule_sweep() -> None:
    interval = conf.sweep_interval()
    if interval <= 0:
        return
    import django_rq

    import time

    queue = django_rq.get_queue(conf.queue_name())
    # One job id per time slot: several workers (or run.sh restarts) scheduling the next sweep
    # collapse into one job, and the id differs from the running sweep's own (reusing it would
    # let the finishing job delete its successor).
    slot = int((time.time() + interval) // interval)
    queue.enqueue_in(
        timedelta(seconds=interval), "slct_workflows.jobs.sweep", job_id=f"slct-sweep-{slot}", result_ttl=0
    )
