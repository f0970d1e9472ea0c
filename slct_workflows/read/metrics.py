"""Prometheus metrics (docs/OPERATIONS.md has the list, the scrape configuration and alerts).

Two kinds:

* **Counters and histograms of the workers' steps**, recorded where steps run
  (``jobs._run`` calls :func:`observe_step`). A step runs in an RQ worker process, not in the
  web server, so they use prometheus_client's *multiprocess mode*: with
  ``PROMETHEUS_MULTIPROC_DIR`` set (the same directory for the web server and the workers of
  one host, emptied when the host's services start), every process writes its values to files
  there and a scrape adds them up. Without it each process counts for itself, and the web
  server's ``/metrics`` shows only its own (zero) steps.
* **Gauges of the runtime's state**, read at scrape time by :class:`RuntimeCollector`: a few
  indexed queries on the database (backlog, overdue timers, processes, paused goroutines) and
  one pipelined round trip to Redis (timer-loop leader, last sweep, live workers, queue length).
  They are global, so any one web server serves them; a failing source is reported by
  ``slct_collector_up{source=...}`` 0, not by a failed scrape.

``/metrics`` is never open by default: the caller needs the Bearer token ``SLCT_METRICS_TOKEN``
and/or an address in ``SLCT_METRICS_ALLOW`` (both, when both are set); with neither set it
answers 403. ``manage.py slct_metrics_server`` serves the multiprocess counters of a host that
runs only workers, protected the same way.

prometheus_client is optional at import: without it, recording is a no-op and the endpoint
answers 503.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from datetime import datetime
from typing import Any, Iterable, Iterator

from slct_workflows import conf

log = logging.getLogger("slct_workflows")

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # pragma: no cover - prometheus_client is in requirements.txt
    prometheus_client = None

# Steps take milliseconds; a slow one (a user method calling out) seconds.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From runnable to committed: tens of milliseconds when workers keep up, minutes when they do not.
WAKEUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

LOCAL: Any = None  # this process's registry of the metrics below (None: not recording)
_recording = False


def _create_metrics() -> None:
    global LOCAL, STEPS, STEP_FAILURES, STEP_SECONDS, WAKEUP_SECONDS, SWEEPS, SWEEP_REPAIRS, SWEEP_SECONDS
    # This process's step metrics. Not the global default registry: nothing else registered by a
    # library ends up in our endpoint twice, and tests can import this module freely.
    LOCAL = CollectorRegistry(auto_describe=True)
    STEPS = Counter("slct_steps", "Steps run by workers (committed or failed).", registry=LOCAL)
    STEP_FAILURES = Counter(
        "slct_step_failures", "Steps whose method raised: rolled back, then retried or the process failed.",
        registry=LOCAL,
    )
    STEP_SECONDS = Histogram(
        "slct_step_duration_seconds", "Time to run one step, its transaction and database retries included.",
        buckets=STEP_BUCKETS, registry=LOCAL,
    )
    WAKEUP_SECONDS = Histogram(
        "slct_wakeup_latency_seconds",
        "From a goroutine becoming runnable (woken, timer fired, started) to its step committing.",
        buckets=WAKEUP_BUCKETS, registry=LOCAL,
    )
    SWEEPS = Counter("slct_sweeps", "Recovery sweeps attempted, by outcome (ok, failed).", ["outcome"],
                     registry=LOCAL)
    SWEEP_REPAIRS = Counter(
        "slct_sweep_repairs", "Work recovery sweeps found lost and re-enqueued, by kind (runnable, timers, outbox).",
        ["kind"], registry=LOCAL,
    )
    SWEEP_SECONDS = Histogram("slct_sweep_duration_seconds", "Time one recovery sweep took.",
                              buckets=STEP_BUCKETS, registry=LOCAL)


if prometheus_client is not None:
    try:
        # In multiprocess mode this opens this process's files in PROMETHEUS_MULTIPROC_DIR: a
        # missing directory must not stop a worker (the web endpoint reports the bad setting).
        _create_metrics()
        _recording = True
    except Exception:
        LOCAL = None
        log.error("metrics: cannot record metrics in this process (is PROMETHEUS_MULTIPROC_DIR=%r a writable "
                  "directory?)", os.environ.get("PROMETHEUS_MULTIPROC_DIR"), exc_info=True)

_warned = False


def _warn_once(what: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("metrics: could not record %s; metrics stay incomplete in this process", what, exc_info=True)


def observe_step(result: Any, seconds: float, now: datetime | None = None) -> None:
    """Count a step that ran (an engine.StepResult with ran=True) and how long it took. Never
    raises: metrics must not stop a worker."""
    if not _recording:
        return
    try:
        STEPS.inc()
        STEP_SECONDS.observe(max(0.0, seconds))
        if getattr(result, "failed", False):
            STEP_FAILURES.inc()
            return
        since = getattr(result, "runnable_since", None)
        if since is not None:
            from slct_workflows import clock

            WAKEUP_SECONDS.observe(max(0.0, ((now or clock.now()) - since).total_seconds()))
    except Exception:
        _warn_once("a step")


def observe_sweep(ok: bool, report: Any, seconds: float) -> None:
    """Count a recovery sweep attempt and what it re-enqueued (a services.SweepReport). A
    listener of every sweep (`workers.sweep` lists it: the timer loop's, the scheduled job's,
    the command's). Never raises."""
    if not _recording:
        return
    try:
        SWEEPS.labels(outcome="ok" if ok else "failed").inc()
        SWEEP_SECONDS.observe(max(0.0, seconds))
        for kind in ("runnable", "timers", "outbox"):
            n = getattr(report, kind, 0) if report is not None else 0
            if isinstance(n, int) and n > 0:
                SWEEP_REPAIRS.labels(kind=kind).inc(n)
    except Exception:
        _warn_once("a sweep")


# -- scrape-time gauges ----------------------------------------------------------------------

class RuntimeCollector:
    """Gauges read from the database and Redis when scraped."""

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("slct_collector_up", "1 if the source answered this scrape.", labels=["source"])
        for source, func in (("database", self._database), ("redis", self._redis)):
            try:
                families = list(func())
            except Exception:
                log.warning("metrics: reading the %s failed", source, exc_info=True)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up

    def _database(self) -> Iterable[Any]:
        from django.db.models import Count, Min, Q

        from slct_workflows import clock

        from slct_workflows.read import selectors
        from slct_workflows.models import Goroutine, GoroutineStatus, ProcessInstance, ProcessStatus

        now = clock.now()
        # Runnable goroutines of running processes (the partial index slct_goroutine_active);
        # those waiting out a retry backoff are counted apart: they are not late.
        waiting_retry = Q(retry_at__gt=now)
        runnable = Goroutine.objects.filter(
            status=GoroutineStatus.RUNNABLE, process__status=ProcessStatus.RUNNING
        ).aggregate(
            ready=Count("id", filter=~waiting_retry),
            oldest=Min("runnable_since", filter=~waiting_retry),
            retrying=Count("id", filter=waiting_retry),
        )
        yield _gauge("slct_runnable_goroutines", "Goroutines ready to run now (the backlog).", runnable["ready"])
        oldest = runnable["oldest"]
        yield _gauge(
            "slct_runnable_oldest_age_seconds", "How long the oldest ready goroutine has waited to run (0: none).",
            max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )
        yield _gauge("slct_retrying_goroutines", "Runnable goroutines waiting out a failed step's backoff.",
                     runnable["retrying"])

        # Blocked goroutines whose timer is due (the partial index slct_pending_timers).
        overdue = selectors.overdue_timer_cases(now).aggregate(
            n=Count("goroutine_id", distinct=True), oldest=Min("deadline")
        )
        yield _gauge("slct_overdue_timers", "Blocked goroutines whose timer is due and has not fired.", overdue["n"])
        yield _gauge(
            "slct_overdue_timer_oldest_seconds", "How late the most overdue timer is (0: none).",
            max(0.0, (now - overdue["oldest"]).total_seconds()) if overdue["oldest"] else 0.0,
        )

        # Live processes only (the partial index slct_process_active): done and cancelled ones
        # grow without bound and counting them would scan the table at every scrape.
        live = (ProcessStatus.RUNNING, ProcessStatus.FAILED)
        counts = dict(
            ProcessInstance.objects.filter(status__in=live).order_by().values("status").annotate(n=Count("id"))
            .values_list("status", "n")
        )
        processes = GaugeMetricFamily("slct_processes", "Processes by status (running and failed).", labels=["status"])
        for status in live:
            processes.add_metric([str(status)], counts.get(status, 0))
        yield processes

        # Goroutines stopped by the runaway guard, found through the live processes.
        paused = Goroutine.objects.filter(process__status__in=live, status=GoroutineStatus.PAUSED).count()
        yield _gauge("slct_paused_goroutines", "Goroutines paused by the runaway guard (an operator resumes them).",
                     paused)

    def _redis(self) -> Iterable[Any]:
        from rq import Queue

        from slct_workflows import heartbeat

        from slct_workflows.read import health

        client = health.redis_client()
        queue = Queue(conf.queue_name(), connection=client)
        registries = {
            "started": queue.started_job_registry, "scheduled": queue.scheduled_job_registry,
            "failed": queue.failed_job_registry, "deferred": queue.deferred_job_registry,
        }
        pipe = client.pipeline(transaction=False)
        pipe.get(heartbeat.leader_key())
        pipe.get(heartbeat.sweep_key())
        pipe.llen(queue.key)
        for registry_ in registries.values():
            pipe.zcard(registry_.key)  # without RQ's cleanup: a scrape reads, it does not repair
        leader, last_sweep, queued, *counts = pipe.execute()
        yield _gauge("slct_timer_loop_leader", "1 if a worker leads the timer loop.", 1 if leader else 0)
        try:
            last = float(last_sweep) if last_sweep is not None else 0.0
        except ValueError:
            last = 0.0
        yield _gauge("slct_last_sweep_timestamp_seconds", "Unix time of the last completed recovery sweep (0: none).",
                     last)
        jobs = GaugeMetricFamily("slct_rq_jobs", "Jobs of the slct RQ queue by state (queued: waiting for a "
                                 "worker; failed: RQ's failed-job registry).", labels=["state"])
        jobs.add_metric(["queued"], queued or 0)
        for state, n in zip(registries, counts):
            jobs.add_metric([state], n or 0)
        yield jobs
        yield _gauge("slct_workers", "RQ workers of the slct queue with a fresh heartbeat.",
                     len(health.live_workers(client)))


def _gauge(name: str, documentation: str, value: float) -> Any:
    return GaugeMetricFamily(name, documentation, value=float(value or 0))


class _Local:
    """This process's own step metrics, for a scrape without multiprocess mode."""

    def collect(self) -> Iterator[Any]:
        return LOCAL.collect() if LOCAL is not None else iter(())


def registry(*, runtime: bool = True) -> Any:
    """A registry for one scrape: the step metrics of every process of this host (multiprocess
    mode) or of this process alone, plus the scrape-time gauges when `runtime`."""
    from prometheus_client import multiprocess

    reg = CollectorRegistry(auto_describe=False)
    path = conf.metrics_multiproc_dir()
    if path:
        multiprocess.MultiProcessCollector(reg, path=path)
    else:
        reg.register(_Local())
    if runtime:
        reg.register(RuntimeCollector())
    return reg


def render(accept: str, *, runtime: bool = True) -> tuple[bytes, str]:
    """The exposition body and its content type, in the format the scraper asked for."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry(runtime=runtime)), content_type


# -- who may scrape ----------------------------------------------------------------------------

def scrape_allowed(authorization: str | None, remote_addr: str | None) -> tuple[bool, str]:
    """(allowed, why not). The token and the allow list each must pass when set; with neither
    set nobody may scrape. Raises ImproperlyConfigured on a bad setting."""
    token = conf.metrics_token()
    allow = conf.metrics_allow()
    if not token and not allow:
        return False, "metrics are off: set SLCT_METRICS_TOKEN and/or SLCT_METRICS_ALLOW"
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return False, "forbidden"
    if allow and not address_allowed(remote_addr, allow):
        return False, "forbidden"
    return True, ""


def address_allowed(remote_addr: str | None, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address((remote_addr or "").strip().split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack socket is 10.0.0.5
    return any(ip.version == net.version and ip in net for net in networks)


def metrics_view(request):
    """GET /metrics: the Prometheus exposition, for an allowed scraper."""
    from django.http import HttpResponse

    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    allowed, why = scrape_allowed(request.headers.get("Authorization"), request.META.get("REMOTE_ADDR"))
    if not allowed:
        return HttpResponse(why + "\n", status=403, content_type="text/plain; charset=utf-8")
    if prometheus_client is None:
        return HttpResponse("prometheus_client is not installed\n", status=503, content_type="text/plain")
    body, content_type = render(request.headers.get("Accept", ""))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
