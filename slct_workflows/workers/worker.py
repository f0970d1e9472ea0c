"""The project's RQ worker class: RQ's non-forking SimpleWorker, plus the timer loop, and a worker
that rides out outages instead of exiting.

Non-forking, because a step is a few milliseconds and a fork per job costs more than that (the
bench: ~4x fewer jobs/s); the guarantees do not depend on the fork, since every step is one
transaction and a worker killed mid-step leaves nothing half written. The timer loop (see
`timer_loop`) fires due timers within ~50 ms instead of RQ's whole seconds, and its leader runs
the recovery sweep every SLCT_SWEEP_INTERVAL seconds.

**Outages** (DESIGN.md guarantee 8). RQ's worker quits on most Redis errors: a ConnectionError
out of registration, the suspension check, the maintenance tasks, the bookkeeping of a finished
job or a heartbeat ends `work()` ("found an unhandled exception, quitting"), and a Redis
TimeoutError ends it too. This worker instead waits for Redis wherever it talks to it: pauses
growing from 0.5 s to SLCT_WORKER_REDIS_BACKOFF_MAX (2 s), the outage logged once when it begins
and once when it ends, a stop request (SIGTERM) still honoured while it waits. After the outage
it registers itself again if Redis lost its registration (an empty restart) and restarts RQ's
scheduler process if that died with Redis. A job whose bookkeeping Redis took down has done its
database work or none of it; either way the database says what is left, and the sweep finds it.
Database outages never reach this loop: a job's steps retry lost connections (db.py), and a job
whose database stays away hands its goroutines back to the queue (jobs.py).

**Logging.** A worker's routine lines are at DEBUG: RQ's per-job lines (the job dequeued, "Job
OK", "result discarded", the registries' cleaning) and this worker's own; at INFO it says what
matters (start, stop, outages) and, every SLCT_LOG_SUMMARY_SECONDS (60; 0: never), a summary of
what it did, when it did anything: "N steps in M jobs, K timers fired, S sweeps ok". The
per-job lines come back with `manage.py rqworker -v 2` (`WORKER_VERBOSITY=2 ./run.sh`).

**Database connections** are persistent in a worker (SLCT_WORKER_CONN_MAX_AGE, 600 s; the web
default is 0) with health checks before reuse, and on PostgreSQL a connect timeout and TCP
keepalives, so a dead peer is noticed instead of waited on.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool
from rq.exceptions import DequeueTimeout, StopRequested
from rq.logutils import blue, green
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from slct_workflows import conf
from slct_workflows.runtime import timers
from slct_workflows.workers import sweep
from slct_workflows.workers.timer_loop import TimerLoop

log = logging.getLogger("slct_workflows")
T = TypeVar("T")

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

# libpq parameters for a worker's PostgreSQL connections: give up connecting after 5 s, and
# probe an idle connection so a peer that vanished (a cut network) errors instead of hanging.
PG_OPTIONS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}
REDIS_CONNECT_TIMEOUT = 5.0
LOOP_REDIS_TIMEOUT = 5.0  # the timer loop's own Redis client: a hung Redis costs it a lease, not minutes
DEQUEUE_SECONDS = 10  # the idle loop comes round this often (heartbeat, scheduler check)
SCHEDULER_CHECK_SECONDS = 10.0
HEARTBEAT_MIN_SECONDS = 1.0  # no heartbeat or suspension check this soon after the last one (see heartbeat())

# RQ's lines that are written for every job (or every maintenance round): DEBUG here, not INFO.
ROUTINE_RQ_LINES = frozenset({
    "Worker %s: %s: %s (%s)",  # a job dequeued ("slct: slct_workflows.jobs.wake(...)"), and "Job OK"
    "Worker %s: %s: %s",
    "Worker %s: job %s result discarded immediately",
    "Worker %s: job %s result is kept for %s seconds",
    "Worker %s: job %s result will never expire, clean up result key manually",
    "Worker %s: cleaning registries for queue: %s",
    "Worker %s: cleaning group registries",
    "Successfully completed %s job in %ss on worker %s",
    "Successfully completed job %s in %ss on worker %s",
})
STEP_JOBS = ("slct_workflows.jobs.wake", "slct_workflows.jobs.wake_timer")


def summary_seconds() -> float:
    try:
        return float(os.environ.get("SLCT_LOG_SUMMARY_SECONDS", "60"))
    except ValueError:
        return 60.0


class RoutineAtDebug:
    """RQ's worker logger, with its per-job INFO lines logged at DEBUG."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if msg in ROUTINE_RQ_LINES:
            self.logger.debug(msg, *args, **kwargs)
        else:
            self.logger.info(msg, *args, **kwargs)


class Activity:
    """What this worker process did since the last summary (the jobs, their steps, the timers
    fired by its timer loop and its fire_timers jobs, its sweeps)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since = time.monotonic()
        self.jobs = self.failed_jobs = self.steps = self.timers = 0
        self.sweeps_ok = self.sweeps_failed = self.repairs = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)

    def take(self, interval: float) -> str | None:
        """The summary line if `interval` has passed and something happened; resets the counts
        when the interval has passed."""
        with self.lock:
            elapsed = time.monotonic() - self.since
            if interval <= 0 or elapsed < interval:
                return None
            counts = (self.steps, self.jobs, self.failed_jobs, self.timers, self.sweeps_ok, self.sweeps_failed,
                      self.repairs)
            self.since = time.monotonic()
            self.jobs = self.failed_jobs = self.steps = self.timers = 0
            self.sweeps_ok = self.sweeps_failed = self.repairs = 0
        steps, jobs, failed, timers, ok, bad, repairs = counts
        if not (jobs or failed or timers or bad or repairs):
            return None
        line = f"last {elapsed:.0f} s: {steps} steps in {jobs} jobs"
        if failed:
            line += f" ({failed} failed)"
        line += f", {timers} timers fired, " + (f"{ok} sweeps ok" if ok or not bad else "")
        if bad:
            line += f"{', ' if ok else ''}{bad} sweeps failed"
        if repairs:
            line += f", sweeps re-enqueued {repairs}"
        return line


activity = Activity()
_counting_installed = False


def _count_sweep(ok: bool, report: Any, seconds: float) -> None:
    repairs = sum(n for n in (getattr(report, k, 0) for k in ("runnable", "timers", "outbox")) if isinstance(n, int))
    activity.add(sweeps_ok=int(ok), sweeps_failed=int(not ok), repairs=repairs if ok else 0)


def install_activity_counting() -> None:
    """Count the timers this process fires and its sweeps (once per process)."""
    global _counting_installed
    if _counting_installed:
        return
    _counting_installed = True
    timers.timer_listeners.append(lambda n: activity.add(timers=n))
    if _count_sweep not in sweep.sweep_listeners:
        sweep.sweep_listeners.append(_count_sweep)


def persistent_db_connections() -> None:
    """Keep the worker's database connections (every thread's: they share the settings dicts)
    open across jobs, health-checked before reuse."""
    from django.db import connections

    age = conf.worker_conn_max_age()
    for conn in connections.all():
        settings_dict = conn.settings_dict
        settings_dict["CONN_MAX_AGE"] = age
        settings_dict["CONN_HEALTH_CHECKS"] = True
        if conn.vendor == "postgresql":
            options = settings_dict.setdefault("OPTIONS", {})
            for key, value in PG_OPTIONS.items():
                options.setdefault(key, value)
        conn.close()  # the next one is opened with these settings


class Worker(SimpleWorker):
    timer_loop: TimerLoop | None = None
    # Class-level defaults: RQ's __init__ already talks to Redis (_set_ip_address).
    _redis_down_since: float | None = None
    _redis_pause = 0.5
    _redis_repair_pending = False
    _scheduler_check_at = 0.0
    _beat_at = float("-inf")  # monotonic time of the last heartbeat sent (alone or in a pipeline)
    _state_written: str | None = None  # the state this worker last wrote to Redis itself
    _suspension_check_at = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log = RoutineAtDebug(self.log)

    def _summarize(self) -> None:
        line = activity.take(summary_seconds())
        if line:
            log.info("worker %s: %s", self.name, line)

    def _finalize_success(self, job: Any, queue: Any, execution: Any, return_value: Any) -> None:
        super()._finalize_success(job, queue, execution, return_value)
        steps = return_value if job.func_name in STEP_JOBS and isinstance(return_value, int) else 0
        activity.add(jobs=1, steps=steps)
        self._summarize()

    def handle_job_failure(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> None:
        super().handle_job_failure(job, queue, *args, **kwargs)
        activity.add(failed_jobs=1)

    # -- waiting for Redis ------------------------------------------------------------------------

    def _redis_down(self, what: str, exc: BaseException) -> None:
        """Note an outage (logged once, when it begins)."""
        self._state_written = None  # Redis may come back empty: write the state again
        self._beat_at = float("-inf")
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            self._redis_pause = 0.5
            log.warning("worker %s: Redis unreachable (%s: %s: %s); waiting for it, not exiting",
                        self.name, what, type(exc).__name__, exc)

    def _pause_for_redis(self) -> None:
        if getattr(self, "_stop_requested", False):
            raise StopRequested()
        time.sleep(self._redis_pause)
        self._redis_pause = min(self._redis_pause * 2, conf.worker_redis_backoff_max())
        if getattr(self, "_stop_requested", False):
            raise StopRequested()

    def _redis_up(self) -> None:
        if self._redis_down_since is not None:
            log.info("worker %s: Redis reachable again after %.1f s", self.name,
                     time.monotonic() - self._redis_down_since)
            self._redis_down_since = None
            self._redis_repair_pending = True
        if self._redis_repair_pending:
            self._repair_after_outage()

    def _ride_out(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `func` until Redis answers."""
        while True:
            try:
                result = func(*args, **kwargs)
            except REDIS_DOWN as exc:
                self._redis_down(what, exc)
                self._pause_for_redis()
                continue
            self._redis_up()
            return result

    def _repair_after_outage(self) -> None:
        """Redis may have restarted empty: put back what this worker keeps there."""
        self._redis_repair_pending = False
        try:
            self._register_again_if_lost()
            self._scheduler_check_at = 0.0
            self._keep_scheduler()
        except REDIS_DOWN as exc:  # down again: the next success repairs
            self._redis_down("repairing the registration", exc)
            self._redis_repair_pending = True

    def _register_again_if_lost(self) -> None:
        if getattr(self, "birth_date", None) is not None and not self.connection.hexists(self.key, "birth"):
            log.info("worker %s: Redis lost the worker's registration; registering again", self.name)
            self.connection.delete(self.key)  # a heartbeat may have left a partial hash
            SimpleWorker.register_birth(self)
            SimpleWorker.set_state(self, self.get_state() or WorkerStatus.IDLE)

    def _keep_scheduler(self) -> None:
        """RQ's scheduler process dies with Redis, and RQ restarts it only with the maintenance
        tasks (every 10 minutes); look every few seconds instead. A worker whose scheduler lost
        the lock to another worker's stays without one."""
        scheduler = getattr(self, "scheduler", None)
        if scheduler is None or time.monotonic() < self._scheduler_check_at:
            return
        self._scheduler_check_at = time.monotonic() + SCHEDULER_CHECK_SECONDS
        process = scheduler._process
        if process is None or not process.is_alive():
            scheduler.acquire_locks(auto_start=True)

    # -- RQ's calls to Redis, made patient ------------------------------------------------------

    def _set_connection(self, connection: Any) -> Any:
        connection = super()._set_connection(connection)
        kwargs = connection.connection_pool.connection_kwargs
        if kwargs.get("socket_connect_timeout") is None:
            kwargs["socket_connect_timeout"] = REDIS_CONNECT_TIMEOUT
        return connection

    @property
    def dequeue_timeout(self) -> int:
        return min(super().dequeue_timeout, DEQUEUE_SECONDS)

    def _set_ip_address(self, connection: Any) -> None:
        # Runs in __init__: a worker started while Redis is down waits for it.
        self._ride_out("starting", super()._set_ip_address, connection)

    def register_birth(self) -> None:
        attempts = 0

        def register() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # a retry: a key under our (unique) name is from the lost attempt
                self.connection.delete(self.key)
            super(Worker, self).register_birth()

        self._ride_out("registering", register)

    def subscribe(self) -> None:
        def subscribe() -> None:
            try:
                super(Worker, self).subscribe()
            except REDIS_DOWN:
                pubsub = getattr(self, "pubsub", None)
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass
                raise

        self._ride_out("subscribing", subscribe)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        # RQ logs an error every 2 s of an outage here; the main loop already said it once.
        if isinstance(exc, REDIS_DOWN):
            time.sleep(1.0)
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        self._ride_out("starting the scheduler", super()._start_scheduler, *args, **kwargs)

    # -- fewer round trips per job ---------------------------------------------------------------
    # RQ spends 27 Redis round trips on a job of ours, ~0.3 ms of worker CPU each here (most of it
    # the two system calls): more than a step costs. Eleven of them repeat what was just written:
    # three heartbeats of three commands each around every job (and one inside each of the job's
    # own pipelines), the idle state set twice, and a suspension check. A heartbeat only has to
    # keep the worker's key (TTL >= 60 s) and its last_heartbeat (/readyz: 60 s) fresh, so one
    # sent on its own is a single pipelined round trip, and it is skipped when any beat went out
    # in the last HEARTBEAT_MIN_SECONDS; a state is written only when it differs from the one
    # last written (docs/PERFORMANCE.md, "What a job costs in Redis").

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            self._state_written = None  # written when (if) the caller's pipeline executes
            return super().set_state(state, pipeline)
        if state == self._state_written:
            self._state = state
            return
        self._ride_out("setting its state", super().set_state, state)
        self._state_written = state

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            self._beat_at = time.monotonic()
            return super().heartbeat(timeout, pipeline)
        if time.monotonic() - self._beat_at < HEARTBEAT_MIN_SECONDS:
            return

        def beat() -> None:
            with self.connection.pipeline(transaction=False) as pipe:
                super(Worker, self).heartbeat(timeout, pipe)
                pipe.execute()

        self._ride_out("heartbeat", beat)
        self._beat_at = time.monotonic()

    def check_for_suspension(self, burst: bool) -> None:
        # Before every job in RQ; `rq suspend` is an operator's command, honoured within a second.
        if time.monotonic() < self._suspension_check_at:
            return
        self._ride_out("checking for suspension", super().check_for_suspension, burst)
        self._suspension_check_at = time.monotonic() + HEARTBEAT_MIN_SECONDS
        # Also once a second: is this worker still registered? redis-py's own retries hide a
        # short Redis restart from this class (no outage is seen), and a Redis that came back
        # empty would leave the worker unregistered, out of /readyz's live workers for good.
        self._ride_out("checking its registration", self._register_again_if_lost)

    def set_shutdown_requested_date(self) -> None:
        try:  # called from the SIGTERM handler: an outage must not turn a warm stop into a crash
            super().set_shutdown_requested_date()
        except REDIS_DOWN:
            pass

    def run_maintenance_tasks(self) -> None:
        self._ride_out("maintenance", super().run_maintenance_tasks)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):
        """RQ's, with its Redis errors handled here: logged once per outage (RQ logs each retry),
        pauses of at most a few seconds (RQ's grow to a minute), and a stop request honoured."""
        qnames = ",".join(self.queue_names())
        self.set_state(WorkerStatus.IDLE)
        self.procline("Listening on " + qnames)
        idle_since = now()
        idle_time_left = max_idle_time
        result = None
        while True:
            try:
                self.heartbeat()
                self._summarize()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                self._keep_scheduler()
                if timeout is not None and idle_time_left is not None:
                    timeout = min(timeout, idle_time_left)
                result = self.queue_class.dequeue_any(
                    self._ordered_queues, timeout, connection=self.connection, job_class=self.job_class,
                    serializer=self.serializer, death_penalty_class=self.death_penalty_class,
                )
                if result is not None:
                    job, queue = result
                    self.reorder_queues(reference_queue=queue)
                    job.redis_server_version = self.get_redis_server_version()
                    if self.log_job_description:
                        self.log.debug("Worker %s: %s: %s (%s)", self.name, green(queue.name), blue(job.description),
                                      job.id)
                    else:
                        self.log.debug("Worker %s: %s: %s", self.name, green(queue.name), job.id)
                self._redis_up()
                break
            except DequeueTimeout:
                self._redis_up()
                if max_idle_time is not None:
                    idle_for = (now() - idle_since).total_seconds()
                    idle_time_left = int(max_idle_time - idle_for + 0.999)
                    if idle_time_left <= 0:
                        break
            except REDIS_DOWN as exc:
                self._redis_down("waiting for jobs", exc)
                self._pause_for_redis()
        self.heartbeat()
        return result

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            # Redis went away around the job: its steps committed or rolled back in the database,
            # which the sweep reads; RQ's record of this execution is abandoned.
            self.executions.clear()
            self._redis_down(f"job {job.id}", exc)

    # -- start and stop -----------------------------------------------------------------------

    def _loop_redis(self) -> Any:
        """The timer loop's own client (same server, short timeouts): a lease it cannot renew in a
        few seconds is lost anyway, so it must not wait on RQ's long socket timeout."""
        pool = self.connection.connection_pool
        # One quick retry (a dropped idle connection), not redis-py's ten with backoff: the loop
        # itself tries again every second.
        short = {"socket_timeout": LOOP_REDIS_TIMEOUT, "socket_connect_timeout": LOOP_REDIS_TIMEOUT,
                 "retry": Retry(NoBackoff(), 1)}
        if isinstance(pool, SentinelConnectionPool):  # REDIS_SENTINELS: its Sentinel finds (and follows) the master
            return pool.sentinel_manager.master_for(pool.service_name, **short)
        kwargs = {**pool.connection_kwargs, **short}
        return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        from slct_workflows import definitions

        definitions.in_worker = True  # an unknown definition here says the code may be stale
        install_activity_counting()
        persistent_db_connections()
        super().bootstrap(*args, **kwargs)
        if (conf.timer_poll_seconds() > 0 or conf.sweep_interval() > 0) and self.timer_loop is None:
            self.timer_loop = TimerLoop(self._loop_redis(), self.name).start()

    def teardown(self) -> None:
        if self.timer_loop is not None:
            self.timer_loop.stop()
            self.timer_loop = None
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            # Its registration expires on its own (worker_ttl).
            log.warning("worker %s: Redis unreachable at shutdown (%s); stopping anyway", self.name, exc)
            try:
                self.unsubscribe()
            except Exception:  # noqa: BLE001
                pass
