"""Lifecycle hooks: how integrations (Slack, metrics, your own) follow the engine.

The engine raises these events on every path that causes them (the step, a counterpart fired
by a send or a close, a timer fired by the timer loop, a scheduled job or the recovery sweep, a
cancel from REST, the admin or the CLI), inside the transaction that makes the change. A
listener therefore sees exactly the changes that commit, and anything it writes in the database
(an outbox row, say) commits or rolls back with them. Model signals are not a substitute:
the hot paths write with bulk UPDATEs and hand-written SQL that send none.

    from slct_workflows import hooks

    @hooks.on(hooks.ProcessEnded)
    def tell_someone(events: list[hooks.ProcessEnded]) -> None:
        for e in events:
            ...

Listeners get a list (a bulk timer firing raises one list for the whole batch, so a listener
can answer it with one query). They run in the worker's thread on the hot path: keep them short,
do the slow part after commit (an outbox row via `slct_workflows.services.queue_job`, or
`transaction.on_commit`). A listener that raises is logged and skipped; if it broke the
transaction (a failed query on PostgreSQL), the step fails with it and is retried, as with any
failed write of the step's own.

No Django here (it is tested without a database): the events carry ids and names, not rows.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger("slct_workflows")

__all__ = [
    "SelectFired", "GoroutineBlocked", "GoroutinePaused", "ProcessEnded",
    "on", "subscribe", "unsubscribe", "wanted", "emit",
    "BY_TIMER", "BY_COUNTERPART", "BY_EXTERNAL", "BY_CLOSE", "BY_DEFAULT",
]

# Who made a select fire.
BY_TIMER = "timer"  # one of its timer cases came due
BY_COUNTERPART = "counterpart"  # a goroutine sent or received on the case's channel (or a buffer did)
BY_EXTERNAL = "external"  # a send from outside (REST, Slack, the admin, the CLI)
BY_CLOSE = "close"  # the case's channel was closed
BY_DEFAULT = "default"  # its default case (nothing else was ready)


@dataclass(frozen=True)
class SelectFired:
    """A blocked goroutine's select fired (or a step's own select fired at once)."""

    process_id: str
    goroutine: str
    goroutine_id: int
    kind: str  # the case that fired: "recv", "send", "timer" or "default"
    channel: str  # "" for timer and default cases
    method: str  # what runs next
    by: str  # BY_*
    source: dict | None = None  # who sent the value, as the history records it
    closed: bool = False  # the case fired because its channel is closed


@dataclass(frozen=True)
class GoroutineBlocked:
    """A step ended with a select that must wait: its cases are pending."""

    process_id: str
    goroutine: str
    goroutine_id: int
    cases: tuple[str, ...]  # "recv orders", "timer 2026-...", as the history words them
    deadline: datetime | None = None  # the earliest timer case, if any


@dataclass(frozen=True)
class GoroutinePaused:
    """The runaway guard paused a goroutine (see docs/OPERATIONS.md)."""

    process_id: str
    goroutine: str
    goroutine_id: int
    reason: str


@dataclass(frozen=True)
class ProcessEnded:
    """A process reached done, failed or cancelled."""

    process_id: str
    definition: str
    status: str  # "done", "failed" or "cancelled"
    error: str = ""


Event = Any
Listener = Callable[[list], None]

# event type -> [(listener, the `by` values it wants, or None for all)]
_listeners: dict[type, list[tuple[Listener, frozenset[str] | None]]] = {}


def subscribe(event_type: type, listener: Listener, *, by: Iterable[str] | None = None) -> None:
    """Call `listener(events)` with every batch of `event_type` the engine raises (once per
    listener). For SelectFired, `by` narrows it to some causes (e.g. `by={hooks.BY_TIMER}`): the
    engine then builds no event at all for the others, which keeps the hot path bare."""
    bucket = _listeners.setdefault(event_type, [])
    if all(fn is not listener for fn, _ in bucket):
        bucket.append((listener, frozenset(by) if by is not None else None))


def unsubscribe(event_type: type, listener: Listener) -> None:
    _listeners[event_type] = [(fn, by) for fn, by in _listeners.get(event_type, []) if fn is not listener]


def on(event_type: type, *, by: Iterable[str] | None = None) -> Callable[[Listener], Listener]:
    """Decorator form of `subscribe`."""

    def register(listener: Listener) -> Listener:
        subscribe(event_type, listener, by=by)
        return listener

    return register


def wanted(event_type: type, by: str | None = None) -> bool:
    """Whether anyone listens (to this cause, if given): the engine builds events only then."""
    bucket = _listeners.get(event_type)
    if not bucket:
        return False
    return by is None or any(causes is None or by in causes for _, causes in bucket)


class _Held(threading.local):
    events: list | None = None


_held = _Held()


@contextmanager
def holding() -> Iterator[list]:
    """Inside, emitted events wait in the yielded list instead of reaching their listeners; the
    caller hands them over with `deliver` before its transaction commits (a group commit: one
    list per type for all its steps, so a listener answers a whole group with one query), and
    drops those of a step it rolls back."""
    previous, _held.events = _held.events, []
    try:
        yield _held.events
    finally:
        _held.events = previous


def emit(events: Iterable[Any]) -> None:
    """Hand events (of one type or several) to their listeners, a list per type."""
    if _held.events is not None:
        _held.events.extend(events)
        return
    deliver(events)


def deliver(events: Iterable[Any]) -> None:
    """Hand events to their listeners now, a list per type (emit, or a holder's release)."""
    by_type: dict[type, list] = {}
    for event in events:
        by_type.setdefault(type(event), []).append(event)
    for event_type, batch in by_type.items():
        for listener, causes in list(_listeners.get(event_type, ())):
            mine = batch if causes is None else [e for e in batch if getattr(e, "by", None) in causes]
            if not mine:
                continue
            try:
                listener(mine)
            except Exception as exc:
                if _breaks_transaction(exc):
                    raise
                log.exception("a %s hook (%s) raised; skipped", event_type.__name__,
                              getattr(listener, "__qualname__", listener))


def _breaks_transaction(exc: BaseException) -> bool:
    # A database error may have aborted the transaction (PostgreSQL): the engine must see it so
    # the whole step is retried, rather than fail later on an unrelated statement. Matched by
    # name (Django's and the drivers' DatabaseError) to keep this module free of Django.
    return any(cls.__name__ == "DatabaseError" for cls in type(exc).__mro__)
