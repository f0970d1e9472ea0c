"""The bench's own database, Redis queue and RQ workers.

Nothing here is shared with a developer's run or a test run: the bench uses a database of its own
(`slct_bench` on PostgreSQL, `.slct/bench/bench.sqlite3` on SQLite), a queue name of its own, and
on SQLite an embedded redis-server on a port of its own. The environment is set *before* Django is
imported, so `slct_project.settings` reads the bench's DATABASE_URL, REDIS_URL and SLCT_QUEUE.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".slct" / "bench"
PYTHON = sys.executable

WORKER_CLASSES = {
    "slct": "slct_workflows.worker.Worker",
    "simple": "rq.worker.SimpleWorker",
    "fork": "rq.worker.Worker",
    "spawn": "rq.worker.SpawnWorker",
}


@dataclass
class BenchEnv:
    db: str  # "sqlite" | "postgres"
    database_url: str
    redis_url: str
    queue: str
    workers: int
    worker_class: str
    embedded_redis_port: int | None = None
    started_redis: bool = False
    debug: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            SLCT_QUEUE=self.queue,
            SLCT_SWEEP_INTERVAL="0",  # no periodic sweep: it would add jobs the figures do not ask for
            SLCT_WORKFLOW_MODULES="bench.workflows",
            SLCT_DATA_DIR=str(DATA),
            DJANGO_SETTINGS_MODULE="slct_project.settings",
            PYTHONUNBUFFERED="1",
            SLCT_LOG_LEVEL=os.environ.get("SLCT_LOG_LEVEL", "WARNING"),
            # as in production: with DEBUG on, Django keeps every query in connection.queries_log
            # and formats it, which costs a worker a few percent
            DEBUG="true" if self.debug else "false",
            # Production settings refuse to start without a real key and hosts; the bench is
            # loopback-only, so a per-run random key and local hosts are enough.
            SECRET_KEY=os.environ.get("SECRET_KEY") or _bench_key(),
            ALLOWED_HOSTS=os.environ.get("ALLOWED_HOSTS") or "127.0.0.1,localhost",
            SECURE_SSL_REDIRECT=os.environ.get("SECURE_SSL_REDIRECT", "false"),
        )
        if self.embedded_redis_port:
            env["SLCT_EMBEDDED_REDIS_PORT"] = str(self.embedded_redis_port)
        env.update(self.extra)
        return env

    def apply(self) -> None:
        """Point this process (before django.setup()) at the bench's database and queue."""
        for k, v in self.environ().items():
            if os.environ.get(k) != v:
                os.environ[k] = v


_KEY = secrets.token_urlsafe(50)


def _bench_key() -> str:
    return _KEY


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- database ---------------------------------------------------------------------------------

def sqlite_path() -> Path:
    return DATA / "bench.sqlite3"


def fresh_database(env: BenchEnv) -> None:
    """A new, empty bench database, then `manage.py migrate` on it."""
    DATA.mkdir(parents=True, exist_ok=True)
    if env.db == "sqlite":
        import dj_database_url

        path = Path(dj_database_url.parse(env.database_url)["NAME"])  # as the settings read it
        if "bench" not in path.name:
            raise SystemExit(f"refusing to delete {path}: the bench database's file name must contain 'bench'")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    else:
        import psycopg

        parts = urlsplit(env.database_url)
        name = parts.path.lstrip("/")
        if not name or not name.replace("_", "").isalnum() or "bench" not in name:
            raise SystemExit(f"refusing to drop database {name!r}: the bench's database name must be "
                             f"[A-Za-z0-9_]+ and contain 'bench'")
        admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    t = time.monotonic()
    subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env.environ(), check=True,
    )
    log(f"migrated the bench database in {time.monotonic() - t:.1f}s")


# -- redis ------------------------------------------------------------------------------------

def _ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def ensure_redis(env: BenchEnv) -> None:
    if env.embedded_redis_port:
        if not _ping(env.redis_url):
            subprocess.run([PYTHON, "-m", "slct_project.embedded_redis"], cwd=ROOT, env=env.environ(), check=True,
                           stdout=subprocess.DEVNULL)
            env.started_redis = True
            log(f"started an embedded redis-server at {env.redis_url}")
    if not _ping(env.redis_url):
        raise SystemExit(f"no Redis answers at {env.redis_url}")


def stop_redis(env: BenchEnv) -> None:
    if env.started_redis:
        subprocess.run([PYTHON, "-m", "slct_project.embedded_redis", "stop"], cwd=ROOT, env=env.environ(),
                       check=False, stdout=subprocess.DEVNULL)


def drop_queue_keys(env: BenchEnv) -> None:
    """Delete this bench's queue, registries and jobs -- and only those (other people share Redis)."""
    import redis

    conn = redis.Redis.from_url(env.redis_url)
    keys = list(conn.scan_iter(match=f"*{env.queue}*", count=1000))
    # job hashes carry no queue name: delete the ones our registries/queue point at
    job_ids: set[bytes] = set()
    for key in keys:
        kind = conn.type(key)
        if kind == b"list":
            job_ids.update(conn.lrange(key, 0, -1))
        elif kind == b"zset":
            job_ids.update(conn.zrange(key, 0, -1))
    keep = {f"rq:workers:{env.queue}".encode()}
    for key in keys:
        if key not in keep:
            conn.delete(key)
    for jid in job_ids:
        jid = jid.decode().split(":", 1)[0] if b":" in jid else jid.decode()
        conn.delete(f"rq:job:{jid}", f"rq:results:{jid}")


# -- workers ----------------------------------------------------------------------------------

class WorkerPool:
    """Real `manage.py rqworker` processes on the bench database (the approach of tests/conftest.py)."""

    def __init__(self, env: BenchEnv, logdir: Path, worker_class: str | None = None) -> None:
        self.env = env
        self.logdir = logdir
        self.worker_class = WORKER_CLASSES.get(worker_class or env.worker_class, worker_class or env.worker_class)
        self.procs: list[subprocess.Popen] = []
        self.names: list[str] = []

    def start(self, n: int, extra_env: dict[str, str] | None = None) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            i = len(self.procs)
            name = f"bench-{os.getpid()}-{i}-{time.time_ns()}"
            args = [PYTHON, str(ROOT / "manage.py"), "rqworker", self.env.queue, "--worker-class", self.worker_class,
                    "--name", name, "--with-scheduler"]
            out = open(self.logdir / f"worker-{i}.log", "ab")
            proc = subprocess.Popen(args, cwd=ROOT, env={**self.env.environ(), **(extra_env or {})}, stdout=out,
                                    stderr=out, start_new_session=True)
            self.procs.append(proc)
            self.names.append(name)
        self.wait_registered()

    def wait_registered(self, timeout: float = 60.0) -> None:
        import django_rq
        from rq import Worker

        conn = django_rq.get_connection(self.env.queue)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = {w.name for w in Worker.all(connection=conn)}
            if all(n in names for n in self.names):
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise SystemExit(f"a worker exited at start (code {dead[0].returncode}); see {self.logdir}")
            time.sleep(0.1)
        raise SystemExit(f"workers did not register within {timeout}s; see {self.logdir}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)  # warm shutdown: the current job finishes
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        self.procs, self.names = [], []

    def logs(self) -> str:
        return "\n".join(f.read_text(errors="replace")[-3000:] for f in sorted(self.logdir.glob("worker-*.log")))


def queue_idle(env: BenchEnv) -> bool:
    import django_rq

    q = django_rq.get_queue(env.queue)
    return q.count == 0 and q.started_job_registry.get_job_count(cleanup=False) == 0


def quiesce(env: BenchEnv, timeout: float = 60.0) -> None:
    """Stop whatever the previous scenario left running: every running process is cancelled (a
    job for it then does nothing), the queue drains, then this bench's RQ keys are dropped."""
    from slct_workflows.runtime.db import with_db_retries
    from slct_workflows.models import ProcessInstance

    with_db_retries(lambda: ProcessInstance.objects.filter(status="running").update(status="cancelled"))
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        if queue_idle(env):
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 0.3:
                break
        else:
            idle_since = None
        time.sleep(0.05)
    import django_rq
    from rq.registry import ScheduledJobRegistry

    q = django_rq.get_queue(env.queue)
    reg = ScheduledJobRegistry(queue=q)
    for jid in reg.get_job_ids():
        reg.remove(jid, delete_job=True)
