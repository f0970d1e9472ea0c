"""/healthz and /readyz against real Redis, the real database and real RQ workers."""
from __future__ import annotations

import os
import signal
import time

import pytest
from django.urls import include, path

from slct_workflows.read import health

from slct_workflows import heartbeat
from tests.conftest import wait_until

# The endpoints as slct_project/urls.py mounts them (tested through this module as the URLconf).
urlpatterns = [path("", include("slct_workflows.health_urls"))]
pytestmark = pytest.mark.urls(__name__)

CHECKS = {"database", "redis", "workers", "timer_loop", "sweep"}


def readyz(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body["checks"]) == CHECKS, body
    return response.status_code, body


def statuses(body: dict) -> dict[str, str]:
    return {name: check["status"] for name, check in body["checks"].items()}


def test_healthz_answers_without_the_database(client):
    # No `db` fixture: pytest-django refuses any query, so a 200 proves none was made.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert client.get("/healthz/").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_readyz_is_503_without_a_worker_and_200_with_one(worker_pool, redis_conn, client, settings):
    settings.SLCT_SWEEP_INTERVAL = 15
    settings.SLCT_TIMER_POLL_SECONDS = 0.05

    code, body = readyz(client)
    assert code == 503, body
    assert body["status"] == "fail"
    assert statuses(body) == {"database": "ok", "redis": "ok", "workers": "fail", "timer_loop": "fail",
                              "sweep": "fail"}
    assert body["checks"]["workers"]["live"] == 0
    assert body["checks"]["sweep"]["error"] == "no sweep recorded"

    proc = worker_pool.start(1, scheduler=False)[0]
    wait_until(lambda: heartbeat.leader(redis_conn) is not None and health.live_workers(redis_conn), timeout=30,
               message=f"the worker to register and lead the timer loop\n{worker_pool.logs()}")
    code, body = readyz(client)
    assert code == 503 and statuses(body)["sweep"] == "fail", body  # no sweep yet
    assert statuses(body)["workers"] == statuses(body)["timer_loop"] == "ok"

    heartbeat.record_sweep(redis_conn)
    code, body = readyz(client)
    assert code == 200, body
    assert body["status"] == "ok"
    assert statuses(body) == dict.fromkeys(CHECKS, "ok")
    assert body["checks"]["workers"]["live"] == 1
    assert body["checks"]["timer_loop"]["leader"] == heartbeat.leader(redis_conn)
    assert 0 <= body["checks"]["sweep"]["age_seconds"] <= 45
    assert body["checks"]["sweep"]["max_age_seconds"] == 45
    assert all(check["ms"] >= 0 for check in body["checks"].values())

    # A sweep older than three intervals fails the check; with the sweep turned off it is skipped.
    heartbeat.record_sweep(redis_conn, at=time.time() - 46)
    code, body = readyz(client)
    assert code == 503 and statuses(body)["sweep"] == "fail", body
    settings.SLCT_SWEEP_INTERVAL = 0
    code, body = readyz(client)
    assert code == 200 and statuses(body)["sweep"] == "disabled", body

    # The worker stops (warm shutdown: it unregisters and hands the lease back): not ready again.
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    code, body = readyz(client)
    assert code == 503, body
    assert statuses(body)["workers"] == "fail" and statuses(body)["timer_loop"] == "fail"


def test_readyz_counts_only_workers_with_a_fresh_heartbeat(worker_pool, redis_conn, client, settings):
    worker_pool.start(1, scheduler=False)
    wait_until(lambda: health.live_workers(redis_conn), timeout=30, message=worker_pool.logs())
    settings.SLCT_READY_WORKER_SECONDS = 1
    time.sleep(1.5)  # an idle RQ worker beats every few minutes: its heartbeat is now too old
    code, body = readyz(client)
    assert code == 503
    assert body["checks"]["workers"]["status"] == "fail" and body["checks"]["workers"]["live"] == 0, body


def test_an_idle_worker_keeps_its_heartbeat_fresh(worker_pool, redis_conn, settings):
    """The project's worker beats every 10 s when idle (a stock RQ worker: every 405 s), which is
    what lets SLCT_READY_WORKER_SECONDS default to 60 s."""
    worker_pool.start(1, scheduler=False)
    wait_until(lambda: health.live_workers(redis_conn), timeout=30, message=worker_pool.logs())
    settings.SLCT_READY_WORKER_SECONDS = 15
    time.sleep(16)
    assert len(health.live_workers(redis_conn)) == 1


def test_readyz_with_redis_away_answers_503_not_500(db, client, settings):
    queue = settings.SLCT_QUEUE
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, queue: {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 300}}
    started = time.monotonic()
    code, body = readyz(client)
    assert time.monotonic() - started < 10
    assert code == 503
    assert statuses(body) == {"database": "ok", "redis": "fail", "workers": "fail", "timer_loop": "fail",
                              "sweep": "fail"}
    assert body["checks"]["redis"]["error"] == "ConnectionError"  # the class only: no address leaks
    assert body["checks"]["workers"]["error"] == "redis unavailable"


def test_readyz_with_a_failing_check_or_a_bug_answers_503_not_500(db, client, monkeypatch):
    def broken():
        raise RuntimeError("database at 10.0.0.1 is away")

    monkeypatch.setattr(health, "check_database", broken)
    code, body = readyz(client)
    assert code == 503
    assert body["checks"]["database"]["status"] == "fail"
    assert body["checks"]["database"]["error"] == "RuntimeError"
    assert "10.0.0.1" not in str(body)

    monkeypatch.setattr(health, "readiness", lambda: 1 / 0)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "fail"
