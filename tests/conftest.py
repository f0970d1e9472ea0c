"""Shared fixtures: real Redis, real RQ worker processes on the test database, the runner.

CI sets SLCT_REQUIRE_POSTGRES=1 for its PostgreSQL pass: then a run that is not on PostgreSQL
fails instead of quietly testing SQLite twice.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    from django.conf import settings

    # A queue of our own, so test runs side by side (and a developer's running worker) never
    # take each other's jobs; workers started by the fixtures get its name.
    name = f"slct-test-{os.getpid()}"
    settings.RQ_QUEUES[name] = dict(settings.RQ_QUEUES[settings.SLCT_QUEUE])
    settings.SLCT_QUEUE = name

    if not os.environ.get("REDIS_URL"):
        # Not started through test.sh: bring up the embedded redis-server the settings point at.
        from slct_project import embedded_redis

        embedded_redis.ensure()
    if os.environ.get("SLCT_REQUIRE_POSTGRES") == "1":
        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            pytest.exit(f"SLCT_REQUIRE_POSTGRES=1 but the database engine is {engine}", returncode=3)


@pytest.fixture
def runner(db):
    from slct_workflows.testing import WorkflowRunner

    with WorkflowRunner() as run:
        yield run


@pytest.fixture
def redis_conn():
    import django_rq
    from django.conf import settings

    conn = django_rq.get_connection(settings.SLCT_QUEUE)
    conn.ping()
    return conn


def _worker_env() -> dict[str, str]:
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    sd = connection.settings_dict
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{sd['NAME']}"
    else:
        user = sd.get("USER") or ""
        password = f":{sd['PASSWORD']}" if sd.get("PASSWORD") else ""
        auth = f"{user}{password}@" if user else ""
        env["DATABASE_URL"] = f"postgres://{auth}{sd.get('HOST') or '127.0.0.1'}:{sd.get('PORT') or 5432}/{sd['NAME']}"
    env["REDIS_URL"] = settings.RQ_QUEUES[settings.SLCT_QUEUE]["URL"]
    env["SLCT_QUEUE"] = settings.SLCT_QUEUE
    env["DJANGO_SETTINGS_MODULE"] = "slct_project.settings"
    env.setdefault("SLCT_SWEEP_INTERVAL", "0")  # tests run sweeps explicitly
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerPool:
    """Real `manage.py rqworker` processes on the test database."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, n: int = 1, *, scheduler: bool = True, extra_env: dict[str, str] | None = None) -> list[subprocess.Popen]:
        from django.conf import settings

        started = []
        for _ in range(n):
            i = len(self.procs)
            args = [sys.executable, str(ROOT / "manage.py"), "rqworker", settings.SLCT_QUEUE,
                    "--worker-class", "slct_workflows.worker.Worker", "--name", f"test-worker-{os.getpid()}-{i}-{time.time_ns()}"]
            if scheduler:
                args.append("--with-scheduler")
            log = open(self.logdir / f"worker-{i}.log", "ab")
            proc = subprocess.Popen(args, cwd=ROOT, env={**self.env, **(extra_env or {})}, stdout=log, stderr=log,
                                    start_new_session=True)
            self.procs.append(proc)
            started.append(proc)
        return started

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for p in self.alive():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(p)

    def logs(self) -> str:
        return "\n".join(f.read_text(errors="replace")[-4000:] for f in sorted(self.logdir.glob("worker-*.log")))


def postgres_only(why: str) -> None:
    """Skip on the SQLite pass, saying `why`; fail instead where PostgreSQL is required
    (SLCT_REQUIRE_POSTGRES=1, CI's PostgreSQL pass), so such a test never skips silently there."""
    from django.db import connection

    if connection.vendor != "postgresql":
        if os.environ.get("SLCT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SLCT_REQUIRE_POSTGRES=1 but the database is {connection.vendor}")
        pytest.skip(f"PostgreSQL only: {why}")


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM a process started with start_new_session=True and everything it started; SIGKILL
    what is still there after `timeout` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")


def run_concurrently(func: Callable[[], object], n: int, timeout: float = 60.0) -> list[object]:
    """Run `func` in `n` threads released together (each on its own database connection);
    returns their results; raises the first exception any of them raised."""
    import threading

    from django.db import connections

    barrier, results, errors = threading.Barrier(n), [], []

    def run() -> None:
        try:
            barrier.wait(timeout)
            results.append(func())
        except Exception as exc:  # re-raised below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise errors[0]
    assert len(results) == n, f"{n - len(results)} of {n} threads did not finish in {timeout}s"
    return results


def _drop_queue_keys(conn) -> None:
    from django.conf import settings

    for key in conn.scan_iter(match=f"*{settings.SLCT_QUEUE}*", count=1000):
        conn.delete(key)


@pytest.fixture
def clean_redis(redis_conn):
    """This run's queue, registries and scheduler lock start empty and are removed after."""
    _drop_queue_keys(redis_conn)
    yield redis_conn
    _drop_queue_keys(redis_conn)


@pytest.fixture
def rq_worker(transactional_db, clean_redis, tmp_path):
    """One real worker (non-forking, with the scheduler). `rq_worker.start(n)` adds more."""
    pool = WorkerPool(_worker_env(), tmp_path)
    pool.start(1)
    try:
        yield pool
    except Exception:
        raise
    finally:
        pool.stop_all()
        from django.db import connection

        # a killed worker may leave the SQLite WAL locked for a moment; let it settle
        if connection.vendor == "sqlite":
            time.sleep(0.1)


@pytest.fixture
def worker_pool(transactional_db, clean_redis, tmp_path):
    """No worker started yet: the test decides how many and when."""
    pool = WorkerPool(_worker_env(), tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
