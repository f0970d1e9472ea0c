"""What RQ's own bookkeeping of one job costs a worker: no-op jobs (`time.time`, `result_ttl=0`,
as the runtime's wake jobs) run by a worker in this process, in burst mode; per job, the CPU,
the wall time and the Redis round trips (writes to the socket, a pipeline being one).

    DEBUG=1 .venv/bin/python -m bench.rq_job_cost                         # the project's worker
    DEBUG=1 .venv/bin/python -m bench.rq_job_cost rq.worker.SimpleWorker  # RQ's own
    # instructions per job, whatever else the machine does: (at --jobs 300 - at --jobs 100) / 200
    DEBUG=1 valgrind --tool=callgrind .venv/bin/python -m bench.rq_job_cost --jobs N

Redis: REDIS_URL (default redis://127.0.0.1:6379/1), queue `bench-rq-job-cost`, emptied before
and after. No database is touched (the timer loop is off).
"""
from __future__ import annotations

import argparse
import importlib
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("worker_class", nargs="?", default="slct_workflows.worker.Worker")
    ap.add_argument("--jobs", type=int, default=1000)
    args = ap.parse_args()
    for name in ("SLCT_TIMER_POLL_SECONDS", "SLCT_SWEEP_INTERVAL", "SLCT_LOG_SUMMARY_SECONDS"):
        os.environ[name] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slct_project.settings")
    import django

    django.setup()
    import redis
    from redis.connection import Connection
    from rq import Queue

    from slct_workflows.workers import worker

    worker.persistent_db_connections = lambda: None  # no database here
    module, _, name = args.worker_class.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    conn = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"))
    queue = Queue("bench-rq-job-cost", connection=conn)
    queue.empty()
    for _ in range(args.jobs):
        queue.enqueue("time.time", result_ttl=0)
    sent = [0]
    original = Connection.send_packed_command

    def counted(self, command, check_health=True):
        sent[0] += 1
        return original(self, command, check_health)

    Connection.send_packed_command = counted
    w = cls([queue], connection=conn)
    cpu, wall = time.process_time(), time.perf_counter()
    w.work(burst=True, logging_level="WARNING")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    Connection.send_packed_command = original
    left = queue.count
    queue.empty()
    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "Python"
    print(f"{args.worker_class}: {args.jobs} jobs ({left} left): {cpu / args.jobs * 1000:.2f} ms CPU, "
          f"{wall / args.jobs * 1000:.2f} ms wall, {sent[0] / args.jobs:.1f} Redis round trips per job "
          f"(redis-py {redis.__version__}, {parser} parser)")


if __name__ == "__main__":
    main()
