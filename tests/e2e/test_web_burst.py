"""A bounded burst against the development web server, as run.sh starts it.

`manage.py runserver` (threaded, DEBUG=1, on the test database) takes BURST requests from
THREADS client threads on loopback, token-authenticated, at a few API endpoints (reads and
buffered sends). No response may be a 5xx. On PostgreSQL the server's database connections
(pg_stat_activity for the test database, this test's own excluded) stay within one per request in
flight during the burst (CONN_MAX_AGE 0: the threaded server keeps none) and fall back to none
after it. Bounded: BURST requests, a 30 s deadline for them, 60 s for the whole test.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT, _worker_env, stop_process_group

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BURST = 1000
THREADS = 20
CONNECTION_BOUND = THREADS + 5  # one per request in flight, and a little slack for the server's own checks
DEADLINE = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web_server(transactional_db, clean_redis, tmp_path):
    """runserver on a free loopback port, on the test database, as run.sh would start it."""
    port = _free_port()
    env = {**_worker_env(), "DEBUG": "1"}
    env.pop("CONN_MAX_AGE", None)  # the development default: no persistent connections
    log = open(tmp_path / "runserver.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"runserver exited: {(tmp_path / 'runserver.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/definitions/", timeout=2)
            except urllib.error.HTTPError:  # 401/403: it answers
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("runserver did not answer within 30 s") from None
                time.sleep(0.1)
            else:
                break
        yield base, tmp_path / "runserver.log"
    finally:
        stop_process_group(proc, timeout=10)
        log.close()


class ConnectionWatch:
    """Samples the test database's connections (other than this process's own) every 20 ms."""

    def __init__(self) -> None:
        from django.db import connection

        import psycopg

        sd = connection.settings_dict
        connection.ensure_connection()
        self.own = connection.connection.info.backend_pid
        self.db = sd["NAME"]
        self.conn = psycopg.connect(
            host=sd.get("HOST") or "127.0.0.1", port=sd.get("PORT") or 5432, user=sd.get("USER") or None,
            password=sd.get("PASSWORD") or None, dbname=sd["NAME"], autocommit=True,
        )
        self.samples: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> %s",
            [self.db, self.own],
        ).fetchone()
        return int(row[0])

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.count())
            self.stop.wait(0.02)

    def __enter__(self) -> "ConnectionWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def test_a_burst_of_api_requests_gets_no_5xx_and_bounded_connections(web_server):
    from django.contrib.auth.models import User
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from slct_workflows import services

    base, log_path = web_server
    user = User.objects.create_superuser("burst", "burst@example.com", None)
    token = Token.objects.create(user=user).key
    services.create_channel("burst-buffer", capacity=BURST)
    pids = [services.start_process("counter", {"channel": f"burst-counter-{i}"}).process.id for i in range(3)]

    def request(i: int) -> tuple[str, int]:
        kind = i % 5
        headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        data = None
        if kind == 0:
            path = "/api/definitions/"
        elif kind == 1:
            path = "/api/processes/?page_size=20"
        elif kind == 2:
            path = f"/api/processes/{pids[i % len(pids)]}/"
        elif kind == 3:
            path = "/api/channels/burst-buffer/"
        else:
            path = "/api/channels/burst-buffer/send/"
            headers.update({"Content-Type": "application/json", "Idempotency-Key": f"burst-{i}"})
            data = json.dumps({"value": i}).encode()
        req = urllib.request.Request(base + path, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(req, timeout=DEADLINE) as r:
                r.read()
                return path.split("?")[0], r.status
        except urllib.error.HTTPError as e:
            return path.split("?")[0], e.code
        except OSError as e:  # refused or reset: the server fell over
            return path.split("?")[0], -1 if not isinstance(e, TimeoutError) else -2

    watch = ConnectionWatch() if connection.vendor == "postgresql" else None
    started = time.monotonic()
    if watch:
        watch.__enter__()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(request, range(BURST)))
    finally:
        if watch:
            watch.__exit__()
    elapsed = time.monotonic() - started

    statuses = Counter(status for _, status in results)
    by_path = Counter(results)
    server_log = Path(log_path).read_text(errors="replace")[-3000:]
    assert not [s for s in statuses if s >= 500 or s < 0], f"{by_path}\n{server_log}"
    assert set(statuses) <= {200, 201, 202}, f"unexpected statuses {by_path}"
    assert elapsed < DEADLINE, f"{BURST} requests took {elapsed:.1f} s"
    assert services.get_channel("burst-buffer").buffer.count() == BURST // 5

    if watch:
        peak = max(watch.samples)
        assert watch.samples and peak <= CONNECTION_BOUND, f"peak {peak} connections > {CONNECTION_BOUND}"
        settle = time.monotonic() + 10
        while watch.count() > 0 and time.monotonic() < settle:
            time.sleep(0.1)
        left = watch.count()
        watch.conn.close()
        assert left == 0, f"{left} server connections left open after the burst (peak {peak})"
        print(f"burst: {BURST} requests in {elapsed:.1f} s, peak {peak} server connections, {left} after")
