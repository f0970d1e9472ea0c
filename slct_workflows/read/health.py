"""/healthz and /readyz: what a load balancer or an orchestrator asks (docs/OPERATIONS.md).

* ``/healthz``: this process answers HTTP. Touches neither the database nor Redis.
* ``/readyz``: the runtime can make progress: the database and Redis answer, at least one RQ
  worker of the slct queue has a fresh heartbeat, a worker leads the timer loop, and a recovery
  sweep completed within three sweep intervals. JSON with every check's result; 200 when all
  pass (a check reported as "disabled" passes), else 503. Never a 500: a check that raises is a
  failed check.

No authentication (load balancers call them). What they say is deliberately coarse: an error is
reported by its exception class, the details go to the log, so that nothing about the database's
or Redis's address leaks to whoever can reach the port.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from slct_workflows import conf, heartbeat

log = logging.getLogger("slct_workflows")

OK, FAIL, DISABLED = "ok", "fail", "disabled"
SWEEP_INTERVALS = 3  # a sweep older than this many intervals fails the check

_redis_clients: dict[str, Any] = {}
_redis_lock = threading.Lock()


def redis_client():
    """A Redis client for the slct queue's server with short socket timeouts (a health check must
    answer even when Redis hangs), made from django-rq's connection settings; one per process."""
    import django_rq
    import redis as redis_lib
    from django.conf import settings

    name = conf.queue_name()
    timeout = conf.health_timeout()
    key = f"{name}|{timeout}|{sorted(getattr(settings, 'RQ_QUEUES', {}).get(name, {}).items())!r}"
    client = _redis_clients.get(key)
    if client is not None:
        return client
    with _redis_lock:
        client = _redis_clients.get(key)
        if client is None:
            base = django_rq.get_connection(name)
            pool = base.connection_pool
            if type(pool) is redis_lib.ConnectionPool:  # plain or TLS; Sentinel pools are kept as they are
                kwargs = {**pool.connection_kwargs, "socket_timeout": timeout, "socket_connect_timeout": timeout}
                client = redis_lib.Redis(
                    connection_pool=redis_lib.ConnectionPool(connection_class=pool.connection_class, **kwargs)
                )
            else:
                client = base
            _redis_clients[key] = client
    return client


def live_workers(redis: Any, now: datetime | None = None) -> list[str]:
    """Names of the slct queue's RQ workers whose heartbeat is at most
    conf.ready_worker_seconds() old: the queue's worker registry, then one pipelined read of
    every worker's last heartbeat (a worker killed without unregistering drops out when its
    heartbeat grows old, or its key expires)."""
    from rq import Queue
    from rq.utils import utcparse
    from rq.worker_registration import get_keys

    keys = sorted(get_keys(queue=Queue(conf.queue_name(), connection=redis)))
    if not keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "last_heartbeat")
    beats = pipe.execute()
    now = now or datetime.now(timezone.utc)
    limit = conf.ready_worker_seconds()
    fresh = []
    for key, beat in zip(keys, beats):
        if not beat:
            continue
        try:
            at = utcparse(beat.decode() if isinstance(beat, bytes) else beat)
        except ValueError:
            continue
        if (now - at).total_seconds() <= limit:
            fresh.append(key.rsplit(":", 1)[-1])
    return fresh


def _check(func: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = func()
    except Exception as exc:
        log.warning("readyz: check %s failed", getattr(func, "__name__", func), exc_info=True)
        result = {"status": FAIL, "error": type(exc).__name__}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": OK}


def readiness() -> dict[str, Any]:
    """Every check's result and the overall status ("ok" or "fail")."""
    checks: dict[str, dict[str, Any]] = {"database": _check(check_database)}
    redis_state: dict[str, Any] = {}

    def check_redis() -> dict[str, Any]:
        client = redis_client()
        client.ping()
        redis_state["client"] = client
        return {"status": OK}

    checks["redis"] = _check(check_redis)
    client = redis_state.get("client")
    if client is None:
        for name in ("workers", "timer_loop", "sweep"):
            checks[name] = {"status": FAIL, "error": "redis unavailable"}
    else:
        checks["workers"] = _check(lambda: _workers(client))
        checks["timer_loop"] = _check(lambda: _timer_loop(client))
        checks["sweep"] = _check(lambda: _sweep(client))
    ok = all(c["status"] in (OK, DISABLED) for c in checks.values())
    return {"status": OK if ok else FAIL, "queue": conf.queue_name(), "checks": checks}


def _workers(client: Any) -> dict[str, Any]:
    names = live_workers(client)
    result: dict[str, Any] = {"status": OK if names else FAIL, "live": len(names)}
    if not names:
        result["error"] = f"no worker of queue {conf.queue_name()!r} with a heartbeat in the last " \
                          f"{conf.ready_worker_seconds():g}s"
    return result


def _timer_loop(client: Any) -> dict[str, Any]:
    if conf.timer_poll_seconds() <= 0:
        return {"status": DISABLED}
    leader = heartbeat.leader(client)
    if leader is None:
        return {"status": FAIL, "leader": None, "error": "no worker leads the timer loop"}
    return {"status": OK, "leader": leader}


def _sweep(client: Any) -> dict[str, Any]:
    interval = conf.sweep_interval()
    if interval <= 0:
        return {"status": DISABLED}
    limit = SWEEP_INTERVALS * interval
    last = heartbeat.last_sweep(client)
    if last is None:
        return {"status": FAIL, "age_seconds": None, "max_age_seconds": limit, "error": "no sweep recorded"}
    age = max(0.0, time.time() - last)
    result: dict[str, Any] = {"status": OK if age <= limit else FAIL, "age_seconds": round(age, 1),
                              "max_age_seconds": limit}
    if age > limit:
        result["error"] = f"the last sweep is {age:.0f}s old"
    return result


@never_cache
@require_http_methods(["GET", "HEAD"])
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": OK})


@never_cache
@require_http_methods(["GET", "HEAD"])
def readyz(request: HttpRequest) -> JsonResponse:
    try:
        report = readiness()
    except Exception as exc:  # a bug or a broken setting: still an answer, not a 500
        log.exception("readyz failed")
        report = {"status": FAIL, "checks": {"readyz": {"status": FAIL, "error": type(exc).__name__}}}
    return JsonResponse(report, status=200 if report["status"] == OK else 503)
