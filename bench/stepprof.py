"""`--profile`, part 1: the cost of one step, in this process, without concurrency.

One ping-pong pair is driven exactly as one worker would drive it -- each wake-up is a call of
the real job function `slct_workflows.jobs.wake(goroutine_id)`, in the order the wake-ups were
dispatched -- with the real RQ dispatcher (so enqueueing to Redis is in the cost; the bench drops
the jobs afterwards, no worker is running). Measured per step: wall time, this process's CPU time,
time inside SQL calls and their count by kind, time enqueueing to Redis; and pyinstrument's tree.
The same for the ceiling transaction (1a) for comparison.
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from django.db import connection

from .profiling import CommitTimer, _SqlTimer, self_time_by_category


class _TeeDispatcher:
    """The real dispatcher, plus a local list of the wake-ups so this process can run them."""

    def __init__(self, real) -> None:
        self.real, self.pending, self.redis_s = real, deque(), 0.0

    def _timed(self, func, *args):
        t = time.perf_counter()
        try:
            func(*args)
        finally:
            self.redis_s += time.perf_counter() - t

    def wake(self, ids, at_front=False):
        self._timed(lambda: self.real.wake(ids, at_front=at_front))
        self.pending.extend(ids)

    def wake_at(self, gid, when):
        self._timed(self.real.wake_at, gid, when)

    def outbox(self, ids):
        self._timed(self.real.outbox, ids)

    def outbox_at(self, oid, when):
        self._timed(self.real.outbox_at, oid, when)

    def timers_at(self, when):
        self._timed(self.real.timers_at, when)


def step_profile(steps: int, outdir: Path, seconds: float = 10.0) -> dict:
    from pyinstrument import Profiler

    from slct_workflows import services

    from slct_workflows.runtime import dispatch

    from slct_workflows.workers import jobs

    from . import naive

    tee = _TeeDispatcher(dispatch.get())
    previous = dispatch.use(tee)
    sql = _SqlTimer()
    try:
        services.start_process("pingpong", {"role": "pong", "inbox": "prof-a", "outbox": "prof-b", "rounds": 10**9})
        services.start_process("pingpong", {"role": "ping", "inbox": "prof-b", "outbox": "prof-a", "rounds": 10**9})
        for _ in range(20):  # warm up: caches, prepared connection, first channel creation
            jobs.wake(tee.pending.popleft())
        # pass 1, measured (no profiler: its sampling would inflate the CPU time)
        tee.redis_s = 0.0
        done = jobs_run = 0
        t, c = time.perf_counter(), time.process_time()
        with connection.execute_wrapper(sql), CommitTimer(connection) as commits:
            end = time.perf_counter() + seconds
            while done < steps and tee.pending and time.perf_counter() < end:
                done += jobs.wake(tee.pending.popleft())
                jobs_run += 1
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        redis_s = tee.redis_s
        # pass 2, sampled by pyinstrument, for the tree
        profiler = Profiler(interval=0.001)
        profiler.start()
        end = time.perf_counter() + seconds / 2
        while tee.pending and time.perf_counter() < end:
            jobs.wake(tee.pending.popleft())
        profiler.stop()
    finally:
        dispatch.use(previous)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "step.txt").write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    (outdir / "step.html").write_text(profiler.output_html())

    # the ceiling transaction, same measurements
    pid = naive.make_rows(1, f"prof-{time.time_ns()}")[0]
    raw_sql = _SqlTimer()
    n_raw = 0
    t, c = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(raw_sql), CommitTimer(connection) as raw_commits:
        end = time.perf_counter() + seconds / 2
        while n_raw < 1000 and time.perf_counter() < end:
            naive.step_shaped_transaction(pid)
            n_raw += 1
    raw_wall, raw_cpu = time.perf_counter() - t, time.process_time() - c

    per = lambda x: round(1000 * x / max(done, 1), 3)  # noqa: E731
    return {
        "steps": done,
        "jobs": jobs_run,
        "wall_ms_per_step": per(wall),
        "cpu_ms_per_step": per(cpu),
        "sql_ms_per_step": per(sql.seconds),
        "commit_ms_per_step": per(commits.seconds),
        "commits_per_step": round(commits.count / max(done, 1), 2),
        "redis_ms_per_step": per(redis_s),
        "queries_per_step": round(sql.queries / max(done, 1), 2),
        "queries_per_step_by_verb": {k: round(v / max(done, 1), 2) for k, v in sql.by_verb.most_common()},
        "sql_ms_per_step_by_verb": {k: per(v) for k, v in sql.seconds_by_verb.most_common()},
        "steps_per_s_one_connection": round(done / wall, 1),
        "python_ms_per_step": per(wall - sql.seconds - commits.seconds - redis_s),
        "raw": {
            "wall_ms_per_tx": round(1000 * raw_wall / n_raw, 3),
            "cpu_ms_per_tx": round(1000 * raw_cpu / n_raw, 3),
            "sql_ms_per_tx": round(1000 * raw_sql.seconds / n_raw, 3),
            "commit_ms_per_tx": round(1000 * raw_commits.seconds / n_raw, 3),
            "queries_per_tx": round(raw_sql.queries / n_raw, 2),
        },
        "time_by_category": self_time_by_category(profiler.last_session),
        "tree": str(outdir / "step.txt"),
    }


def enqueue_cost(n: int = 300) -> dict:
    """What one wake-up's enqueue costs, the way the dispatcher does it (django_rq.get_queue() per
    call: a new Redis client and TCP connection each time) and on a kept Queue. The jobs are
    enqueued for a goroutine id that does not exist and dropped by the bench afterwards."""
    import django_rq
    from rq import Queue

    from slct_workflows import conf

    from slct_workflows.runtime import dispatch

    real = dispatch.RQDispatcher()
    out = {}
    t = time.perf_counter()
    for _ in range(n):
        real.wake([0])
    out["dispatcher_ms"] = round(1000 * (time.perf_counter() - t) / n, 3)
    q = django_rq.get_queue(conf.queue_name())
    t = time.perf_counter()
    for _ in range(n):
        q.enqueue_many([Queue.prepare_data("slct_workflows.jobs.wake", args=(0,), result_ttl=0)])
    out["kept_queue_ms"] = round(1000 * (time.perf_counter() - t) / n, 3)
    conn = q.connection
    t = time.perf_counter()
    for _ in range(n):
        conn.lpush("bench:noop", "x")
    out["one_redis_command_ms"] = round(1000 * (time.perf_counter() - t) / n, 3)
    conn.delete("bench:noop")
    return out
