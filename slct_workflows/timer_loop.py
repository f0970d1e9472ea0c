"""The timer loop: due timers fire within a fraction of a second of their deadline.

RQ's scheduler keeps scheduled jobs in whole seconds and looks for due ones once a second, so a
timer handed to it alone fires 0.5-2 s late. Every `slct_workflows.worker.Worker` runs this loop
on a thread; one of them leads at a time (a short Redis lease, renewed while it runs), so the
database sees one poller however many workers there are. Firing is the engine's bulk
`fire_due_timers` (skip-locked, idempotent), and the woken goroutines go to the queue like any
other wake-up: a loop that dies loses nothing, and the scheduled `fire_timers` jobs stay as the
fallback.
"""
from __future__ import annotations

import logging
import threading
import time

from django.db import connection

from . import clock, conf, dispatch, engine, heartbeat

log = logging.getLogger("slct_workflows")

LEASE_SECONDS = 3.0


def fire_due(until: float | None = None) -> tuple[int, bool]:
    """Fire every timer due now, a bulk transaction at a time, and enqueue the woken goroutines;
    stop at `until` (time.monotonic()) if given. Returns how many fired and whether none is left."""
    fired = 0
    while until is None or time.monotonic() < until:
        ids = engine.fire_due_timers()
        if not ids:
            return fired, True
        dispatch.wake_now(ids)
        fired += len(ids)
    return fired, False


class TimerLoop:
    def __init__(self, redis, name: str, *, poll: float | None = None) -> None:
        self.redis, self.name = redis, name
        self.poll = conf.timer_poll_seconds() if poll is None else poll
        self.key = heartbeat.leader_key()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.renew_at = 0.0  # monotonic time of the next lease renewal while leading
        self.failing = False  # the last round failed (Redis or the database away)

    def start(self) -> "TimerLoop":
        self.thread = threading.Thread(target=self.run, name="slct-timer-loop", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)
        try:
            if self.redis.get(self.key) == self.name.encode():
                self.redis.delete(self.key)  # let another worker lead at once
        except Exception:
            pass

    def lead(self) -> bool:
        """Take or renew the lease; False if another worker holds it. Renewed a few times per
        lease, not at every round, to keep Redis traffic off the 50 ms rounds."""
        if time.monotonic() < self.renew_at:
            return True
        ms = int(LEASE_SECONDS * 1000)
        leading = bool(self.redis.set(self.key, self.name, nx=True, px=ms))
        if not leading and self.redis.get(self.key) == self.name.encode():
            leading = bool(self.redis.pexpire(self.key, ms))
        self.renew_at = time.monotonic() + LEASE_SECONDS / 3 if leading else 0.0
        return leading

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.stopping.wait(self.tick())
        finally:
            connection.close()

    def tick(self) -> float:
        """One round; returns how long to sleep before the next."""
        try:
            wait = self._round()
        except Exception:
            # Redis or the database away: the scheduled fire_timers jobs and the sweep cover it.
            # Said once per outage, not once a second.
            if not self.failing:
                log.warning("timer loop: round failed; retrying every second", exc_info=True)
            self.failing = True
            self.renew_at = 0.0
            if not connection.in_atomic_block:
                connection.close()  # a dead database connection is opened afresh next round
            return 1.0
        if self.failing:
            log.info("timer loop: running again")
            self.failing = False
        return wait

    def _round(self) -> float:
        if not self.lead():
            return LEASE_SECONDS / 3
        due = engine.next_timer_deadline()
        now = clock.now()
        if due is None or due > now:
            wait = self.poll if due is None else (due - now).total_seconds()
            return max(0.001, min(self.poll, wait))
        fired, _ = fire_due()
        # Nothing fired although one is due: its goroutine is locked by a step right now.
        return 0.0 if fired else self.poll
