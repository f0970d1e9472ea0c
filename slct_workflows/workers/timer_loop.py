"""The timer loop: due timers fire within a fraction of a second of their deadline, and the
recovery sweep runs from the workers themselves.

RQ's scheduler keeps scheduled jobs in whole seconds and looks for due ones once a second, so a
timer handed to it alone fires 0.5-2 s late. Every `slct_workflows.worker.Worker` runs this loop
on a thread; one of them leads at a time (a short Redis lease, renewed while it runs), so the
database sees one poller however many workers there are. Firing is the engine's bulk
`runtime.timers.fire_due` (skip-locked, idempotent), and the woken goroutines go to the queue like any
other wake-up: a loop that dies loses nothing, and the scheduled `fire_timers` jobs stay as the
fallback.

The leader also runs the recovery sweep (`services.sweep`) every SLCT_SWEEP_INTERVAL seconds
(DESIGN.md guarantee 8: recovery needs no human and nothing that can be lost). Nothing it needs
lives only in Redis: the lease is taken afresh with SET NX, and the loop notices that Redis lost
its data (an empty restart, a flush) because its marker key `slct:redis-epoch:<queue>` is gone,
and then sweeps at once with no grace period, since every queued job went with the data. A new
leader sweeps at once too (the previous one may have died with work in hand), and so does a
leader whose database or Redis comes back. No exception stops the loop: each part (the lease,
the timers, the sweep) logs once when it starts failing and once when it works again, and
retries every second meanwhile.

The leader also runs the registered maintenance tasks (`slct_workflows.maintenance`: retention,
schedules), on a thread of their own: a retention batch never holds up a timer. Who counts listens: `workers.sweep.sweep_listeners`, `runtime.timers.timer_listeners`.
"""
from __future__ import annotations

import logging
import threading
import time

from slct_workflows import clock, conf, heartbeat, maintenance
from slct_workflows.runtime import timers
from slct_workflows.runtime.db import release_frames, reset_connection
from slct_workflows.workers import sweep
from slct_workflows.workers.sweep import once_more

log = logging.getLogger("slct_workflows")

LEASE_SECONDS = 3.0
RETRY_SECONDS = 1.0  # a failing part (Redis, the timers, the sweep) tries again this often

class TimerLoop:
    def __init__(self, redis, name: str, *, poll: float | None = None, sweep_interval: float | None = None) -> None:
        self.redis, self.name = redis, name
        self.poll = conf.timer_poll_seconds() if poll is None else poll
        self.sweep_interval = conf.sweep_interval() if sweep_interval is None else sweep_interval
        self.key = heartbeat.leader_key()
        self.epoch_key = sweep.epoch_key()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.maintenance_thread: threading.Thread | None = None
        self.renew_at = 0.0  # monotonic time of the next lease renewal while leading
        self.leading = False
        self.next_sweep = 0.0  # monotonic time of the next sweep while leading (0: at once)
        self.sweep_grace: float | None = None  # None: SLCT_SWEEP_GRACE; 0 after Redis lost its data
        self.failing: set[str] = set()  # the parts whose last attempt failed: "redis", "timers", "sweep"

    def start(self) -> "TimerLoop":
        self.thread = threading.Thread(target=self.run, name="slct-timer-loop", daemon=True)
        self.thread.start()
        self.maintenance_thread = threading.Thread(target=self.maintain, name="slct-maintenance", daemon=True)
        self.maintenance_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        for thread in (self.thread, self.maintenance_thread):
            if thread is not None:
                thread.join(timeout)
        try:
            if self.redis.get(self.key) == self.name.encode():
                self.redis.delete(self.key)  # let another worker lead at once
        except Exception:
            pass

    def lead(self) -> bool:
        """Take or renew the lease; False if another worker holds it. Renewed a few times per
        lease, not at every round, to keep Redis traffic off the 50 ms rounds. At each renewal
        the epoch key is checked: if Redis lost it, the next sweep comes at once, with no grace."""
        if time.monotonic() < self.renew_at:
            return True
        ms = int(LEASE_SECONDS * 1000)
        leading = bool(self.redis.set(self.key, self.name, nx=True, px=ms))
        if not leading and self.redis.get(self.key) == self.name.encode():
            leading = bool(self.redis.pexpire(self.key, ms))
        if leading and self.redis.set(self.epoch_key, self.name, nx=True) and self.sweep_interval > 0:
            log.info("timer loop: Redis has no epoch marker (a first start, or Redis lost its data): sweeping now")
            self.next_sweep, self.sweep_grace = 0.0, 0.0
        self.renew_at = time.monotonic() + LEASE_SECONDS / 3 if leading else 0.0
        return leading

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    wait = self.tick()
                except Exception:  # tick catches its parts' errors; this is the last line of defence
                    log.exception("timer loop: unexpected error; going on")
                    wait = RETRY_SECONDS
                self.stopping.wait(wait)
        finally:
            reset_connection()

    def maintain(self) -> None:
        """The maintenance thread: while this worker leads, run the due maintenance tasks (each
        isolated by maintenance.run_due); its own database connection, closed at the end."""
        try:
            while not self.stopping.is_set():
                wait = LEASE_SECONDS / 3
                if self.leading:
                    try:
                        wait = maintenance.run_due(time.monotonic())
                    except Exception:  # run_due isolates each task; this is the last line of defence
                        log.exception("maintenance: unexpected error; going on")
                        wait = RETRY_SECONDS
                self.stopping.wait(min(max(wait, 0.05), LEASE_SECONDS / 3))
        finally:
            reset_connection()

    def tick(self) -> float:
        """One round; returns how long to sleep before the next."""
        try:
            leading = self.lead()
        except Exception as exc:
            # Redis away: no lease, so no timers and no sweep from this worker now (the database
            # keeps everything; the timers fire and the sweep runs when Redis is back).
            self._failed("redis", "round failed (Redis unreachable)", exc)
            self.renew_at, self.leading = 0.0, False
            return RETRY_SECONDS
        if self._recovered("redis"):
            self.next_sweep = 0.0  # Redis is back: it may have lost jobs
        if not leading:
            self.leading = False
            return LEASE_SECONDS / 3
        if not self.leading:
            self.leading = True
            self.next_sweep = 0.0  # a new leader sweeps at once: the last one may have died mid-work
        wait = LEASE_SECONDS / 3
        if self.poll > 0:
            wait = self._timers()
        if self.sweep_interval > 0:
            wait = min(wait, self._sweep())
        return max(0.0, wait)

    # -- the parts ------------------------------------------------------------------------------

    def _timers(self) -> float:
        try:
            wait = self._round()
        except Exception as exc:
            # The database away: the sweep (when it is back) and the scheduled fire_timers jobs
            # cover it. Said once per outage, not once a second.
            self._failed("timers", "round failed", exc)
            reset_connection()
            return RETRY_SECONDS
        if self._recovered("timers"):
            self.next_sweep = 0.0  # the database is back: find what the outage left behind
        return wait

    def _round(self) -> float:
        due = once_more(timers.next_deadline)
        now = clock.now()
        if due is None or due > now:
            wait = self.poll if due is None else (due - now).total_seconds()
            return max(0.001, min(self.poll, wait))
        fired, _ = timers.fire_due()
        # Nothing fired although one is due: its goroutine is locked by a step right now.
        return 0.0 if fired else self.poll

    def _sweep(self) -> float:
        now = time.monotonic()
        if now < self.next_sweep:
            return self.next_sweep - now
        try:
            report = sweep.run_sweep(self.redis, self.sweep_grace)
        except Exception as exc:
            self._failed("sweep", "recovery sweep failed", exc)
            reset_connection()
            self.next_sweep = time.monotonic() + RETRY_SECONDS
            return RETRY_SECONDS
        self._recovered("sweep")
        self.sweep_grace = None
        self.next_sweep = time.monotonic() + self.sweep_interval
        if report.runnable or report.timers or report.outbox:
            log.info("recovery sweep: re-enqueued %d runnable goroutines, %d due timers, %d outbox jobs",
                     report.runnable, report.timers, report.outbox)
        return self.sweep_interval

    def _failed(self, part: str, what: str, exc: BaseException) -> None:
        if part not in self.failing:
            log.warning("timer loop: %s; retrying every %.0f s: %s: %s", what, RETRY_SECONDS,
                        type(exc).__name__, exc, exc_info=exc)
            self.failing.add(part)
        release_frames(exc)  # its cursor is freed in this thread, not by another's collector

    def _recovered(self, part: str) -> bool:
        if part in self.failing:
            self.failing.discard(part)
            log.info("timer loop: %s running again", part)
            return True
        return False
