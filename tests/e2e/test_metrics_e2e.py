"""/metrics against real workers, Redis and the database: the step counters the workers write in
multiprocess mode move when steps run, the scrape-time gauges match the database, and the
endpoint (and manage.py slct_metrics_server) answer only the token and the allowed addresses."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import include, path
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from slct_workflows import clock, conf, services

from slct_workflows.read import metrics
from slct_workflows.models import (
    Event, Goroutine, GoroutineStatus, PendingCase, ProcessInstance, ProcessStatus,
)
from tests.conftest import ROOT, _worker_env, wait_until

# The endpoints as slct_project/urls.py mounts them (tested through this module as the URLconf).
urlpatterns = [path("", include("slct_workflows.health_urls"))]
pytestmark = [pytest.mark.e2e, pytest.mark.urls(__name__)]

TOKEN = "metrics-test-token-0123456789"
STEP_KINDS = ("step", "error", "failed")  # one history event per step that ran


def parse(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def scrape(client, **extra) -> dict[str, float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch):
    """The directory the workers write their metrics to and this (web) process reads."""
    d = tmp_path / "prometheus"
    d.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(d))
    return d


def steps_in_db(*kinds: str) -> int:
    return Event.objects.filter(kind__in=kinds or STEP_KINDS).count()


def test_step_counters_and_histograms_move_when_workers_run_steps(worker_pool, multiproc_dir, client, settings):
    settings.SLCT_METRICS_TOKEN = TOKEN
    before = scrape(client)
    assert before.get("slct_steps_total", 0) == 0
    assert before["slct_collector_up{source=\"database\"}"] == 1
    assert before["slct_collector_up{source=\"redis\"}"] == 1

    worker_pool.start(1, extra_env={  # with RQ's scheduler: it runs the failed step's retries
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "SLCT_RETRY_BACKOFF": "0.05", "SLCT_MAX_ATTEMPTS": "3",
    })
    pid = services.start_process("counter", {"channel": "metrics-1"}).process.id
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).step_count >= 2, timeout=30, message=worker_pool.logs())
    for i in range(5):
        services.send("metrics-1", i, f"metrics-k{i}")
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).state["counter"] == 5, timeout=30,
               message=f"5 values counted\n{worker_pool.logs()}")
    # A step that raises (idle_seconds is no number): retried twice, then the process fails.
    bad = services.start_process("counter", {"channel": "metrics-2", "idle_seconds": "soon"}).process.id
    wait_until(lambda: ProcessInstance.objects.get(pk=bad).status == ProcessStatus.FAILED, timeout=30,
               message=f"the failing process to fail\n{worker_pool.logs()}")

    ran, failed = steps_in_db(), steps_in_db("error", "failed")
    assert ran == 6 + 3 and failed == 3
    # The counter moves right after each commit: wait for the last one.
    wait_until(lambda: scrape(client).get("slct_steps_total") == ran, timeout=10,
               message=f"slct_steps_total to reach {ran}: {scrape(client).get('slct_steps_total')}")
    after = scrape(client)
    assert after["slct_step_failures_total"] == failed
    assert after["slct_step_duration_seconds_count"] == ran
    assert after["slct_step_duration_seconds_bucket{le=\"+Inf\"}"] == ran
    assert 0 < after["slct_step_duration_seconds_sum"] < 60
    # Wake-up latency: one observation per committed step, each from runnable to commit.
    assert after["slct_wakeup_latency_seconds_count"] == ran - failed
    assert 0 <= after["slct_wakeup_latency_seconds_sum"] < 60 * (ran - failed)
    assert after["slct_wakeup_latency_seconds_bucket{le=\"60.0\"}"] == ran - failed
    # The scrape-time gauges see the worker.
    assert after["slct_workers"] == 1
    assert after["slct_processes{status=\"running\"}"] == 1
    assert after["slct_processes{status=\"failed\"}"] == 1

    # A host that runs only workers: manage.py slct_metrics_server serves the same counters.
    port = _free_port()
    env = {**_worker_env(), "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "SLCT_METRICS_TOKEN": TOKEN}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "slct_metrics_server", "--addr", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: _http(url)[0] == 403, timeout=30, message="the metrics server to listen")
        status, body = _http(url, TOKEN)
        assert status == 200
        served = parse(body)
        assert served["slct_steps_total"] == ran
        assert served["slct_wakeup_latency_seconds_count"] == ran - failed
        assert "slct_runnable_goroutines" not in served  # the runtime gauges are the web server's
        assert _http(url, "wrong-token-0123456789")[0] == 403
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_sweeps_and_their_repairs_are_counted(worker_pool, multiproc_dir, client, settings, redis_conn):
    settings.SLCT_METRICS_TOKEN = TOKEN
    # Work Redis lost: a runnable goroutine whose job is gone from the queue.
    pid = services.start_process("counter", {"channel": "sweep-1"}).process.id
    Queue(settings.SLCT_QUEUE, connection=redis_conn).empty()
    worker_pool.start(1, scheduler=False, extra_env={
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "SLCT_SWEEP_INTERVAL": "1", "SLCT_SWEEP_GRACE": "0",
    })
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).step_count >= 2, timeout=30,
               message="the sweep to find the lost goroutine")
    wait_until(lambda: scrape(client).get('slct_sweeps_total{outcome="ok"}', 0) >= 2, timeout=30,
               message="two sweeps to be counted")
    got = scrape(client)
    assert got['slct_sweep_repairs_total{kind="runnable"}'] >= 1
    assert got.get('slct_sweeps_total{outcome="failed"}', 0) == 0
    assert got["slct_sweep_duration_seconds_count"] >= 2
    assert time.time() - 30 < got["slct_last_sweep_timestamp_seconds"] <= time.time()


def test_gauges_match_the_database(worker_pool, client, settings):
    """No worker runs: started processes stay in the backlog."""
    settings.SLCT_METRICS_TOKEN = TOKEN
    ids = [services.start_process("counter", {"channel": f"gauge-{i}"}).process.id for i in range(4)]
    # One process failed, one goroutine paused by the runaway guard, one blocked on an overdue timer.
    ProcessInstance.objects.filter(pk=ids[0]).update(status=ProcessStatus.FAILED)
    Goroutine.objects.filter(process_id=ids[1]).update(status=GoroutineStatus.PAUSED, runnable_since=None)
    late = Goroutine.objects.get(process_id=ids[2])
    Goroutine.objects.filter(pk=late.pk).update(status=GoroutineStatus.BLOCKED, runnable_since=None)
    PendingCase.objects.create(goroutine=late, kind="timer", deadline=clock.now() - timedelta(seconds=30),
                               target="Main_Done")
    Goroutine.objects.filter(process_id=ids[3]).update(runnable_since=clock.now() - timedelta(seconds=20))

    got = scrape(client)
    runnable = Goroutine.objects.filter(status=GoroutineStatus.RUNNABLE, process__status=ProcessStatus.RUNNING)
    assert got["slct_runnable_goroutines"] == runnable.count() == 1
    assert 20 <= got["slct_runnable_oldest_age_seconds"] < 120
    assert got["slct_retrying_goroutines"] == 0
    assert got["slct_processes{status=\"running\"}"] == ProcessInstance.objects.filter(status="running").count() == 3
    assert got["slct_processes{status=\"failed\"}"] == ProcessInstance.objects.filter(status="failed").count() == 1
    assert got["slct_paused_goroutines"] == Goroutine.objects.filter(status=GoroutineStatus.PAUSED).count() == 1
    assert got["slct_overdue_timers"] == 1
    assert 30 <= got["slct_overdue_timer_oldest_seconds"] < 120
    assert got["slct_workers"] == 0
    assert got["slct_timer_loop_leader"] == 0
    assert got["slct_last_sweep_timestamp_seconds"] == 0
    assert got['slct_rq_jobs{state="queued"}'] == 4  # the start jobs wait in Redis for a worker
    assert got['slct_rq_jobs{state="failed"}'] == got['slct_rq_jobs{state="started"}'] == 0
    assert got["slct_collector_up{source=\"database\"}"] == got["slct_collector_up{source=\"redis\"}"] == 1


def test_a_source_that_fails_is_reported_not_raised(worker_pool, client, settings):
    settings.SLCT_METRICS_TOKEN = TOKEN
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, settings.SLCT_QUEUE: {"URL": "redis://127.0.0.1:1/0"}}
    got = scrape(client)
    assert got["slct_collector_up{source=\"redis\"}"] == 0
    assert got["slct_collector_up{source=\"database\"}"] == 1
    assert "slct_timer_loop_leader" not in got and "slct_runnable_goroutines" in got


def test_the_endpoint_is_closed_unless_a_token_or_an_address_allows(db, client, settings):
    settings.SLCT_METRICS_TOKEN = ""
    settings.SLCT_METRICS_ALLOW = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 403  # never open by default
    assert b"SLCT_METRICS_TOKEN" in response.content

    settings.SLCT_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token-0123456789").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405

    # Token and allow list both set: both must pass.
    settings.SLCT_METRICS_ALLOW = "10.0.0.0/8, 192.168.1.7"
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 403  # from 127.0.0.1
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", REMOTE_ADDR="10.2.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.3.4").status_code == 403

    # An allow list alone.
    settings.SLCT_METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:192.168.1.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.8").status_code == 403
    assert client.get("/metrics").status_code == 403
    settings.SLCT_METRICS_ALLOW = ["127.0.0.1", "::1/128"]
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("name, value", [
    ("SLCT_METRICS_ALLOW", "10.0.0.0/33"),
    ("SLCT_METRICS_ALLOW", "10.0.0.1, localhost"),
    ("SLCT_METRICS_ALLOW", 42),
    ("SLCT_METRICS_TOKEN", "short"),
    ("SLCT_METRICS_TOKEN", "a token with spaces in it"),
])
def test_bad_settings_are_refused(settings, name, value):
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        conf.metrics_token() if name == "SLCT_METRICS_TOKEN" else conf.metrics_allow()


def test_the_metrics_server_refuses_to_start_without_the_multiprocess_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["SLCT_METRICS_TOKEN"] = TOKEN
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "slct_metrics_server", "--port", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr


def test_recording_never_raises():
    class Broken:
        failed = False

        @property
        def runnable_since(self):
            raise RuntimeError("boom")

    metrics.observe_step(Broken(), 0.01)  # logged once, not raised


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""
