"""The scenarios, run from the bench process against real workers (Django is set up by cli.py)."""
from __future__ import annotations

import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import connection
from django.utils import timezone

from . import measure, naive
from .infra import PYTHON, ROOT, BenchEnv, quiesce

BIG = 10**9  # ping-pong rounds: the bench stops the processes, not the rounds


def _run_id() -> str:
    return uuid.uuid4().hex[:8]


def _start_many(specs: list[tuple[str, dict]]) -> list[str]:
    """Start processes in one transaction (their wake-ups are enqueued when it commits): on
    SQLite, one-by-one starts would queue for the writer lock behind busy workers."""
    from django.db import transaction

    from slct_workflows import services

    with transaction.atomic():
        return [services.start_process(name, inp).process.id for name, inp in specs]


def _wait_started(ids: list[str], timeout: float = 15.0) -> None:
    """Until every process has run its first step (so the window measures the steady state)."""
    from slct_workflows.models import Event

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Event.objects.filter(process_id__in=ids, kind="step", method="Main_Start").count() >= len(ids):
            return
        time.sleep(0.1)


def _window(warmup: float, duration: float, ids: list[str] | None = None) -> tuple[datetime, datetime]:
    if ids:
        _wait_started(ids)
    time.sleep(warmup)
    t0 = timezone.now()
    time.sleep(duration)
    return t0, timezone.now()


# -- 1. ceilings ------------------------------------------------------------------------------

def raw_transactions(env: BenchEnv, seconds: float, connections: int) -> dict:
    """1a: step-shaped transactions back to back, on `connections` connections (processes)."""
    run = _run_id()
    pids = naive.make_rows(connections, f"raw-{run}")
    if connections == 1:
        connection.close()
        n = naive.raw_loop(pids[0], seconds)
        return {"connections": 1, "seconds": seconds, "tx": n, "tx_per_s": round(n / seconds, 1)}
    connection.close()  # SQLite: no open handle in this process while the others write
    start = time.time() + 3.0  # every process connected and ready, then all start together
    procs = [
        subprocess.Popen([PYTHON, "-m", "bench._raw_worker", pid, str(start), str(seconds)], cwd=ROOT,
                         env=env.environ(), stdout=subprocess.PIPE, text=True)
        for pid in pids
    ]
    counts = [int(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    n = sum(counts)
    return {"connections": connections, "seconds": seconds, "tx": n, "tx_per_s": round(n / seconds, 1)}


def naive_pipeline(env: BenchEnv, chains: int, warmup: float, duration: float) -> dict:
    """1b: one RQ job per step-shaped transaction, each enqueueing the next, `chains` at once."""
    run = _run_id()
    pids = naive.make_rows(chains, f"naive-{run}")
    naive.enqueue_naive(pids)
    t0, t1 = _window(warmup, duration)
    quiesce(env)
    out = measure.naive_window(t0, t1, definition=naive.NAIVE_DEFINITION)
    out["chains"] = chains
    return out


# -- 2. our runtime ---------------------------------------------------------------------------

def pingpong(env: BenchEnv, pairs: int, warmup: float, duration: float) -> dict:
    run = _run_id()
    specs = []
    for i in range(pairs):
        a, b = f"pp-{run}-{i}-a", f"pp-{run}-{i}-b"
        specs.append(("pingpong", {"role": "pong", "inbox": a, "outbox": b, "rounds": BIG}))
        specs.append(("pingpong", {"role": "ping", "inbox": b, "outbox": a, "rounds": BIG}))
    ids = _start_many(specs)
    t0, t1 = _window(warmup, duration, ids)
    quiesce(env)
    out = measure.runtime_window(t0, t1, definitions=["pingpong"])
    received = out["methods_per_s"].get("Main_Received", 0.0)
    out["messages_per_s"] = received
    out["pairs"] = pairs
    out["stepping"] = _stepping(ids, t0, t1)
    return out


def _stepping(ids: list[str], t0: datetime, t1: datetime) -> int:
    """How many of the processes ran a step in the window. Unfair scheduling shows here: while a
    job handed its chain back to the front of the queue, the 50 ping-pong pairs ran as 3."""
    from slct_workflows.models import Event

    return (Event.objects.filter(process_id__in=ids, kind="step", finished_at__gte=t0, finished_at__lt=t1)
            .values("process_id").distinct().count())


def fanin(env: BenchEnv, senders: int, capacity: int, warmup: float, duration: float) -> dict:
    from slct_workflows import services

    run = _run_id()
    chan = f"fanin-{run}"
    services.create_channel(chan, capacity)
    ids = _start_many([("bench-sink", {"chan": chan})] + [("bench-sender", {"chan": chan})] * senders)
    t0, t1 = _window(warmup, duration, ids)
    quiesce(env)
    out = measure.runtime_window(t0, t1, definitions=["bench-sink", "bench-sender"])
    out["messages_per_s"] = out["methods_per_s"].get("Main_Got", 0.0)
    out["senders"], out["capacity"] = senders, capacity
    out["stepping"] = _stepping(ids, t0, t1)
    # every step locks the one channel row until it commits: steps/s x mean step time near 1
    # means the steps ran one after the other
    mean = out["step_ms"]["mean_ms"]
    out["channel_busy"] = round(out["steps_per_s"] * mean / 1000, 2) if mean and out["steps_per_s"] else None
    return out


def timers(env: BenchEnv, n: int, lead: float, timeout: float = 60.0) -> dict:
    """n processes whose select waits for the same absolute deadline; lateness of each firing
    (the Main_Fired step's commit minus the deadline). The deadline is `lead` seconds out (time
    to start and arm them all), at half past a second: the runtime schedules RQ jobs in whole
    seconds, so a deadline on a whole second would hide that rounding."""
    from slct_workflows.models import Event, Goroutine, PendingCase, ProcessInstance

    run = _run_id()
    due = (timezone.now() + timedelta(seconds=lead)).replace(microsecond=500000)
    t_start = time.monotonic()
    ids = _start_many([("bench-timer", {"due": due.isoformat(), "run": run, "i": i}) for i in range(n)])
    started_in = time.monotonic() - t_start
    armed_at = consumed_at = None
    # The polls must not take CPU from the burst they measure. Before due, the arming poll counts
    # by definition (only this scenario starts bench-timer processes), not by a list of 1,000
    # ids. After due, the 10 ms poll asks whether any of these timer cases is left (an index
    # probe: they all share this deadline) instead of counting blocked goroutines through a
    # join, which cost PostgreSQL ~10% of a core during the burst.
    mine = Goroutine.objects.filter(process__definition="bench-timer")
    left = PendingCase.objects.filter(kind="timer", deadline=due)
    while timezone.now() < due + timedelta(seconds=timeout):
        now = timezone.now()
        if armed_at is None and now <= due:
            if mine.filter(status="blocked").count() == n:
                armed_at = now
        elif consumed_at is None and now > due and not left.exists():
            consumed_at = now  # every select's timer case has fired; the woken steps may still queue
        if consumed_at is None:
            time.sleep(0.01 if now > due else 0.2)
            continue
        done = ProcessInstance.objects.filter(definition="bench-timer", status="done").count()
        if done == n:
            break
        time.sleep(0.05)
    fired = list(
        Event.objects.filter(process_id__in=ids, method="Main_Fired", kind="step").values_list("finished_at", "started_at")
    )
    armed_late = Event.objects.filter(process_id__in=ids, method="Main_Start", finished_at__gt=due).count()
    quiesce(env)
    late = [(f - due).total_seconds() for f, _ in fired]
    late_start = [(s - due).total_seconds() for _, s in fired]
    return {
        "timers": n,
        "fired": len(fired),
        "due": due.isoformat(),
        "lead_s": lead,
        "started_in_s": round(started_in, 2),
        "armed_before_due": armed_at is not None and armed_at <= due and armed_late == 0,
        "armed_s_before_due": round((due - armed_at).total_seconds(), 2) if armed_at else None,
        "armed_late": armed_late,
        "lateness": measure.summary_ms(late),
        "lateness_to_start": measure.summary_ms(late_start),
        "within_1s": sum(1 for x in late if x <= 1.0),
        # polled every 10 ms: when the last of the n goroutines stopped being blocked on its timer
        "all_consumed_ms": round((consumed_at - due).total_seconds() * 1000, 1) if consumed_at else None,
        "first_ms": round(min(late) * 1000, 1) if late else None,
        # how fast the burst was worked off: firings per second between the first and the last
        "fire_rate": round(len(fired) / (max(late) - min(late)), 1) if len(late) > 1 and max(late) > min(late) else None,
    }


def utcnow() -> datetime:
    return datetime.now(dt_timezone.utc)
