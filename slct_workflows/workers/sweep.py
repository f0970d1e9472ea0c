"""One recovery sweep, whoever runs it: the leading worker's timer loop, the scheduled `sweep`
job, or `manage.py slct_sweep`.

`services.sweep` finds what a fault left behind (runnable goroutines nobody queued, due timers,
pending outbox rows) and re-enqueues it; this module adds what a sweep run from a worker
needs: a dropped connection replaced once, the heartbeat key /readyz reads, and the listeners
(the metrics, the worker's log summary): functions appended to `sweep_listeners` are called
after every sweep attempt with `(ok, report_or_None, seconds)`; one that raises is logged and
ignored.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from django.db import DatabaseError, InterfaceError

from slct_workflows import conf, heartbeat, services

from slct_workflows.read import metrics
from slct_workflows.runtime.db import fresh_connection, is_connection_lost, release_frames, reset_connection

log = logging.getLogger("slct_workflows")

# Called after every sweep of this process (the loop's, the scheduled job's, the command's).
sweep_listeners: list[Callable[[bool, Any, float], None]] = [metrics.observe_sweep]


def epoch_key() -> str:
    """Set by the leading loop, never expires: if it is missing, Redis lost its data."""
    return f"slct:redis-epoch:{conf.queue_name()}"


def run_sweep(redis: Any, grace: float | None = None):
    """One recovery sweep: services.sweep (a connection the database dropped is replaced and the
    sweep retried), then the heartbeat key /readyz and the metrics read, and the sweep
    listeners. Raises what the sweep raised (told as a failure)."""
    started = time.monotonic()
    try:
        fresh_connection()
        report = once_more(lambda: services.sweep(grace))
        heartbeat.record_sweep(redis)
    except Exception:
        _tell(sweep_listeners, False, None, time.monotonic() - started)
        raise
    _tell(sweep_listeners, True, report, time.monotonic() - started)
    return report


def once_more(func: Callable[[], Any]) -> Any:
    """Run `func`; if its database connection was found dead, once more on a new one. Not
    with_db_retries: a database that stays away fails the attempt at once, and the loop (which
    must keep renewing its lease) tries again a second later."""
    try:
        return func()
    except (DatabaseError, InterfaceError) as exc:
        if not is_connection_lost(exc):
            raise
        release_frames(exc)
        reset_connection()
        return func()


def _tell(listeners: list[Callable[..., None]], *args: Any) -> None:
    for listener in list(listeners):
        try:
            listener(*args)
        except Exception:
            log.exception("a sweep listener raised")
