"""The one way a goroutine becomes runnable: `next_fields` says which columns change and how.

Every path (a process starting, `p.go`, a select firing in the step, a counterpart fired by a send
or a close, a timer firing in bulk) writes these same columns through this function, whether as
model attributes, a bulk UPDATE or a hand-written statement, so "what runs next" has one shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slct_workflows.models import GoroutineStatus, NextKind


@dataclass(frozen=True)
class Next:
    method: str
    kind: str  # NextKind: the case that fired, or "start" / "go"
    channel: str = ""
    at: datetime | None = None  # the deadline of the timer that fired
    value: Any = None
    closed: bool = False
    source: dict | None = None  # who sent the value (the history's arrows)


def next_fields(nxt: Next, now: datetime) -> dict[str, Any]:
    """The goroutine columns that make it runnable with `nxt` (wait_seq is bumped by the caller:
    an F() expression in an UPDATE, an increment in hand-written SQL, += 1 on a loaded row)."""
    return {
        "status": GoroutineStatus.RUNNABLE,
        "next_method": nxt.method,
        "next_kind": nxt.kind,
        "next_channel": nxt.channel or "",
        "next_at": nxt.at,
        "next_value": nxt.value,
        "next_closed": nxt.closed,
        "next_source": nxt.source,
        "runnable_since": now,
    }


def cleared_fields() -> dict[str, Any]:
    """The same columns for a goroutine that stops waiting to run (it blocked, ended or was cancelled)."""
    return {
        "next_method": "", "next_kind": "", "next_channel": "", "next_at": None,
        "next_value": None, "next_closed": False, "next_source": None, "runnable_since": None,
    }


FIELDS = tuple(next_fields(Next("", NextKind.START), datetime.min))
