"""The select and channel rules of DESIGN 1.2, as pure functions over in-memory snapshots.

No Django here: the engine loads a snapshot of the locked channels, asks this module what happens,
and applies the returned decision inside its transaction. Every function works on copies, so a
caller may re-evaluate after dropping a stale waiter (one fired by a concurrent transaction).

Vocabulary:
* a *waiter* is a blocked party on a channel: a pending recv or send case of a blocked goroutine,
  or an external send left waiting. Waiters are kept oldest first.
* *firing* a waiter consumes its whole select (the engine removes all its pending cases) and makes
  its goroutine runnable with the waiter's target method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Hashable, Literal, Sequence

RECV = "recv"
SEND = "send"
TIMER = "timer"
DEFAULT = "default"
CaseKind = Literal["recv", "send", "timer", "default"]


def describe_case(kind: str, channel: str | None = None, at: datetime | None = None, closed: bool = False) -> str:
    """A case (or "start"/"go") for people: "recv orders", "timer 2026-11-29T10:00:00+00:00", "default".
    The one wording of a case; nothing parses it back (the fields are stored as they are)."""
    if kind in (RECV, SEND):
        text = f"{kind} {channel}"
    elif kind == TIMER:
        text = f"timer {at.isoformat() if at else '?'}"
    else:
        text = kind
    return text + (" (closed)" if closed else "")


class SelectError(ValueError):
    """A select that breaks the rules of its shape (not of timing)."""


@dataclass(frozen=True)
class Case:
    kind: CaseKind
    target: str
    channel: str | None = None
    value: Any = None
    deadline: datetime | None = None

    def describe(self) -> str:
        return describe_case(self.kind, self.channel, self.deadline)


@dataclass(frozen=True)
class Waiter:
    ref: Hashable  # the pending case (engine's id); opaque here
    owner: Hashable  # who is blocked (goroutine id or external send key); opaque here
    op: Literal["recv", "send"]
    target: str = ""
    value: Any = None  # the value a blocked sender offers


@dataclass
class ChannelState:
    name: str
    capacity: int = 0
    closed: bool = False
    buffer: list[Any] = field(default_factory=list)
    receivers: list[Waiter] = field(default_factory=list)
    senders: list[Waiter] = field(default_factory=list)

    def copy(self) -> "ChannelState":
        # Waiters are frozen and values are only moved, never mutated: copying the lists is
        # enough, and much cheaper than a deep copy on the hot path.
        return ChannelState(
            self.name, self.capacity, self.closed, list(self.buffer), list(self.receivers), list(self.senders)
        )

    def drop_owner(self, owner: Hashable) -> None:
        self.receivers = [w for w in self.receivers if w.owner != owner]
        self.senders = [w for w in self.senders if w.owner != owner]


@dataclass(frozen=True)
class Fire:
    """A waiter woken by this decision: it gets `value` (receivers) and `closed`."""

    waiter: Waiter
    channel: str
    value: Any = None
    closed: bool = False


@dataclass
class Decision:
    """What a select (or external send, or close) does when applied.

    `case_index` is the fired case (None: blocked). `value`/`closed` go to the running goroutine.
    `pops` and `pushes` are buffer edits per channel in order; `fires` are the woken waiters.
    """

    case_index: int | None = None
    value: Any = None
    closed: bool = False
    pops: list[str] = field(default_factory=list)
    pushes: list[tuple[str, Any]] = field(default_factory=list)
    fires: list[Fire] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.case_index is None


def validate_cases(cases: Sequence[Case]) -> None:
    """Shape rules that do not depend on any channel: default is last and unique."""
    for i, case in enumerate(cases):
        if case.kind == DEFAULT and i != len(cases) - 1:
            raise SelectError("default() must be the last case of a select")
        if case.kind in (RECV, SEND) and not case.channel:
            raise SelectError(f"{case.kind} case needs a channel name")
        if case.kind == TIMER and case.deadline is None:
            raise SelectError("timer case needs a deadline")


def _recv(ch: ChannelState, d: Decision) -> bool:
    if ch.buffer:
        d.value = ch.buffer.pop(0)
        d.pops.append(ch.name)
        if ch.senders:
            # Go semantics: the receive frees a slot; the oldest blocked sender's value moves in.
            sender = ch.senders.pop(0)
            ch.buffer.append(sender.value)
            d.pushes.append((ch.name, sender.value))
            d.fires.append(Fire(sender, ch.name))
        return True
    if ch.senders:
        sender = ch.senders.pop(0)
        d.value = sender.value
        d.fires.append(Fire(sender, ch.name))
        return True
    if ch.closed:
        d.value, d.closed = None, True
        return True
    return False


def _send(ch: ChannelState, value: Any, d: Decision) -> bool:
    if ch.closed:
        d.closed = True
        return True
    if ch.receivers:
        receiver = ch.receivers.pop(0)
        d.fires.append(Fire(receiver, ch.name, value=value))
        return True
    if len(ch.buffer) < ch.capacity:
        ch.buffer.append(value)
        d.pushes.append((ch.name, value))
        return True
    return False


def evaluate_select(
    cases: Sequence[Case], channels: dict[str, ChannelState], now: datetime, *, owner: Hashable = None
) -> Decision:
    """Evaluate cases in order at `now`; the first ready one fires, else the select blocks.

    `owner` is the running goroutine: its own stale waiters (if any) are never its counterparts.
    """
    validate_cases(cases)
    chans = {name: ch.copy() for name, ch in channels.items()}
    if owner is not None:
        for ch in chans.values():
            ch.drop_owner(owner)
    for i, case in enumerate(cases):
        d = Decision(case_index=i)
        if case.kind == RECV and _recv(chans[case.channel], d):
            return d
        if case.kind == SEND and _send(chans[case.channel], case.value, d):
            return d
        if case.kind == TIMER and case.deadline <= now:
            return d
        if case.kind == DEFAULT:
            return d
    return Decision()


def external_send(ch: ChannelState, value: Any) -> tuple[str, Decision]:
    """A send from outside (REST, Slack, admin): `delivered`, `buffered`, `closed` or `blocked`.

    `blocked` means no receiver and no room: the caller either leaves it waiting (a pending
    external send) or refuses it.
    """
    chans = ch.copy()
    d = Decision(case_index=0)
    if chans.closed:
        d.closed = True
        return "closed", d
    if chans.receivers:
        _send(chans, value, d)
        return "delivered", d
    if _send(chans, value, d):
        return "buffered", d
    return "blocked", Decision()


def close_channel(ch: ChannelState) -> Decision:
    """Close: every blocked receiver and sender fires with `closed`. Double close is a no-op.

    The buffer is kept: receivers drain it before they see `closed`.

    A select is exclusive: a goroutine blocked with several cases on this channel fires once, by
    its first waiter (receivers before senders, as Go's close does; oldest first, which for one
    select is case order).
    """
    d = Decision()
    if ch.closed:
        return d
    fired: set[Hashable] = set()
    for w in [*ch.receivers, *ch.senders]:
        if w.owner in fired:
            continue
        fired.add(w.owner)
        d.fires.append(Fire(w, ch.name, value=None, closed=True))
    return d


def due_timer(cases: Sequence[Case], now: datetime) -> int | None:
    """The first timer case (in case order) whose deadline has passed, for a blocked select."""
    for i, case in enumerate(cases):
        if case.kind == TIMER and case.deadline <= now:
            return i
    return None
