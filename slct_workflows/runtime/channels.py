"""Channel rows in a transaction: create, lock in name order, snapshot, and apply decisions.

Used by the step engine and by the services (external sends, closes, cancels). Lock order is
always: process row(s), then channel rows sorted by name, then counterpart goroutine rows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Hashable, Iterable

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from slct_workflows import hooks, semantics
from slct_workflows.models import (
    BufferedValue,
    Channel,
    ExternalSend,
    Goroutine,
    GoroutineStatus,
    PendingCase,
    SendStatus,
)
from slct_workflows.runtime import dispatch
from slct_workflows.runtime.fixed_sql import (
    FixedInsert,
    FixedQuery,
    FixedValues,
    FixedWrite,
    defer,
    read_together,
    sends_together,
)
from slct_workflows.runtime.runnable import FIELDS, Next, next_fields

log = logging.getLogger("slct_workflows")


def goroutine_owner(gid: int) -> tuple[str, int]:
    return ("g", gid)


def external_owner(key: str) -> tuple[str, str]:
    return ("x", key)


@dataclass
class LockedChannels:
    """The locked channel rows of one transaction and a live semantic snapshot of them."""

    rows: dict[str, Channel]
    states: dict[str, semantics.ChannelState]
    wait_seqs: dict[Hashable, int] = field(default_factory=dict)  # owner -> wait_seq of its pending cases
    # Owners already checked in this transaction: True = still waiting (and now locked).
    live: dict[Hashable, bool] = field(default_factory=dict)
    woken: list[int] = field(default_factory=list)  # goroutine ids to enqueue after commit
    owners: dict[Hashable, dict] = field(default_factory=dict)  # owner -> {"process", "goroutine"}
    buffer_sources: dict[str, list] = field(default_factory=dict)  # who sent each buffered value
    buffer_seqs: dict[str, list[int]] = field(default_factory=dict)
    # (channel, kind) with waiters not read yet, and the last pending case id read for each.
    unread: set[tuple[str, str]] = field(default_factory=set)
    last_waiter: dict[tuple[str, str], int] = field(default_factory=dict)
    # A channel where an optimistic firing lost a race last time: every goroutine waiter is
    # locked and checked before it is fired (is_live), as stale ones may be among them.
    pessimistic: bool = False


def ensure(names: Iterable[str], capacities: dict[str, int] | None = None) -> None:
    """Create missing channels (unbuffered unless a capacity is given) without racing others."""
    capacities = capacities or {}
    wanted = sorted(set(names))
    if wanted:
        Channel.objects.bulk_create(
            [Channel(name=n, capacity=capacities.get(n, 0)) for n in wanted], ignore_conflicts=True
        )


def make(rows: list[Channel]) -> None:
    """Create channels a step makes, with their owner and policy. A name taken meanwhile raises
    IntegrityError (the step fails and retries, then finds the name taken): never adopt a row
    someone else made, or an outsider could pre-create a private channel's name as open."""
    Channel.objects.bulk_create(sorted(rows, key=lambda c: c.name))


_LOCK_CHANNELS = FixedQuery(lambda names: Channel.objects.select_for_update().filter(name__in=names).order_by("name"))


def lock(names: Iterable[str], *, create: bool = False) -> LockedChannels:
    """Lock the named channels in name order; with `create`, missing ones are made unbuffered.

    The lock, the buffers and the waiters are read in one round trip where the driver allows it
    (`fixed_sql.read_together`: the reads after the lock start once it is held). Creating after
    locking the others takes the new rows out of order; only a first use of a name pays that,
    and a deadlock it could cause is retried like any other.
    """
    wanted = sorted(set(names))
    if not wanted:
        return LockedChannels(rows={}, states={})
    # Mostly a few waiters: one plain read takes them all. Past that, the oldest few per
    # direction (a window query, dearer to run); a channel found that busy is read that way
    # directly next time (a hint kept per worker process, right or wrong it reads the same rows).
    busy_hint = bool(_busy.intersection(wanted))
    waiters_read = (
        (_OLDEST_WAITERS, (wanted, KINDS, WAITERS_READ)) if busy_hint else (_FEW_WAITERS, (wanted, KINDS))
    )
    # In one round trip the buffers of every named channel come along (none for unbuffered ones);
    # statement by statement only the buffered channels' are read, once their capacity is known.
    together = sends_together()

    def read() -> tuple[list[Channel], list | None, list]:
        if together:
            return tuple(read_together((_LOCK_CHANNELS, (wanted,)), (_BUFFERS, (wanted,)), waiters_read))
        chans, waiters = read_together((_LOCK_CHANNELS, (wanted,)), waiters_read)
        return chans, None, waiters

    chans, buffers, waiters = read()
    if create and len(chans) < len(wanted):
        found = {c.name for c in chans}
        ensure([n for n in wanted if n not in found])
        chans, buffers, waiters = read()
    if buffers is None:
        buffered = [c.name for c in chans if c.capacity > 0]
        buffers = _BUFFERS(buffered) if buffered else []
    rows = {c.name: c for c in chans}
    states = {n: semantics.ChannelState(name=n, capacity=c.capacity, closed=c.closed) for n, c in rows.items()}
    pessimistic = bool(_suspects) and not _suspects.isdisjoint(wanted)
    if pessimistic:
        _suspects.difference_update(wanted)
    locked = LockedChannels(
        rows=rows, states=states, buffer_sources={n: [] for n in rows}, buffer_seqs={n: [] for n in rows},
        pessimistic=pessimistic,
    )
    for chan, seq, value, source in buffers:
        states[chan].buffer.append(value)
        locked.buffer_seqs[chan].append(seq)
        locked.buffer_sources[chan].append(source)
    if not busy_hint and len(waiters) <= WAITERS_READ:
        _add_waiters(locked, waiters, limited=False)
        return locked
    if not busy_hint:  # more than a few: read the oldest few per direction instead
        waiters = _OLDEST_WAITERS(wanted, KINDS, WAITERS_READ)
    _add_waiters(locked, waiters, limited=True)
    busy = {chan for chan, _ in locked.unread}
    if len(_busy) > 10_000:
        _busy.clear()
    _busy.difference_update(set(wanted) - busy)
    _busy.update(busy)
    return locked


KINDS = ["recv", "send"]
_busy: set[str] = set()


# A decision only ever takes the oldest live waiter of a channel's receivers or senders (a close
# takes them all, and reads them all first). Reading a few per direction keeps a step on a busy
# channel (a hundred blocked senders) from loading every one of them while it holds the lock.
WAITERS_READ = 8

_WAITER_FIELDS = (
    "id", "channel_id", "kind", "goroutine_id", "external_send_id", "wait_seq", "target", "value",
    "goroutine__process_id", "goroutine__name",
)


_FEW_WAITERS = FixedValues(
    lambda names, kinds: PendingCase.objects.filter(channel_id__in=names, kind__in=kinds)
    .order_by("id").values_list(*_WAITER_FIELDS)[: WAITERS_READ + 1]
)
_OLDEST_WAITERS = FixedValues(
    lambda names, kinds, n: PendingCase.objects.filter(channel_id__in=names, kind__in=kinds)
    .annotate(rank=Window(RowNumber(), partition_by=[F("channel_id"), F("kind")], order_by=F("id").asc()))
    .filter(rank__lte=n).order_by("id").values_list(*_WAITER_FIELDS)
)
_BUFFERS = FixedValues(
    lambda names: BufferedValue.objects.filter(channel_id__in=names).order_by("channel_id", "seq")
    .values_list("channel_id", "seq", "value", "source")
)
_WAITERS_AFTER = FixedValues(
    lambda chan, kind, after: PendingCase.objects.filter(channel_id=chan, kind=kind, id__gt=after)
    .order_by("id").values_list(*_WAITER_FIELDS)
)
_NEXT_WAITERS = FixedValues(
    lambda chan, kind, after: PendingCase.objects.filter(channel_id=chan, kind=kind, id__gt=after)
    .order_by("id").values_list(*_WAITER_FIELDS)[:WAITERS_READ]
)

_GOROUTINE_WAIT = FixedValues(
    lambda gid: Goroutine.objects.select_for_update().filter(pk=gid).values_list("status", "wait_seq")
)
# Channels where an optimistic firing found its goroutine changed (fixed_sql.Conflict): the next
# transaction that locks one checks its waiters with locks. Per worker process; used once.
_suspects: set[str] = set()


def _suspect(channel: str) -> None:
    log.info("a waiter on channel %s was fired by another transaction first: the step reruns", channel)
    if len(_suspects) > 10_000:
        _suspects.clear()
    _suspects.add(channel)


def _add_waiters(locked: LockedChannels, rows: Iterable[tuple], *, limited: bool) -> None:
    counts: dict[tuple[str, str], int] = {}
    for pid, chan, kind, gid, key, wait_seq, target, value, process_id, gname in rows:
        counts[(chan, kind)] = counts.get((chan, kind), 0) + 1
        locked.last_waiter[(chan, kind)] = pid
        owner = goroutine_owner(gid) if gid is not None else external_owner(key)
        if locked.live.get(owner) is False:
            continue  # found stale (or fired) earlier in this transaction
        locked.wait_seqs[owner] = wait_seq
        locked.owners[owner] = {"process": process_id, "goroutine": gname} if gid is not None else {"external": key}
        waiter = semantics.Waiter(ref=pid, owner=owner, op=kind, target=target, value=value)
        st = locked.states[chan]
        (st.receivers if kind == "recv" else st.senders).append(waiter)
    for key, n in counts.items():
        if limited and n >= WAITERS_READ:
            locked.unread.add(key)
        else:
            locked.unread.discard(key)


def _read_more(locked: LockedChannels, chan: str, kind: str, *, everything: bool = False) -> None:
    """Read the waiters after the last one read for (chan, kind): the next few, or all of them."""
    locked.unread.discard((chan, kind))
    after = locked.last_waiter.get((chan, kind), 0)
    rows = (_WAITERS_AFTER if everything else _NEXT_WAITERS)(chan, kind, after)
    _add_waiters(locked, rows, limited=not everything)


def _refill(locked: LockedChannels) -> None:
    """A direction emptied by stale or fired waiters while older ones remain unread: read on."""
    for chan, kind in list(locked.unread):
        st = locked.states[chan]
        if not (st.receivers if kind == "recv" else st.senders):
            _read_more(locked, chan, kind)


def read_all_waiters(locked: LockedChannels, chan: str) -> None:
    for kind in ("recv", "send"):
        if (chan, kind) in locked.unread:
            _read_more(locked, chan, kind, everything=True)


def is_live(locked: LockedChannels, owner: Hashable) -> bool:
    """Does the waiter still wait on the same select? An external send is locked and checked
    here. A goroutine is taken at its word: firing it is one conditional UPDATE (`fire_waiter`,
    `WHERE status = 'blocked' AND wait_seq = <as read>`), and if another transaction fired it
    meanwhile that UPDATE finds no row and the whole transaction reruns (fixed_sql.Conflict).
    Under the channel lock its pending case can only be stale while a firing through another of
    its channels (or its timer) has not committed yet: a race, not the usual case. After a lost
    race on a channel (`_suspects`), the next transaction that locks it checks every goroutine
    waiter here with a lock (`LockedChannels.pessimistic`), so stale cases are skipped rather than
    tripped over one rerun at a time."""
    if owner in locked.live:
        return locked.live[owner]
    kind, ident = owner
    if kind == "g":
        ok = True
        if locked.pessimistic:
            row = next(iter(_GOROUTINE_WAIT(ident)), None)
            ok = row is not None and row[0] == GoroutineStatus.BLOCKED and row[1] == locked.wait_seqs.get(owner)
    else:
        status = ExternalSend.objects.select_for_update().filter(pk=ident).values_list("status", flat=True).first()
        ok = status == SendStatus.WAITING
    locked.live[owner] = ok
    return ok


def decide(locked: LockedChannels, evaluate) -> semantics.Decision:
    """Run `evaluate()` until every waiter it fires is still live; stale waiters are dropped."""
    while True:
        _refill(locked)
        decision = evaluate()
        stale = [f.waiter.owner for f in decision.fires if not is_live(locked, f.waiter.owner)]
        if not stale:
            return decision
        for owner in stale:
            for st in locked.states.values():
                st.drop_owner(owner)


def apply(locked: LockedChannels, decision: semantics.Decision, now: datetime, source: dict | None) -> list:
    """Write a decision's buffer edits and wake its fired waiters; keep the snapshot in step.

    `source` is who acts (for the history's arrows). Returns the sources of the popped values.
    """
    popped = []
    for chan in decision.pops:
        seq = locked.buffer_seqs[chan].pop(0)
        locked.states[chan].buffer.pop(0)
        popped.append(locked.buffer_sources[chan].pop(0))
        defer(_DELETE_BUFFERED.statement((chan, seq), expect=1))
    # A push on a channel that was also popped is a blocked sender's value moving into the buffer.
    handed_off = {f.channel: locked.owners.get(f.waiter.owner) for f in decision.fires if f.waiter.op == "send"}
    for chan, value in decision.pushes:
        # The buffer is read whole under the channel lock, so the next position is known without
        # writing a counter on the (hot) channel row at every send.
        seqs = locked.buffer_seqs[chan]
        seq = (seqs[-1] if seqs else 0) + 1
        pushed_by = handed_off.get(chan, source) if chan in decision.pops else source
        defer(_INSERT_BUFFERED.statement([BufferedValue(channel_id=chan, seq=seq, value=value, source=pushed_by)]))
        seqs.append(seq)
        locked.buffer_sources[chan].append(pushed_by)
        locked.states[chan].buffer.append(value)
    for fire in decision.fires:
        # A blocked sender fired by a pop on its channel moved its value into the buffer: it has
        # no receiver yet (the one that popped got the oldest value, not this one).
        into_buffer = fire.waiter.op == "send" and fire.channel in decision.pops
        fire_waiter(locked, fire, now, source, into_buffer=into_buffer)
    for popped_by in popped:
        if popped_by and "external" in popped_by and source and "process" in source:
            # An outside send's value leaves the buffer: its record names its real receiver.
            ExternalSend.objects.filter(pk=popped_by["external"]).update(
                status=SendStatus.RECEIVED, delivered_at=now, delivered_to=_receiver(source),
            )
    return popped


def _receiver(source: dict) -> str:
    return f"{source.get('process', '')}/{source.get('goroutine', '')}"


_DELETE_BUFFERED = FixedWrite(BufferedValue, where=["channel", "seq"], delete=True)
_INSERT_BUFFERED = FixedInsert(BufferedValue)
_DELETE_CASES = FixedWrite(PendingCase, where="goroutine", delete=True)
# Fires the goroutine only if it still waits on the select that was read (is_live).
_FIRE_GOROUTINE = FixedWrite(
    Goroutine, where=["id", "status", "wait_seq"], increment=["wait_seq"],
    set=[*FIELDS, "updated_at"],
)


def fire_waiter(
    locked: LockedChannels, fire: semantics.Fire, now: datetime, source: dict | None, *, into_buffer: bool = False,
) -> None:
    owner = fire.waiter.owner
    for st in locked.states.values():
        st.drop_owner(owner)
    locked.live[owner] = False
    kind, ident = owner
    if kind == "g":
        # Both writes wait for the step's next statement (fixed_sql.defer): no round trip of
        # their own. The UPDATE comes first: it takes the goroutine's row lock (the lock order's
        # last place, after the channels) before its pending cases go.
        nxt = Next(
            fire.waiter.target, fire.waiter.op, channel=fire.channel, value=fire.value, closed=fire.closed,
            source=source if fire.waiter.op == "recv" else None,
        )
        defer(_FIRE_GOROUTINE.statement(
            (ident, GoroutineStatus.BLOCKED, locked.wait_seqs.get(owner)), expect=1,
            conflict=lambda: _suspect(fire.channel), **next_fields(nxt, now), updated_at=now,
        ))
        defer(_DELETE_CASES.statement(ident))
        locked.woken.append(ident)
        by = fired_by(fire.waiter.op, fire.closed, source)
        if hooks.wanted(hooks.SelectFired, by):
            who = locked.owners.get(owner) or {}
            hooks.emit([hooks.SelectFired(
                process_id=who.get("process", ""), goroutine=who.get("goroutine", ""), goroutine_id=ident,
                kind=fire.waiter.op, channel=fire.channel, method=fire.waiter.target, by=by,
                source=nxt.source, closed=fire.closed,
            )])
    else:
        PendingCase.objects.filter(external_send_id=ident).delete()
        if into_buffer:
            ExternalSend.objects.filter(pk=ident).update(status=SendStatus.BUFFERED)
            return
        ExternalSend.objects.filter(pk=ident).update(
            status=SendStatus.CLOSED if fire.closed else SendStatus.RECEIVED,
            delivered_at=now,
            delivered_to=_receiver(source) if source else "",
        )


def fired_by(kind: str, closed: bool, source: dict | None) -> str:
    """Why a case fired, for hooks.SelectFired: the one rule for the step's own select and for
    the waiters a send, a receive or a close fires."""
    if kind == semantics.TIMER:
        return hooks.BY_TIMER
    if kind == semantics.DEFAULT:
        return hooks.BY_DEFAULT
    if closed:
        return hooks.BY_CLOSE
    if isinstance(source, dict) and "external" in source:
        return hooks.BY_EXTERNAL
    return hooks.BY_COUNTERPART


def close(locked: LockedChannels, name: str, now: datetime, source: dict | None) -> bool:
    """Close a locked channel. Returns False if it was already closed (a no-op)."""
    st = locked.states[name]
    if st.closed:
        return False
    read_all_waiters(locked, name)
    decision = decide(locked, lambda: semantics.close_channel(locked.states[name]))
    for fire in decision.fires:
        fire_waiter(locked, fire, now, source)
    st.closed = True
    st.receivers, st.senders = [], []
    Channel.objects.filter(pk=name).update(closed=True, closed_at=now)
    locked.rows[name].closed = True
    return True


def wake_after_commit(locked: LockedChannels) -> None:
    dispatch.after_commit_wake(locked.woken)


def buffer_values(name: str) -> list[Any]:
    return list(BufferedValue.objects.filter(channel_id=name).order_by("seq").values_list("value", flat=True))
