"""Steps driven in this process, on one connection, as a worker drives them (`jobs.wake`, the
group commit included), with a recording dispatcher instead of Redis: per step, wall time, CPU
and round trips (statements sent), without the queue or other workers in the figure.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slct_bench SLCT_WORKFLOW_MODULES=bench.workflows \\
      DEBUG=1 .venv/bin/python -m bench.alone pingpong --steps 3000
    ... .venv/bin/python -m bench.alone timers --n 300     # woken timer steps that finish their process

With `--rq` the steps are run instead by the project's RQ worker, in this process, in burst mode,
on a queue of the Redis at REDIS_URL (the timer loop off): each job's bookkeeping in Redis is in
the figures (the processes run a bounded number of rounds, so the burst ends):

    REDIS_URL=redis://127.0.0.1:6379/1 ... .venv/bin/python -m bench.alone pingpong --rq --steps 2000

Run it on the bench's database after `python -m bench --db postgres` has created it. DEBUG=1 only
lets the settings load without a SECRET_KEY; the query log is switched off here.
"""
from __future__ import annotations

import argparse
import gc
import os
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=["pingpong", "timers"])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n", type=int, default=300, help="timers")
    ap.add_argument("--show", type=int, default=0, help="print the SQL of the first N round trips measured")
    ap.add_argument("--rq", action="store_true", help="steps run by the project's RQ worker (burst mode)")
    args = ap.parse_args()
    if args.rq:
        # No timer loop; no summary line (its reset would lose the steps counted).
        for name in ("SLCT_TIMER_POLL_SECONDS", "SLCT_SWEEP_INTERVAL", "SLCT_LOG_SUMMARY_SECONDS"):
            os.environ[name] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slct_project.settings")
    os.environ.setdefault("SLCT_WORKER_CONN_MAX_AGE", "600")
    os.environ.setdefault("CONN_MAX_AGE", "600")  # a worker keeps its connection across jobs
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from slct_workflows import conf, services
    from slct_workflows.runtime import dispatch, timers
    from slct_workflows.testing import NullDispatcher
    from slct_workflows.workers import jobs

    class Recorder(NullDispatcher):
        """Keeps the wake lists (the rest it drops): drain() runs them, in order."""

        def __init__(self) -> None:
            self.queue: list[list[int]] = []

        def wake(self, goroutine_ids, at_front=False):
            self.queue.append(list(goroutine_ids))

    settings.DEBUG = False
    rec = Recorder()
    run = uuid.uuid4().hex[:6]
    if args.rq:
        from slct_workflows.workers import worker

        queue = f"slct-alone-{run}"
        settings.RQ_QUEUES[queue] = dict(settings.RQ_QUEUES[settings.SLCT_QUEUE])
        settings.SLCT_QUEUE = queue
        conf.reset()
        worker.persistent_db_connections()  # here, not at the worker's start: one backend throughout
        worker.persistent_db_connections = lambda: None
    else:
        dispatch.use(rec)
    statements = [0]

    def note(query, params) -> None:
        statements[0] += 1
        if statements[0] <= args.show:
            print(f"--- round trip {statements[0]}: {query} {params!r}")

    def backend_cpu() -> float:
        """The connection's PostgreSQL backend CPU seconds (a local server: /proc), or nan."""
        if connection.vendor != "postgresql":
            return float("nan")
        with connection.cursor() as c:
            c.execute("SELECT pg_backend_pid()")
            pid = c.fetchone()[0]
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def drain(limit: int) -> int:
        if args.rq:
            return work()
        steps = 0
        while rec.queue and steps < limit:
            steps += jobs.wake(*rec.queue.pop(0))
        return steps

    def work() -> int:
        """The queue's jobs, run by the project's worker until the queue is empty; the steps it ran."""
        import django_rq

        from slct_workflows.workers.worker import Worker, activity

        before = activity.steps
        Worker([django_rq.get_queue(conf.queue_name())], connection=django_rq.get_connection(conf.queue_name()),
               name=f"alone-{run}-{uuid.uuid4().hex[:6]}").work(burst=True, logging_level="WARNING")
        return activity.steps - before

    def pairs(tag: str, rounds: int) -> None:
        with transaction.atomic():
            for i in range(args.pairs):
                a, b = f"alone-{run}-{tag}{i}-a", f"alone-{run}-{tag}{i}-b"
                services.start_process("pingpong", {"role": "pong", "inbox": a, "outbox": b, "rounds": rounds})
                services.start_process("pingpong", {"role": "ping", "inbox": b, "outbox": a, "rounds": rounds})

    if args.scenario == "pingpong":
        if args.rq:
            pairs("warm", 20)
            drain(0)  # warm: channels made, statements compiled
            # The burst ends when the processes do: rounds enough for the steps.
            pairs("", args.steps // (2 * args.pairs) + 1)
        else:
            pairs("", 10**9)
            drain(300)  # warm
        limit = args.steps
    else:
        # Due after every one is armed (their start steps below), however slow the machine.
        due = timezone.now() + timedelta(seconds=2 + args.n * 0.02)
        with transaction.atomic():
            for i in range(args.n):
                services.start_process("bench-timer", {"due": due.isoformat(), "run": run, "i": i})
        drain(10**9)  # every one blocked on its timer
        while timezone.now() < due:
            time.sleep(0.01)
        t = time.perf_counter()
        fired, _ = timers.fire_due()
        print(f"fired {fired} timers in bulk in {(time.perf_counter() - t) * 1000:.1f} ms")
        limit = 10**9
    # Objects made so far (Django, the warm-up) out of the collector's way: a full collection
    # landing in one measured run and not another moved the per-step figures by ~8%.
    gc.collect()
    gc.freeze()
    db_cpu = backend_cpu()
    with _counting_round_trips(connection, note):
        cpu, wall = time.process_time(), time.perf_counter()
        steps = drain(limit)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    db_cpu = backend_cpu() - db_cpu
    print(f"{args.scenario}: {steps} steps, {wall / steps * 1000:.3f} ms/step wall, {cpu / steps * 1000:.3f} ms/step "
          f"CPU, {db_cpu / steps * 1000:.3f} ms/step database CPU, {statements[0] / steps:.2f} round trips/step "
          f"(SLCT_GROUP_STEPS={conf.group_steps()})")


@contextmanager
def _counting_round_trips(connection, note):
    """Each round trip noted where it is sent: at psycopg's cursor class on PostgreSQL, not with an
    execute wrapper (a wrapper would send the step's fixed SQL through Django's cursor,
    fixed_sql._direct_cursor, and measure that path instead of the workers'). SQLite has only
    Django's cursor: a wrapper there."""
    if connection.vendor != "postgresql":
        def wrapper(execute, sql, params, many, context):
            note(sql, params)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(wrapper):
            yield
        return
    import psycopg

    original = psycopg.ClientCursor.execute

    def execute(cursor, query, params=None, *args, **kwargs):
        note(query, params)
        return original(cursor, query, params, *args, **kwargs)

    psycopg.ClientCursor.execute = execute
    try:
        yield
    finally:
        psycopg.ClientCursor.execute = original


if __name__ == "__main__":
    main()
