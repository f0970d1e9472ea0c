"""Periodic maintenance run by the workers: one registry, one runner.

The leading worker's timer loop (one leader at a time, a Redis lease) calls `run_due()` on every
round; each registered task runs when its interval has passed. Tasks must be small (a batch, a
few hundred milliseconds at most), idempotent, and safe if two workers ever run them at once (a
lease can change hands mid-task): retention deletes in batches, schedules start runs under
an id per time slot. A task that raises is logged once per outage and tried again at its next
interval; it never stops the loop or the other tasks.

    from slct_workflows import maintenance

    @maintenance.task("retention", every=lambda: conf.retention_interval())
    def prune_some() -> int: ...
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("slct_workflows")


@dataclass
class Task:
    name: str
    func: Callable[[], object]
    every: Callable[[], float]  # seconds; read each time so settings changes apply (0 or less: off)
    next_run: float = 0.0  # time.monotonic() of the next run (0: at the first round)
    failing: bool = False
    runs: int = field(default=0)


_tasks: dict[str, Task] = {}


def task(name: str, *, every: Callable[[], float] | float) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Register `func` to run every `every` seconds on the leading worker (decorator; only registers)."""
    interval = every if callable(every) else (lambda value=float(every): value)

    def decorate(func: Callable[[], object]) -> Callable[[], object]:
        _tasks[name] = Task(name, func, interval)
        return func

    return decorate


def tasks() -> list[Task]:
    return list(_tasks.values())


def run_due(now: float | None = None) -> float:
    """Run every task whose time has come; returns the seconds until the next one is due."""
    now = time.monotonic() if now is None else now
    wait = 60.0
    for t in list(_tasks.values()):
        interval = t.every()
        if interval <= 0:
            continue
        if now >= t.next_run:
            _run(t)
            # Read again: what the run found may change it (retention comes back sooner while
            # a backlog is left).
            t.next_run = now + max(0.0, t.every())
        wait = min(wait, max(0.0, t.next_run - now))
    return wait


def _run(t: Task) -> None:
    try:
        t.func()
    except Exception as exc:
        if not t.failing:
            log.warning("maintenance task %s failed; trying again at its next interval: %s: %s",
                        t.name, type(exc).__name__, exc, exc_info=exc)
            t.failing = True
        from django.db import connection

        connection.close_if_unusable_or_obsolete()
        return
    t.runs += 1
    if t.failing:
        log.info("maintenance task %s running again", t.name)
        t.failing = False
