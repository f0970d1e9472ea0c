"""`python -m bench`: ceilings, our runtime, and the DBOS peer, in one run, on one database.

    python -m bench --db postgres            # PostgreSQL slct_bench + the machine's Redis (db 1)
    python -m bench --db sqlite              # SQLite (WAL) + an embedded redis-server on port 6395
    python -m bench --workers 2 --worker-class slct --duration 10 --json out.json --profile
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .infra import DATA, ROOT, WORKER_CLASSES, BenchEnv, WorkerPool, drop_queue_keys, ensure_redis, fresh_database, \
    log, sqlite_path, stop_redis

SCENARIOS = ["ceilings", "pingpong", "fanin", "timers", "peer"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--database-url", help="default: postgres://postgres@127.0.0.1:5432/slct_bench, or "
                    "sqlite:///.slct/bench/bench.sqlite3 (the database is dropped and re-created)")
    ap.add_argument("--redis-url", help="default: redis://127.0.0.1:6379/1 with --db postgres; with --db sqlite an "
                    "embedded redis-server on --redis-port")
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("SLCT_EMBEDDED_REDIS_PORT", "6395")))
    ap.add_argument("--queue", default="slct-bench", help="RQ queue name of the bench's workers")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-class", default="slct",
                    help=f"{', '.join(WORKER_CLASSES)} or a dotted path (default: slct = slct_workflows.worker.Worker, a SimpleWorker with the timer loop)")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds measured per scenario (default 6)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before each measuring window (default 2)")
    ap.add_argument("--pairs", type=int, default=50, help="ping-pong pairs (default 50)")
    ap.add_argument("--latency-pairs", type=int, default=1,
                    help="pairs of the unloaded ping-pong/naive runs that measure wake-up latency without "
                    "queueing (default 1; 0 skips them)")
    ap.add_argument("--chains", type=int, help="naive pipeline chains (default: --pairs, one per runnable goroutine)")
    ap.add_argument("--senders", type=int, default=100, help="fan-in senders (default 100)")
    ap.add_argument("--capacity", type=int, default=10, help="fan-in channel capacity (default 10)")
    ap.add_argument("--timers", type=int, default=1000, help="processes waiting on one deadline (default 1000)")
    ap.add_argument("--timer-lead", type=float, help="seconds from starting the timer processes to their deadline "
                    "(default: twice the arming time at the naive pipeline's step rate, at most 60 s)")
    ap.add_argument("--peer", choices=["dbos", "none"], default="dbos")
    ap.add_argument("--dbos-poll", type=float, default=0.01,
                    help="DBOS notification_listener_polling_interval_sec (its recv wake-up on SQLite; "
                    "PostgreSQL uses LISTEN/NOTIFY). Default 0.01")
    ap.add_argument("--debug", action="store_true", help="run everything with Django DEBUG on (default: off, "
                    "as in production)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--profile", action="store_true",
                    help="after the figures, one more ping-pong pass on pyinstrument-profiled workers")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    args.chains = args.chains or args.pairs
    args.only = set(SCENARIOS) if not args.only else set(args.only.split(","))
    unknown = args.only - set(SCENARIOS)
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}")
    return args


def make_env(args: argparse.Namespace) -> BenchEnv:
    if args.db == "postgres":
        url = args.database_url or "postgres://postgres@127.0.0.1:5432/slct_bench"
        redis_url = args.redis_url or "redis://127.0.0.1:6379/1"
        port = None
    else:
        url = args.database_url or f"sqlite:///{sqlite_path()}"
        port = None if args.redis_url else args.redis_port
        redis_url = args.redis_url or f"redis://127.0.0.1:{port}/0"
    if args.db == "sqlite" and not url.startswith("sqlite"):
        raise SystemExit("--db sqlite needs a sqlite:/// --database-url")
    return BenchEnv(db=args.db, database_url=url, redis_url=redis_url, queue=args.queue, workers=args.workers,
                    worker_class=args.worker_class, embedded_redis_port=port, debug=args.debug)


def code_version() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "slct_workflows", "slct_project"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted engine changes" if dirty else "")
    except OSError:
        return "?"


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        model = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        info["cpu"] = model[0] if model else ""
        mem = [line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")]
        info["mem_gib"] = round(int(mem[0]) / 1024 / 1024, 1)
        info["load_at_start"] = os.getloadavg()
    except OSError:
        pass
    info["python_loop_ms_at_start"] = python_loop_ms()
    return info


def python_loop_ms() -> float:
    """The machine's speed for this interpreter: the best of 5 timings of one pure-Python loop
    (1 million additions). Absolute figures (the timers' 1 s goal, latencies) move with it from
    day to day on a shared machine; a run's ratios much less."""
    best = float("inf")
    for _ in range(5):
        t, total = time.perf_counter(), 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 1)


def _check_extras(args: argparse.Namespace) -> None:
    import importlib.util

    missing = []
    if args.peer == "dbos" and "peer" in args.only and importlib.util.find_spec("dbos") is None:
        missing.append("dbos (or pass --peer none)")
    if args.profile and importlib.util.find_spec("pyinstrument") is None:
        missing.append("pyinstrument (for --profile)")
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)}. Install: {sys.executable} -m pip install -r "
                         f"{ROOT / 'bench' / 'requirements.txt'}")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    _check_extras(args)
    env = make_env(args)
    t_begin = time.monotonic()
    results: dict = {"args": {k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
                              for k, v in vars(args).items()},
                     "machine": machine(), "db": env.db, "code": code_version()}
    logdir = DATA / "logs"
    ensure_redis(env)
    env.apply()
    try:
        fresh_database(env)
        import django

        django.setup()
        from django.db import connection

        results["db_version"] = _db_version(connection)
        drop_queue_keys(env)
        results.update(run_all(args, env, logdir))
        drop_queue_keys(env)
    finally:
        stop_redis(env)
    results["total_s"] = round(time.monotonic() - t_begin, 1)
    results["machine"]["load_at_end"] = os.getloadavg()
    results["machine"]["python_loop_ms_at_end"] = python_loop_ms()
    from .report import render

    table = render(results)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
        log(f"wrote {args.json}")


def _db_version(connection) -> str:
    with connection.cursor() as c:
        if connection.vendor == "sqlite":
            c.execute("select sqlite_version()")
            return "SQLite " + c.fetchone()[0]
        c.execute("show server_version")
        return "PostgreSQL " + c.fetchone()[0]


def run_all(args, env: BenchEnv, logdir: Path) -> dict:
    from . import scenarios

    out: dict = {}
    if "ceilings" in args.only:
        half = max(2.0, args.duration * 0.4)
        log(f"1a: ORM step-shaped transactions, 1 connection, {half:.0f}s")
        out["raw_1"] = scenarios.raw_transactions(env, half, 1)
        if args.workers > 1:
            log(f"1a: ORM step-shaped transactions, {args.workers} connections, {half:.0f}s")
            out["raw_n"] = scenarios.raw_transactions(env, half, args.workers)
    short = max(3.0, args.duration * 0.5)
    runtime = {"ceilings", "pingpong", "fanin", "timers"} & args.only
    if runtime or args.profile:
        pool = WorkerPool(env, logdir)
        log(f"starting {args.workers} {pool.worker_class} worker(s) on queue {env.queue}")
        pool.start(args.workers)
        try:
            if "ceilings" in args.only:
                log(f"1b: naive pipeline, {args.chains} chains, {args.duration:.0f}s")
                out["naive"] = scenarios.naive_pipeline(env, args.chains, args.warmup, args.duration)
                if args.latency_pairs:
                    log(f"1b: naive pipeline, {args.latency_pairs} chain(s) (latency without queueing), {short:.0f}s")
                    out["naive_1"] = scenarios.naive_pipeline(env, args.latency_pairs, 1.0, short)
            if "pingpong" in args.only:
                log(f"2a: ping-pong, {args.pairs} pairs, {args.duration:.0f}s")
                out["pingpong"] = scenarios.pingpong(env, args.pairs, args.warmup, args.duration)
                if args.latency_pairs:
                    log(f"2a: ping-pong, {args.latency_pairs} pair(s) (latency without queueing), {short:.0f}s")
                    out["pingpong_1"] = scenarios.pingpong(env, args.latency_pairs, 1.0, short)
            if "fanin" in args.only:
                log(f"2b: fan-in, {args.senders} senders -> 1 channel of capacity {args.capacity}, {args.duration:.0f}s")
                out["fanin"] = scenarios.fanin(env, args.senders, args.capacity, args.warmup, args.duration)
            if "timers" in args.only:
                # time to start them (one transaction) and arm them all (a step each, on the
                # workers; arming is one step per job, like the naive pipeline's jobs). Twice
                # the time at the naive rate measured earlier in the run: this machine's speed
                # can halve within a minute, and a run that arms late measures nothing.
                rate = (out.get("naive") or out.get("pingpong") or {}).get("steps_per_s") or 100.0
                lead = args.timer_lead or min(60.0, 3.0 + 4.4 * args.timers / max(rate, 25.0))
                log(f"2c: {args.timers} timers due together, {lead:.1f}s ahead")
                out["timers"] = scenarios.timers(env, args.timers, lead)
        except BaseException:
            log("worker logs:\n" + pool.logs())
            raise
        finally:
            pool.stop()
        if args.profile:
            from . import stepprof
            from .infra import quiesce

            log("profile: one ping-pong pair stepped in this process (no workers running)")
            out["step_profile"] = stepprof.step_profile(2000, DATA / "profile-step", seconds=args.duration)
            out["enqueue_cost"] = stepprof.enqueue_cost()
            drop_queue_keys(env)  # the wake-ups it enqueued: no worker is there to run them
            quiesce(env)
            out["profile"] = profile_pass(args, env, logdir)
    if "peer" in args.only and args.peer == "dbos":
        from . import dbos_peer

        phases = [(args.pairs, args.warmup, args.duration)]
        if args.latency_pairs:
            phases.append((args.latency_pairs, 1.0, short))
        log(f"3: DBOS ping-pong in {args.workers} DBOS process(es): "
            + ", ".join(f"{p} pair(s) for {d:.0f}s" for p, _, d in phases))
        try:
            peer = dbos_peer.run_peer(env.database_url, phases=phases, procs=args.workers, poll=args.dbos_poll,
                                      env=env.environ(), logdir=logdir)
            out["dbos"] = peer[0]
            if len(peer) > 1:
                out["dbos_1"] = peer[1]
        except Exception as exc:  # reported in the table: the figures of the others still stand
            out["dbos"] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"DBOS peer failed: {exc}")
    return out


def profile_pass(args, env: BenchEnv, logdir: Path) -> dict:
    import shutil

    from . import profiling, scenarios

    pdir = DATA / "profile"
    shutil.rmtree(pdir, ignore_errors=True)
    pool = WorkerPool(env, logdir, worker_class="bench.profiling.ProfiledSimpleWorker")
    log(f"profile: ping-pong on {args.workers} pyinstrument-profiled SimpleWorker(s), {args.duration:.0f}s")
    pool.start(args.workers, extra_env={"BENCH_PROFILE_DIR": str(pdir)})
    t = time.monotonic()
    try:
        from django.utils import timezone

        from slct_workflows.models import Event

        t0 = timezone.now()
        pp = scenarios.pingpong(env, args.pairs, 0.0, args.duration)
    finally:
        pool.stop()
    steps = Event.objects.filter(kind="step", finished_at__gte=t0, process__definition="pingpong").count()
    summary = profiling.summarize(pdir, steps)
    summary["steps_per_s_profiled"] = pp["steps_per_s"]
    summary["files"] = str(pdir)
    log(f"profile written to {pdir} ({time.monotonic() - t:.0f}s)")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
