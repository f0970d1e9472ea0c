"""RQ job functions: module-level, taking ids, thin callers of the engine and services."""
from __future__ import annotations

import importlib
import logging
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from django.db import transaction

from slct_workflows import clock, conf, heartbeat
from slct_workflows.models import Outbox, OutboxStatus
from slct_workflows.runtime import dispatch, engine, group, timers
from slct_workflows.runtime.db import fresh_connection, is_transient, release_frames, reset_connection, with_db_retries
from slct_workflows.workers.sweep import run_sweep

log = logging.getLogger("slct_workflows")


def wake(*goroutine_ids: int) -> int:
    """Run the goroutines, each while it stays runnable (its selects firing at once), within
    the job's time budget; a blocked goroutine with a due timer is fired first. Returns the
    steps run."""
    fresh_connection()
    with _database_outage(goroutine_ids):
        return _run(list(goroutine_ids))
    return 0


def wake_timer(goroutine_id: int) -> int:
    """A scheduled job (a timer, or a failed step's retry): fire the due timer if the goroutine
    still waits on it, then run whatever is runnable."""
    fresh_connection()
    with _database_outage((goroutine_id,)):
        timers.fire_due_timer(goroutine_id)
        return _run([goroutine_id])
    return 0


OUTAGE_PAUSE = 1.0  # seconds a job whose database is away waits before handing its work back
_db_outage = False  # this worker's jobs are finding the database away (logged once per outage)


@contextmanager
def _database_outage(goroutine_ids) -> Iterator[None]:
    """A job whose database stayed away through all of with_db_retries' attempts: its steps
    rolled back (nothing committed), the goroutines are still runnable in the database. Not a
    failure of the job nor of the step: hand the goroutines back to the queue after a pause (an
    outage does not become a busy loop) and say so once per outage. If Redis is away too, the
    recovery sweep finds them when both are back."""
    global _db_outage
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):
            raise
        release_frames(exc)
        reset_connection()
        if not _db_outage:
            log.warning("database unreachable or dropping connections (%s: %s); jobs hand their goroutines back "
                        "to the queue until it is back", type(exc).__name__, exc)
            _db_outage = True
        time.sleep(OUTAGE_PAUSE)
        dispatch.wake_now(list(goroutine_ids))
        return
    if _db_outage:
        log.info("database reachable again: jobs run their steps")
        _db_outage = False


def fire_timers() -> int:
    """The scheduled timer job of one second: fire every due timer in bulk and enqueue the
    goroutines they woke. Returns how many fired."""
    fresh_connection()
    fired, done = timers.fire_due(until=time.monotonic() + 5 * conf.job_seconds())
    if not done:
        dispatch.get().timers_at(clock.now())  # more is due than a job's time allows: go on in a new job
    return fired


def _run(goroutine_ids: list[int]) -> int:
    """Run steps: the goroutines a step wakes first (a couple kept here, the rest enqueued once
    their step commits), then the goroutine itself while its selects fire at once, then the
    job's other goroutines; until the job's step or time budget is spent. Several steps share a
    transaction (runtime/group.py, group commit).

    What is left when the budget is spent goes to the back of the queue, like a Go goroutine
    whose time slice is up: handed back to the front, a chain of goroutines that keep waking
    each other (a ping-pong pair, a producer and its consumer) was picked up again at once and
    held the workers for as long as it ran, and every job behind it waited (the bench's 50
    ping-pong pairs on 2 workers: 48 of them never ran a step). When an error escapes the job
    (one that `with_db_retries` does not retry), what is left goes back to the front: its turn
    was cut short, not used up. A step whose method raises is recorded and does not end it."""
    from slct_workflows.read import metrics

    steps = 0
    queue = list(goroutine_ids)
    deadline = time.monotonic() + conf.job_seconds()
    hold_hooks = True
    try:
        while queue and steps < conf.steps_per_job() and time.monotonic() < deadline:
            limit = min(conf.group_steps(), conf.steps_per_job() - steps)
            try:
                out = with_db_retries(lambda: group.run(queue, max_steps=limit, until=deadline, hold_hooks=hold_hooks))
            except group.HooksBroke:
                log.warning("a hook listener broke a group's transaction; this job hands each step its own events")
                hold_hooks = False
                continue
            queue = out.queue
            dispatch.wake_now(out.enqueue)
            for result, seconds in out.ran:
                metrics.observe_step(result, seconds)
            steps += len(out.ran)
            if out.failed is not None:
                gid, failure = out.failed
                started = time.perf_counter()
                result = engine.record_failure(gid, failure)
                if result.ran:
                    metrics.observe_step(result, time.perf_counter() - started)
                    steps += 1
    except BaseException:
        dispatch.wake_now(queue, at_front=True)
        raise
    dispatch.wake_now(queue)  # the budget is spent: behind the queue
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
        from slct_workflows.values import to_json

        result = to_json(result)
    except Exception:
        result = None
    Outbox.objects.filter(pk=row.pk).update(status=OutboxStatus.DONE, done_at=clock.now(), result=result)
    return "done"


def sweep() -> dict:
    """The scheduled recovery sweep: the second path beside the workers' timer loop, whose leader
    sweeps every SLCT_SWEEP_INTERVAL seconds. It does nothing if a sweep completed within the last
    half interval (the loop's, usually), and it schedules its own next run whatever happens:
    one failed sweep (a dropped connection, Redis away) no longer ends the chain."""
    try:
        fresh_connection()
        redis = _redis()
        last = heartbeat.last_sweep(redis)
        if last is not None and time.time() - last < conf.sweep_interval() / 2:
            return {"skipped": "a sweep ran %.1f s ago" % (time.time() - last)}
        return run_sweep(redis).__dict__
    finally:
        try:
            schedule_sweep()
        except Exception:
            log.warning("could not schedule the next sweep job; the workers' timer loop sweeps anyway", exc_info=True)


def _redis():
    import django_rq

    return django_rq.get_connection(conf.queue_name())


def schedule_sweep() -> None:
    interval = conf.sweep_interval()
    if interval <= 0:
        return
    import django_rq

    queue = django_rq.get_queue(conf.queue_name())
    # One job id per time slot: several workers (or run.sh restarts) scheduling the next sweep
    # collapse into one job, and the id differs from the running sweep's own (reusing it would
    # let the finishing job delete its successor).
    slot = int((time.time() + interval) // interval)
    queue.enqueue_in(
        timedelta(seconds=interval), "slct_workflows.jobs.sweep", job_id=f"slct-sweep-{slot}", result_ttl=0
    )
