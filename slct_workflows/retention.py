"""Retention: finished processes older than SLCT_RETENTION_DAYS go, with what only they used.

A process is finished when it is done, cancelled or failed; its age counts from `finished_at`
(set when it becomes done or cancelled) or, for a failed process (the engine sets no
finished_at on failure), from `updated_at`, its last write: the failing step, or an operator's
later edit. With it go its goroutines, their pending cases, its history, its outbox rows (a
process whose outbox still has a pending side effect waits until that is done or failed), its
Slack messages (their foreign key cascades), and the channels it made (`Channel.owner`) that no
live process uses, with their buffered values, pending cases, external sends and
channel events. Named channels (owner "") are shared and never deleted.

"Uses" is what the database shows: a pending case of a live goroutine on the channel, a live
child answering into it (`result_channel`), or the name in a live process's state or input, a
live goroutine's next value, a value buffered or waiting to be sent in a kept channel, or a
pending outbox call. Live here means running or failed (a failed process may be retried), and
not being deleted. A channel kept for that reason is deleted later, once its owner is gone and
nothing uses it any more (the orphan pass).

Batches are small (`SLCT_RETENTION_BATCH` processes), each its own transaction, oldest first
along the `slct_process_retention` index. Two prunes at once do not collide: the batch's rows
are taken with FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite runs one writer at a time), and every
condition is checked again inside the batch, under those locks.
"""
from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable, TypeVar

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, models, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, TextField
from django.db.models.deletion import Collector
from django.db.models.functions import Cast, Coalesce

from slct_workflows import clock, conf, maintenance
from slct_workflows.models import (
    BufferedValue, CaseKind, Channel, Event, ExternalSend, Goroutine, Outbox, OutboxStatus, PendingCase,
    ProcessInstance, ProcessStatus,
)

log = logging.getLogger("slct_workflows")
T = TypeVar("T")

# The same list, in the same order, as the index's condition: PostgreSQL uses a partial index
# only when it can prove the query's condition implies the index's.
FINISHED = ["done", "cancelled", "failed"]
LIVE = [ProcessStatus.RUNNING, ProcessStatus.FAILED]
# Per maintenance run: bounded, so the leading worker's timer loop (which fires the timers) is
# never held for long: batches until this many seconds have passed, at most this many batches.
MAINTENANCE_SECONDS = 0.5
MAINTENANCE_BATCHES = 4
# While a run leaves work behind (a backlog: the first run on an old database, a busy day), the
# next one comes after this many seconds instead of SLCT_RETENTION_INTERVAL.
BACKLOG_INTERVAL = 5.0
# Names per regular expression when looking for channel names inside values.
NAMES_PER_PATTERN = 100

# A process's rows in these tables are deleted before the process, by plain statements.
DELETED_FIRST = (Outbox, Goroutine, Event)

# What the report calls each table (other models a cascade reaches appear by their label).
TABLES: dict[type, str] = {
    ProcessInstance: "processes", Goroutine: "goroutines", Event: "events", PendingCase: "pending_cases",
    ExternalSend: "external_sends", Outbox: "outbox", BufferedValue: "buffered_values", Channel: "channels",
}


@dataclass
class PruneReport:
    cutoff: datetime | None  # finished before this; None when retention is off
    dry_run: bool
    batches: int = 0
    more: bool = False  # stopped by max_batches or the time limit with processes left to prune
    counts: dict[str, int] = field(default_factory=lambda: {name: 0 for name in TABLES.values()})

    @property
    def disabled(self) -> bool:
        return self.cutoff is None

    @property
    def processes(self) -> int:
        return self.counts["processes"]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, deleted: Iterable[tuple[str, int]]) -> None:
        for name, n in deleted:
            self.counts[name] = self.counts.get(name, 0) + n


def prune(older_than: timedelta | None = None, dry_run: bool = False, batch: int | None = None,
          max_batches: int | None = None, *, seconds: float | None = None) -> PruneReport:
    """Delete finished processes older than `older_than` (default SLCT_RETENTION_DAYS; zero keeps
    everything) in batches of `batch` processes, at most `max_batches` of them and no new one
    after `seconds` (None: until none is left), then one batch of orphaned channels. A dry run
    does the same work in transactions it rolls back, so it reports exactly what would go."""
    if older_than is None:
        older_than = timedelta(days=conf.retention_days())
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    batch = conf.retention_batch() if batch is None else batch
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    if older_than == timedelta(0):
        return PruneReport(cutoff=None, dry_run=dry_run)
    report = PruneReport(cutoff=clock.now() - older_than, dry_run=dry_run)
    after: tuple[datetime, str] | None = None
    started = time.monotonic()
    took = 0.0
    while True:
        if (max_batches is not None and report.batches >= max_batches) or (
                seconds is not None and report.batches and time.monotonic() - started >= seconds):
            report.more = True  # perhaps: the next batch would tell
            break
        if report.batches and connection.vendor == "sqlite":
            # One writer at a time, and waiting writers poll: without a pause the next batch
            # takes the lock again before any step does. Half the time for the steps.
            time.sleep(took)
        began = time.monotonic()
        deleted, last = _retrying(lambda: _prune_batch(report.cutoff, after, batch, dry_run))
        took = time.monotonic() - began
        if last is None:
            break
        report.batches += 1
        report.add(deleted.items())
        after = last
    report.add(_retrying(lambda: _prune_orphans(batch, dry_run)).items())
    return report


def batch_query(cutoff: datetime, size: int, after: tuple[datetime, str] | None = None) -> QuerySet:
    """The next batch: finished before `cutoff`, after the key `after` (the last one seen: a
    dry run deletes nothing, and a process skipped stays skipped), no side effect still owed.
    Rows another prune holds are skipped. (id, ended) pairs, oldest first."""
    qs = ProcessInstance.objects.annotate(ended=Coalesce("finished_at", "updated_at")).filter(
        status__in=FINISHED, ended__lt=cutoff,
    )
    if after is not None:
        # The lower bound alone is what the index scan starts from; the OR settles ties.
        qs = qs.filter(ended__gte=after[0]).filter(Q(ended__gt=after[0]) | Q(ended=after[0], id__gt=after[1]))
    owed = Outbox.objects.filter(process_id=OuterRef("pk"), status=OutboxStatus.PENDING)
    return (
        qs.filter(~Exists(owed)).order_by("ended", "id")
        .select_for_update(skip_locked=True, of=("self",)).values_list("id", "ended")[:size]
    )


def _prune_batch(cutoff: datetime, after: tuple[datetime, str] | None, size: int,
                 dry_run: bool) -> tuple[Counter, tuple[datetime, str] | None]:
    with transaction.atomic():
        rows = list(batch_query(cutoff, size, after))
        if not rows:
            return Counter(), None
        ids = [pid for pid, _ in rows]
        # Their goroutines first, in id order: a step firing a goroutine of a failed process
        # locks that goroutine and then deletes its pending cases; deleting the cases before
        # the goroutine here could deadlock with it.
        list(Goroutine.objects.select_for_update().filter(process_id__in=ids).order_by("id").values_list("id"))
        doomed = _unused(Channel.objects.filter(owner__in=ids), ids)
        deleted = _delete(ids, doomed)
        if dry_run:
            transaction.set_rollback(True)
    last_id, last_ended = rows[-1]
    return deleted, (last_ended, last_id)


def _prune_orphans(size: int, dry_run: bool) -> Counter:
    """Channels kept earlier because something live used them, whose owner is gone since."""
    with transaction.atomic():
        owner_gone = ~Exists(ProcessInstance.objects.filter(pk=OuterRef("owner")))
        doomed = _unused(Channel.objects.exclude(owner="").filter(owner_gone), [], limit=size)
        deleted = _delete([], doomed)
        if dry_run:
            transaction.set_rollback(True)
    return deleted


def _unused(candidates: QuerySet, pruned: list[str], limit: int | None = None) -> list[str]:
    """Lock the candidate channels (name order, as steps lock them; skipping those a step holds
    now: it is using them) and return those nothing live uses."""
    locked = candidates.select_for_update(skip_locked=True).order_by("name").values_list("name", flat=True)
    names = list(locked[:limit] if limit else locked)
    if not names:
        return []
    used = _used(names, pruned)
    return [n for n in names if n not in used]


def _used(names: list[str], pruned: list[str]) -> set[str]:
    live = ProcessInstance.objects.filter(status__in=LIVE).exclude(pk__in=pruned)
    used = set(
        PendingCase.objects.filter(channel_id__in=names, goroutine__process__in=live).values_list("channel_id", flat=True)
    )
    used |= set(live.filter(result_channel__in=names).values_list("result_channel", flat=True))
    rest = [n for n in names if n not in used]
    live_goroutines = Goroutine.objects.filter(process__in=live)
    sources: list[tuple[QuerySet, str]] = [
        (live, "state"), (live, "input"), (live_goroutines, "next_value"),
        (Outbox.objects.filter(status=OutboxStatus.PENDING), "args"),
        (Outbox.objects.filter(status=OutboxStatus.PENDING), "kwargs"),
        # Values in transit, in channels that stay.
        (BufferedValue.objects.exclude(channel_id__in=names), "value"),
        (_live_sends().exclude(channel_id__in=names), "value"),
    ]
    found = _mentioned(rest, sources)
    # A kept channel's own values can carry the name of another candidate: keep that one too.
    while found:
        used |= found
        rest = [n for n in rest if n not in found]
        kept = list(found)
        found = _mentioned(rest, [
            (BufferedValue.objects.filter(channel_id__in=kept), "value"),
            (_live_sends().filter(channel_id__in=kept), "value"),
        ])
    return used


def _live_sends() -> QuerySet:
    """Values waiting to be sent: by a live goroutine, or from outside (an external send)."""
    return PendingCase.objects.filter(kind=CaseKind.SEND).filter(
        Q(goroutine__isnull=True) | Q(goroutine__process__status__in=LIVE)
    )


def _mentioned(names: list[str], sources: list[tuple[QuerySet, str]]) -> set[str]:
    """The names that appear in the JSON text of a column of the sources, looked for in one
    statement per group of names (one snapshot: a value moving from one place to another is
    seen in one of them). A plain substring: a longer name containing it keeps it too."""
    found: set[str] = set()
    for start in range(0, len(names), NAMES_PER_PATTERN):
        group = names[start:start + NAMES_PER_PATTERN]
        pattern = "|".join(re.escape(n) for n in group)
        texts = [
            qs.annotate(_text=Cast(column, TextField())).filter(_text__regex=pattern).order_by().values_list("_text")
            for qs, column in sources
        ]
        matched = [t for (t,) in texts[0].union(*texts[1:], all=True)] if len(texts) > 1 else [t for (t,) in texts[0]]
        found |= {n for n in group if any(n in t for t in matched)}
    return found


def _delete(ids: list[str], channels: list[str]) -> Counter:
    counts: Counter = Counter()

    def count(result: tuple[int, dict[str, int]]) -> None:
        for label, n in result[1].items():
            counts[_name(apps.get_model(label))] += n

    if ids:
        # The engine's own tables (DELETED_FIRST, and the goroutines' pending cases) by plain
        # DELETE ... WHERE statements: delete() would fetch every goroutine and delete 100 rows a
        # statement (most of a batch's time went there). None of these models has delete
        # signals. The outbox explicitly: its foreign key would only set NULL.
        for rows in (Outbox.objects.filter(process_id__in=ids),
                     PendingCase.objects.filter(goroutine__process_id__in=ids),
                     Goroutine.objects.filter(process_id__in=ids),
                     Event.objects.filter(process_id__in=ids)):
            counts[_name(rows.model)] += rows._raw_delete(rows.db)
    if channels:
        count(ExternalSend.objects.filter(channel__in=channels).delete())
        count(Event.objects.filter(process__isnull=True, channel__in=channels).delete())
        count(Channel.objects.filter(name__in=channels).delete())
    if ids:
        _delete_processes(ids, counts, count)
    return counts


def _delete_processes(ids: list[str], counts: Counter, count: Callable) -> None:
    """Whatever else points at a process, as its foreign key says (Slack messages cascade,
    children keep running with no parent), one statement per relation where the ORM allows."""
    processes = ProcessInstance.objects.filter(pk__in=ids)
    relations = ProcessInstance._meta.related_objects
    if any(r.on_delete not in (models.CASCADE, models.SET_NULL) for r in relations):
        count(processes.delete())  # PROTECT, RESTRICT, ...: the ORM's own rules
        return
    for rel in relations:
        if rel.related_model in DELETED_FIRST:
            continue
        rows = rel.related_model._base_manager.filter(**{f"{rel.field.name}__in": ids})
        if rel.on_delete is models.SET_NULL:
            rows.update(**{rel.field.name: None})
        elif Collector(using=rows.db, origin=processes).can_fast_delete(rows):
            counts[_name(rows.model)] += rows._raw_delete(rows.db)
        else:
            count(rows.delete())
    counts[_name(ProcessInstance)] += processes._raw_delete(processes.db)


def _name(model: type) -> str:
    return TABLES.get(model, model._meta.label)


def _retrying(func: Callable[[], T], attempts: int = 5) -> T:
    """Run a batch again if it lost a race (a deadlock, a serialization failure, SQLite busy)."""
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except DatabaseError as exc:
            if attempt == attempts or not _lost_race(exc):
                raise
            log.info("retention: retrying a batch after %s", exc)
            time.sleep(0.05 * attempt * random.random())
    raise AssertionError("unreachable")


def _lost_race(exc: DatabaseError) -> bool:
    code = getattr(exc.__cause__, "sqlstate", None) or getattr(exc.__cause__, "pgcode", None)
    return code in ("40P01", "40001", "55P03") or "database is locked" in str(exc)


_backlog = False  # the last run stopped with work left


def _interval() -> float:
    # Read by the maintenance runner before each run: its value sets when the next one comes.
    try:
        every = conf.retention_interval()
    except ImproperlyConfigured as exc:
        # A bad setting must not stop the timer loop's other tasks: the task itself then fails
        # (reading the same settings), and the maintenance runner logs that.
        log.error("retention: %s; running at the default interval", exc)
        return 3600.0
    return min(every, BACKLOG_INTERVAL) if _backlog and every > 0 else every


@maintenance.task("retention", every=_interval)
def prune_some() -> int:
    """A few batches per run on the leading worker (again after BACKLOG_INTERVAL while work is
    left); the processes deleted."""
    global _backlog
    conf.retention_interval()  # a bad value fails here, logged by the maintenance runner
    report = prune(dry_run=False, max_batches=MAINTENANCE_BATCHES, seconds=MAINTENANCE_SECONDS)
    _backlog = report.more
    if report.total:
        log.info("retention: deleted %s", ", ".join(f"{n} {name}" for name, n in report.counts.items() if n))
    return report.processes
