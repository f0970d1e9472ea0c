"""Figures from the history the runtime writes anyway: Event rows (one per step).

Wake-up latency = the woken goroutine's step commit minus the waking step's commit, both read from
Event.finished_at (taken just before the step's last writes and its COMMIT, the same way on both
sides). Two ways to pair a waking step with the woken step:

* send->recv (the issue's definition): a step that received a value from a goroutine it was blocked
  on carries Event.source = {"process", "goroutine", "seq"} of the sender's step;
* any wake-up: a step that fired a blocked counterpart lists it in Event.detail["woke"] (goroutine
  ids): the woken goroutine's next step event is the first one of that goroutine with a higher id.
  This also covers a blocked *sender* woken by a receiver, which carries no source.
"""
from __future__ import annotations

import bisect
import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Iterable


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def summary_ms(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": _ms(pct(values, 50)),
        "p99_ms": _ms(pct(values, 99)),
        "max_ms": _ms(max(values) if values else None),
        "mean_ms": _ms(sum(values) / len(values) if values else None),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def _secs(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds()


def runtime_window(t0: datetime, t1: datetime, *, definitions: Iterable[str], pad: float = 5.0) -> dict:
    """Steps/s and wake-up latencies of the processes of `definitions`, for steps that finished in
    [t0, t1)."""
    from slct_workflows.models import Event, Goroutine

    rows = list(
        Event.objects.filter(
            kind="step", process__definition__in=list(definitions),
            finished_at__gte=t0 - timedelta(seconds=pad), finished_at__lt=t1 + timedelta(seconds=pad),
        ).order_by("id").values_list("id", "process_id", "goroutine", "seq", "method", "started_at", "finished_at",
                                     "detail", "source")
    )
    in_window = [r for r in rows if t0 <= r[6] < t1]
    seconds = _secs(t1, t0)
    by_seq = {(r[1], r[3]): r for r in rows}
    by_goroutine: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for r in rows:
        by_goroutine[(r[1], r[2])].append(r)
    ids_by_goroutine = {k: [r[0] for r in v] for k, v in by_goroutine.items()}

    woken_ids = {gid for r in in_window for gid in ((r[7] or {}).get("woke") or [])}
    gmap = {gid: (pid, name) for gid, pid, name in
            Goroutine.objects.filter(pk__in=woken_ids).values_list("id", "process_id", "name")} if woken_ids else {}

    wake, wake_start, send_recv = [], [], []
    for r in in_window:
        for gid in (r[7] or {}).get("woke") or []:
            key = gmap.get(gid)
            if key is None or key not in by_goroutine:
                continue
            ids = ids_by_goroutine[key]
            i = bisect.bisect_right(ids, r[0])
            if i < len(ids):
                nxt = by_goroutine[key][i]
                wake.append(_secs(nxt[6], r[6]))
                wake_start.append(_secs(nxt[5], r[6]))
    for r in in_window:
        src = r[8] or {}
        if "seq" in src and "process" in src:
            sender = by_seq.get((src["process"], src["seq"]))
            if sender is not None:
                send_recv.append(_secs(r[6], sender[6]))
    methods: dict[str, int] = defaultdict(int)
    for r in in_window:
        methods[r[4]] += 1
    return {
        "seconds": seconds,
        "steps": len(in_window),
        "steps_per_s": round(len(in_window) / seconds, 1) if seconds > 0 else None,
        "methods_per_s": {m: round(c / seconds, 1) for m, c in sorted(methods.items())},
        "wake": summary_ms(wake),                 # waking step commit -> woken step commit
        "wake_to_start": summary_ms(wake_start),  # waking step commit -> woken step start
        "send_recv": summary_ms(send_recv),       # the definition (source with seq)
        "step_ms": summary_ms([_secs(r[6], r[5]) for r in in_window]),
    }


def naive_window(t0: datetime, t1: datetime, *, definition: str, pad: float = 5.0) -> dict:
    """Jobs/s of the naive pipeline and its commit-to-next-commit latency per chain."""
    from slct_workflows.models import Event

    rows = list(
        Event.objects.filter(
            kind="step", process__definition=definition,
            finished_at__gte=t0 - timedelta(seconds=pad), finished_at__lt=t1,
        ).order_by("process_id", "seq").values_list("process_id", "seq", "started_at", "finished_at")
    )
    seconds = _secs(t1, t0)
    in_window = [r for r in rows if t0 <= r[3] < t1]
    lat, lat_start = [], []
    for prev, cur in zip(rows, rows[1:]):
        if prev[0] == cur[0] and cur[1] == prev[1] + 1 and t0 <= cur[3] < t1:
            lat.append(_secs(cur[3], prev[3]))
            lat_start.append(_secs(cur[2], prev[3]))
    return {
        "seconds": seconds,
        "steps": len(in_window),
        "steps_per_s": round(len(in_window) / seconds, 1) if seconds > 0 else None,
        "wake": summary_ms(lat),
        "wake_to_start": summary_ms(lat_start),
        "step_ms": summary_ms([_secs(r[3], r[2]) for r in in_window]),
    }
