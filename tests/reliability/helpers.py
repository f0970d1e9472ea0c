"""Checks shared by the reliability tests: completion (with a diagnosis of what is stuck), the
exactly-once ledger, history consistency, the recovery sweep, and the printed figures."""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from django.db import connection
from django.db.models import Count

from slct_workflows import services
from slct_workflows.models import (
    BufferedValue, Event, EventKind, Goroutine, GoroutineStatus, PendingCase, ProcessInstance,
)

FIGURES_FILE = Path(__file__).resolve().parent.parent.parent / ".slct" / "reliability-figures.jsonl"  # git-ignored


def vendor() -> str:
    return connection.vendor


def not_done(pids: Iterable[str]) -> list[str]:
    pids = list(pids)
    return list(ProcessInstance.objects.filter(pk__in=pids).exclude(status="done").values_list("pk", flat=True))


def describe_stuck(pids: Iterable[str], limit: int = 15) -> str:
    lines = []
    for proc in ProcessInstance.objects.filter(pk__in=list(pids)).exclude(status="done").order_by("pk")[:limit]:
        lines.append(f"process {proc.pk} {proc.definition} status={proc.status} steps={proc.step_count} "
                     f"error={proc.error[:300]!r}")
        for g in Goroutine.objects.filter(process=proc):
            cases = [f"{c.kind} {c.channel_id or c.deadline}" for c in PendingCase.objects.filter(goroutine=g)]
            lines.append(f"  goroutine {g.name} {g.status} wait_seq={g.wait_seq} next={g.next_method} "
                         f"attempts={g.attempts} last_error={g.last_error[:200]!r} pending={cases}")
    return "\n".join(lines)


def wait_done(pids: Iterable[str], timeout: float, *, pool=None, what: str = "processes",
              every: float = 0.25, sweep_every: float | None = None) -> dict:
    """Wait until every process is done. With `sweep_every`, run the recovery sweep
    (services.sweep(grace_seconds=0)) that often while waiting, as the periodic sweep would.
    Returns {"seconds": .., "sweeps": .., "re-enqueued": ..}."""
    pids = list(pids)
    start = time.monotonic()
    deadline = start + timeout
    sweeps = reenqueued = 0
    last_sweep = 0.0
    last_progress = start
    remaining = pids
    while time.monotonic() < deadline:
        if time.monotonic() - last_progress >= 10:
            last_progress = time.monotonic()
            steps = Event.objects.filter(process_id__in=pids).count()
            print(f"  [{time.monotonic() - start:5.1f}s] {len(remaining)} {what} not done yet, {steps} history events",
                  flush=True)
        remaining = not_done(remaining)
        if not remaining:
            return {"seconds": round(time.monotonic() - start, 1), "sweeps": sweeps, "re-enqueued": reenqueued}
        ended = list(ProcessInstance.objects.filter(pk__in=remaining, status__in=["failed", "cancelled"])
                     .values_list("pk", flat=True))
        if ended:  # will never be done
            raise AssertionError(f"{len(ended)} {what} ended without finishing:\n{describe_stuck(ended)}")
        if sweep_every is not None and time.monotonic() - last_sweep >= sweep_every:
            report = services.sweep(grace_seconds=0)
            sweeps += 1
            reenqueued += report.runnable + report.timers
            last_sweep = time.monotonic()
        time.sleep(every)
    logs = pool.logs()[-6000:] if pool is not None else ""
    raise AssertionError(
        f"{len(remaining)} of {len(pids)} {what} not done after {timeout}s:\n{describe_stuck(remaining)}\n"
        f"--- worker logs (tail) ---\n{logs}"
    )


def check_history(pids: Iterable[str]) -> int:
    """Each process's history: (process, seq) unique, seq strictly increasing in commit (id) order
    and contiguous 1..step_count, and no two steps of one process overlapping in time (a step's
    started_at is taken after the process lock, its finished_at before commit). Steps that shared
    a transaction (a group commit, runtime/group.py) share its finished_at, the moment their
    writes went to the COMMIT; they ran one after the other, so they must start in order. Returns
    the number of events checked."""
    pids = list(pids)
    dup = list(
        Event.objects.filter(process_id__in=pids).values("process_id", "seq").annotate(n=Count("id")).filter(n__gt=1)[:10]
    )
    assert not dup, f"duplicate (process, seq) in the history: {dup}"
    step_counts = dict(ProcessInstance.objects.filter(pk__in=pids).values_list("pk", "step_count"))
    rows = Event.objects.filter(process_id__in=pids).order_by("process_id", "id").values_list(
        "process_id", "seq", "kind", "started_at", "finished_at"
    )
    by_proc: dict[str, list] = {}
    for row in rows:
        by_proc.setdefault(row[0], []).append(row[1:])
    overlaps = []
    for pid in pids:
        events = by_proc.get(pid, [])
        seqs = [e[0] for e in events]
        assert seqs == list(range(1, step_counts[pid] + 1)), f"history of {pid} is not 1..{step_counts[pid]} in commit order: {seqs}"
        steps = [e for e in events if e[1] in (EventKind.STEP, EventKind.ERROR, EventKind.FAILED)]
        for prev, nxt in zip(steps, steps[1:]):
            if prev[3] == nxt[3] and nxt[2] >= prev[2]:
                continue  # one transaction, one after the other (a different transaction has its own end)
            if (prev[3] - nxt[2]).total_seconds() > 0.002:  # next began before the previous ended
                overlaps.append((pid, prev[0], nxt[0], prev[2].isoformat(), prev[3].isoformat(), nxt[2].isoformat()))
    assert not overlaps, f"steps of one process overlapped in time: {overlaps[:10]}"
    return sum(len(v) for v in by_proc.values())


def explain_values(values: Iterable, pids: Iterable[str]) -> str:
    """Evidence for a lost or duplicated value: every history event that carried it, and the
    failed/retried steps of the processes involved."""
    lines = []
    pids = list(pids)
    for raw in list(values)[:5]:
        value = json.loads(raw) if isinstance(raw, str) else raw
        events = Event.objects.filter(process_id__in=pids, value=value).order_by("id")
        holders = {p.pk: p.state.get("received", []).count(value)
                   for p in ProcessInstance.objects.filter(pk__in=pids) if value in p.state.get("received", [])}
        lines.append(f"value {value!r}: in the `received` state of {holders}")
        involved = set(holders)
        for e in events:
            involved.add(e.process_id)
            lines.append(f"  event {e.id} {e.process_id}#{e.seq} {e.kind} {e.goroutine}.{e.method} case={e.case!r} "
                         f"source={e.source} {e.started_at.isoformat()}..{e.finished_at.isoformat()} error={e.error[:200]!r}")
        for e in Event.objects.filter(process_id__in=involved).exclude(kind=EventKind.STEP).exclude(kind=EventKind.START):
            lines.append(f"  non-step event {e.id} {e.process_id}#{e.seq} {e.kind} {e.goroutine}.{e.method} "
                         f"value={e.value!r} detail={e.detail} error={e.error[:300]!r}")
    return "\n".join(lines)


def ledger(expected: Iterable, received: Iterable, *, pids: Iterable[str] = ()) -> dict:
    """Exactly-once delivery: every expected value received once, nothing else."""
    expected = list(expected)
    counts = Counter(json.dumps(v, sort_keys=True) for v in received)
    want = Counter(json.dumps(v, sort_keys=True) for v in expected)
    assert all(n == 1 for n in want.values()), "the test's own ledger has duplicates"
    duplicated = sorted(k for k, n in counts.items() if n > 1)
    lost = sorted(k for k in want if k not in counts)
    unexpected = sorted(k for k in counts if k not in want)
    result = {"sent": len(want), "received": sum(counts.values()), "lost": len(lost),
              "duplicated": len(duplicated), "unexpected": len(unexpected)}
    if lost or duplicated or unexpected:
        evidence = explain_values([*duplicated, *lost], pids) if pids else ""
        raise AssertionError(
            f"{result}; lost {lost[:20]}, duplicated {duplicated[:20]}, unexpected {unexpected[:20]}\n{evidence}"
        )
    return result


def assert_quiescent(pids: Iterable[str], *, channels: Iterable[str] = ()) -> None:
    """Nothing left waiting or runnable, nothing left in the buffers of `channels`."""
    pids = list(pids)
    live = list(Goroutine.objects.filter(process_id__in=pids, status__in=[
        GoroutineStatus.RUNNABLE, GoroutineStatus.BLOCKED, GoroutineStatus.FAILED,
    ]).values_list("process_id", "name", "status")[:10])
    assert not live, f"goroutines still live in finished processes: {live}"
    pending = PendingCase.objects.filter(goroutine__process_id__in=pids).count()
    assert pending == 0, f"{pending} pending cases left behind"
    left = list(BufferedValue.objects.filter(channel_id__in=list(channels)).values_list("channel_id", "value")[:10])
    assert not left, f"values left in buffers: {left}"


def read_attempts(path: Path) -> list[tuple[int, str, str, str]]:
    """Lines written by `instrumented`: (worker pid, process, goroutine, method) per attempt."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 5:
            out.append((int(parts[0]), parts[1], parts[2], parts[3]))
    return out


def committed_steps(pids: Iterable[str]) -> int:
    return Event.objects.filter(process_id__in=list(pids), kind=EventKind.STEP).count()


def report(test: str, **figures) -> dict:
    """Print the figures of a run (pytest -s shows them) and append them to .slct/reliability-figures.jsonl."""
    figures = {"test": test, "database": vendor(), **figures}
    print("\nRELIABILITY " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    try:
        with FIGURES_FILE.open("a") as f:
            f.write(json.dumps(figures) + "\n")
    except OSError:
        pass
    return figures


@contextmanager
def captured_log(name: str = "slct_workflows"):
    """Collect the records of logger `name` instead of printing them (an outage logs a traceback
    per failed enqueue); yields the list of records."""
    logger = logging.getLogger(name)
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    saved, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [Collect()], False
    try:
        yield records
    finally:
        logger.handlers, logger.propagate = saved, propagate


def terminate_backends(seconds: float) -> int:
    """Terminate every other backend of the test database, again and again, for `seconds`: the
    workers' connections die mid-transaction and their reconnects die too (the safe way to take
    PostgreSQL away on a shared machine: the cluster stays up for everyone else)."""
    terminated = 0
    end = time.monotonic() + seconds
    with connection.cursor() as cur:
        while time.monotonic() < end:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminated += cur.fetchone()[0]
            time.sleep(0.05)
    return terminated
