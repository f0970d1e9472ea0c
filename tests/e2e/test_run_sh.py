"""`./run.sh`, the README's run command, as a user runs it (on a private redis-server, a SQLite
database and a port of the test's own): the web server answers, the worker's timer loop sweeps
with no `slct_sweep` run by hand, a worker killed with SIGKILL is restarted by run.sh, and a
SIGTERM to run.sh stops everything it started (worker, its scheduler, the web server)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT, wait_until
from tests.reliability.conftest import PrivateRedis, _free_port

pytestmark = pytest.mark.e2e


def _session_pids(sid: int) -> list[int]:
    """Processes of the session `sid` (run.sh started with a session of its own)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
            pids.append(int(entry))
    return pids


def _workers(redis_url: str, queue: str) -> dict[str, int]:
    """Live RQ workers of `queue`: name -> pid."""
    import redis
    from rq import Queue, Worker

    conn = redis.Redis.from_url(redis_url)
    return {w.name: w.pid for w in Worker.all(connection=conn, queue=Queue(queue, connection=conn))
            if w.pid and _alive(w.pid)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_run_sh_serves_sweeps_restarts_its_worker_and_stops_cleanly(tmp_path):
    import redis

    server = PrivateRedis(tmp_path)
    server.start()
    port, queue = _free_port(), f"runsh-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DEBUG")}
    env.update(REDIS_URL=server.url, SLCT_DATA_DIR=str(tmp_path / "data"), PORT=str(port), SLCT_QUEUE=queue,
               PYTHONUNBUFFERED="1", SLCT_ADMIN_PASSWORD="run-sh-test-password")
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    logs = lambda: (tmp_path / "run.log").read_text(errors="replace")[-4000:]  # noqa: E731
    try:
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=120, interval=0.2,
                   message=f"the web server\n{logs()}")
        wait_until(lambda: len(_workers(server.url, queue)) == 1, timeout=60, interval=0.2,
                   message=f"the worker\n{logs()}")
        conn = redis.Redis.from_url(server.url)
        sweep_key = f"slct:last-sweep:{queue}"  # heartbeat.sweep_key() for that queue
        wait_until(lambda: conn.get(sweep_key) is not None, timeout=30, interval=0.2,
                   message=f"the worker's own sweep\n{logs()}")

        (name, pid), = _workers(server.url, queue).items()
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: any(p != pid for p in _workers(server.url, queue).values()), timeout=60, interval=0.2,
                   message=f"run.sh to restart the worker\n{logs()}")
        restart_s = time.monotonic() - killed
        assert "restarting it in" in logs()
        print(f"\nRUN.SH worker restarted {restart_s:.1f} s after SIGKILL", flush=True)

        survivors = _session_pids(proc.pid)
        assert len(survivors) >= 3, survivors  # run.sh, its supervisor, the worker, the web server...
        proc.send_signal(signal.SIGTERM)  # to run.sh alone, as `kill <pid>` does
        proc.wait(timeout=30)
        wait_until(lambda: not _session_pids(proc.pid), timeout=20, interval=0.2,
                   message=f"everything run.sh started to stop: {_session_pids(proc.pid)}\n{logs()}")
        assert not _http_ok(f"http://127.0.0.1:{port}/healthz")
    finally:
        for pid in _session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        server.kill()
