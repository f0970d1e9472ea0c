"""`--profile`: where a worker's time goes during ping-pong.

ProfiledSimpleWorker is rq's SimpleWorker with pyinstrument sampling the whole work loop (so the
time spent waiting for jobs in Redis shows beside the time in jobs), plus exact counters for the
time spent inside SQL calls (a Django execute_wrapper) and in execute_job. At shutdown it writes
worker-<pid>.txt (pyinstrument's tree) and worker-<pid>.json (counters) to $BENCH_PROFILE_DIR.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from slct_workflows.workers.worker import Worker as SimpleWorker


class _SqlTimer:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.queries = 0
        self.by_verb: Counter = Counter()
        self.seconds_by_verb: Counter = Counter()

    def __call__(self, execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            dt = time.perf_counter() - t
            verb = sql.split(None, 1)[0].upper() if sql else "?"
            if verb == "SELECT" and " FOR UPDATE" in sql:
                verb = "SELECT FOR UPDATE"
            self.seconds += dt
            self.queries += 1
            self.by_verb[verb] += 1
            self.seconds_by_verb[verb] += dt


class CommitTimer:
    """Times COMMITs (not seen by execute wrappers: Django commits on the DB-API connection)."""

    def __init__(self, connection) -> None:
        self.connection, self.seconds, self.count = connection, 0.0, 0

    def __enter__(self):
        conn = self.connection
        self._orig = conn._commit

        def timed():
            t = time.perf_counter()
            try:
                return self._orig()
            finally:
                self.seconds += time.perf_counter() - t
                self.count += 1

        conn._commit = timed
        return self

    def __exit__(self, *exc):
        del self.connection._commit  # back to the class's method
        return False


class ProfiledSimpleWorker(SimpleWorker):
    def work(self, *args, **kwargs):
        from pyinstrument import Profiler

        self._sql = _SqlTimer()
        self._commit_s, self._commits = 0.0, 0
        self._wake_jobs, self._wake_steps, self._idle_wakes = 0, 0, 0
        self._count_wakes()
        self._jobs = 0
        self._job_seconds = 0.0
        profiler = Profiler(interval=0.0005)
        started = time.perf_counter()
        profiler.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            profiler.stop()
            self._write(profiler, time.perf_counter() - started)

    def _count_wakes(self) -> None:
        """Count wake jobs and the ones that found nothing to run (duplicates, stale wake-ups)."""
        from slct_workflows.workers import jobs

        original = jobs.wake

        def wake(*goroutine_ids):
            steps = original(*goroutine_ids)
            self._wake_jobs += 1
            self._wake_steps += steps
            self._idle_wakes += steps == 0
            return steps

        jobs.wake = wake  # RQ resolves "slct_workflows.jobs.wake" by name at each job

    def execute_job(self, job, queue):
        from django.db import connection

        t = time.perf_counter()
        commits = CommitTimer(connection)
        try:
            with connection.execute_wrapper(self._sql), commits:
                return super().execute_job(job, queue)
        finally:
            self._commit_s += commits.seconds
            self._commits += commits.count
            self._jobs += 1
            self._job_seconds += time.perf_counter() - t

    def _write(self, profiler, wall: float) -> None:
        out = Path(os.environ.get("BENCH_PROFILE_DIR", "."))
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"worker-{os.getpid()}"
        stem.with_suffix(".txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False, timeline=False)
        )
        stem.with_suffix(".json").write_text(json.dumps({
            "wall_s": wall,
            "jobs": self._jobs,
            "job_s": self._job_seconds,
            "sql_s": self._sql.seconds,
            "sql_queries": self._sql.queries,
            "commit_s": self._commit_s,
            "wake_jobs": self._wake_jobs,
            "wake_steps": self._wake_steps,
            "idle_wakes": self._idle_wakes,
            "commits": self._commits,
            "sql_by_verb": dict(self._sql.by_verb),
            "sql_s_by_verb": dict(self._sql.seconds_by_verb),
            "time_by_category": self_time_by_category(profiler.last_session),
        }, indent=1))


def summarize(profile_dir: Path, steps: int) -> dict:
    """Totals over the workers' counter files; per step where it makes sense."""
    files = sorted(profile_dir.glob("worker-*.json"))
    tot: dict = {"wall_s": 0.0, "jobs": 0, "job_s": 0.0, "sql_s": 0.0, "sql_queries": 0, "commit_s": 0.0,
                 "commits": 0, "wake_jobs": 0, "wake_steps": 0, "idle_wakes": 0}
    by_verb: Counter = Counter()
    s_by_verb: Counter = Counter()
    cats: Counter = Counter()
    for f in files:
        d = json.loads(f.read_text())
        for k, v in (d.get("time_by_category") or {}).items():
            cats[k] += v * d["wall_s"]
        for k in tot:
            tot[k] += d[k]
        by_verb.update(d["sql_by_verb"])
        s_by_verb.update(d["sql_s_by_verb"])
    steps = max(steps, 1)
    return {
        "workers": len(files),
        "steps": steps,
        "jobs": tot["jobs"],
        "steps_per_job": round(steps / max(tot["jobs"], 1), 2),
        "wake_jobs": tot["wake_jobs"],
        "wake_jobs_without_a_step": tot["idle_wakes"],
        "busy_share": round(tot["job_s"] / tot["wall_s"], 3) if tot["wall_s"] else None,
        "ms_per_step_in_jobs": round(1000 * tot["job_s"] / steps, 2),
        "sql_ms_per_step": round(1000 * tot["sql_s"] / steps, 2),
        "sql_share_of_job_time": round(tot["sql_s"] / tot["job_s"], 3) if tot["job_s"] else None,
        "commit_ms_per_step": round(1000 * tot["commit_s"] / steps, 2),
        "commits_per_step": round(tot["commits"] / steps, 2),
        "queries_per_step": round(tot["sql_queries"] / steps, 1),
        "queries_per_step_by_verb": {k: round(v / steps, 2) for k, v in by_verb.most_common()},
        "sql_ms_per_step_by_verb": {k: round(1000 * v / steps, 3) for k, v in s_by_verb.most_common()},
        "time_by_category": {k: round(v / (tot["wall_s"] or 1), 3) for k, v in cats.most_common()},
    }


CATEGORIES = [
    ("psycopg", "PostgreSQL driver + waiting for the server"),
    ("sqlite3", "SQLite"),
    ("/redis/", "Redis client + waiting (enqueue/dequeue)"),
    ("/rq/", "RQ (Python)"),
    ("django_rq", "RQ (Python)"),
    ("/django/db/models/", "Django ORM (Python: query building, model instances)"),
    ("/django/db/", "Django DB layer (Python: cursor wrappers, transactions)"),
    ("/django/", "Django other"),
    ("slct_workflows", "engine (Python)"),
    ("slct_project", "workflow methods (user code)"),
    ("json", "JSON"),
    ("pyinstrument", "profiler"),
    ("bench/", "bench harness"),
]


def _category(path: str | None) -> str | None:
    if not path or path.startswith("<"):
        return None
    for needle, name in CATEGORIES:
        if needle in path:
            return name
    return "other"


def self_time_by_category(session) -> dict[str, float]:
    """Where the sampled time was spent: each frame's self time goes to its file's category (a
    built-in's to its caller's), so 'waiting for the server' is the time inside the driver."""
    out: Counter = Counter()
    root = session.root_frame()
    if root is None:
        return {}
    stack = [(root, "other")]
    while stack:
        frame, inherited = stack.pop()
        cat = _category(frame.file_path) or inherited
        own = frame.time - sum(c.time for c in frame.children)
        if own > 0:
            out[cat] += own
        stack.extend((c, cat) for c in frame.children)
    total = sum(out.values()) or 1.0
    return {k: round(v / total, 3) for k, v in out.most_common()}
