"""What the workers tell Redis about the runtime's own health, read by /readyz and the metrics.

Keys are per queue, so test runs and sites sharing one Redis do not read each other's:

    slct:timer-loop:<queue>   the timer loop's leader lease (value: the leading worker's name)
    slct:last-sweep:<queue>   unix time of the last recovery sweep that completed
"""
from __future__ import annotations

import time
from typing import Any

from slct_workflows import conf


def leader_key() -> str:
    return f"slct:timer-loop:{conf.queue_name()}"


def sweep_key() -> str:
    return f"slct:last-sweep:{conf.queue_name()}"


def record_sweep(redis: Any, at: float | None = None) -> None:
    """Note a completed sweep (kept a day: a stale key reads as "no sweep lately", not as an error)."""
    redis.set(sweep_key(), repr(time.time() if at is None else at), ex=86400)


def last_sweep(redis: Any) -> float | None:
    raw = redis.get(sweep_key())
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def leader(redis: Any) -> str | None:
    raw = redis.get(leader_key())
    return raw.decode() if isinstance(raw, bytes) else raw
