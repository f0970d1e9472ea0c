"""Read-side queries shared by the REST API, the admin and Slack: what a process is doing."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slct_workflows import clock
from slct_workflows.models import (
    BufferedValue,
    Channel,
    Event,
    Goroutine,
    GoroutineStatus,
    PendingCase,
    ProcessInstance,
)


@dataclass
class CaseView:
    kind: str  # recv | send | timer
    channel: str | None
    deadline: datetime | None
    target: str
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.kind, "channel": self.channel,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "target": self.target, **({"value": self.value} if self.kind == "send" else {}),
        }


@dataclass
class GoroutineView:
    id: int
    name: str
    status: str
    next_method: str
    cases: list[CaseView] = field(default_factory=list)
    attempts: int = 0
    last_error: str = ""
    retry_at: datetime | None = None
    paused_reason: str = ""  # why the runaway guard paused it (status paused)

    def waits_for(self, now: datetime | None = None) -> str:
        """Plain words: "Main waits to receive on `approvals` or 00:59:12 left on a timer, then Main_Done"."""
        now = now or clock.now()
        if self.status == GoroutineStatus.RUNNABLE:
            extra = f" (retry {self.attempts + 1} at {self.retry_at:%H:%M:%S})" if self.retry_at else ""
            return f"{self.name} is ready to run {self.next_method}{extra}"
        if self.status == GoroutineStatus.PAUSED:
            return f"{self.name} is paused by the runaway guard before {self.next_method}: resume it to go on"
        if self.status != GoroutineStatus.BLOCKED:
            return f"{self.name} is {self.status}"
        parts = []
        for c in self.cases:
            if c.kind == "recv":
                parts.append(f"to receive on `{c.channel}`, then {c.target}")
            elif c.kind == "send":
                parts.append(f"to send on `{c.channel}`, then {c.target}")
            else:
                left = (c.deadline - now).total_seconds() if c.deadline else 0
                if left > 0:
                    h, rem = divmod(int(left), 3600)
                    m, s = divmod(rem, 60)
                    parts.append(f"{h:02d}:{m:02d}:{s:02d} left on a timer, then {c.target}")
                else:
                    parts.append(f"a timer that is due (overdue by {int(-left)}s), then {c.target}")
        return f"{self.name} waits " + " or ".join(parts)

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "status": self.status, "next_method": self.next_method or None,
            "waits_for": self.waits_for(now), "pending_cases": [c.as_dict() for c in self.cases],
            "attempts": self.attempts, "last_error": self.last_error or None,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "paused_reason": self.paused_reason or None,
        }


def goroutines(process: ProcessInstance | str) -> list[GoroutineView]:
    pid = process.pk if isinstance(process, ProcessInstance) else process
    views = {
        g.id: GoroutineView(
            id=g.id, name=g.name, status=g.status, next_method=g.next_method,
            attempts=g.attempts, last_error=g.last_error, retry_at=g.retry_at, paused_reason=g.paused_reason,
        )
        for g in Goroutine.objects.filter(process_id=pid).order_by("id")
    }
    for c in PendingCase.objects.filter(goroutine_id__in=views).order_by("goroutine_id", "case_index"):
        views[c.goroutine_id].cases.append(CaseView(c.kind, c.channel_id, c.deadline, c.target, c.value))
    return list(views.values())


def history(process: ProcessInstance | str) -> list[Event]:
    pid = process.pk if isinstance(process, ProcessInstance) else process
    return list(Event.objects.filter(process_id=pid).order_by("seq", "id"))


@dataclass
class ChannelView:
    name: str
    capacity: int
    closed: bool
    buffer: list[Any]
    receivers: list[dict[str, Any]]
    senders: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def channel(chan: Channel) -> ChannelView:
    buffer = list(BufferedValue.objects.filter(channel=chan).order_by("seq").values_list("value", flat=True))
    receivers, senders = [], []
    pending = PendingCase.objects.filter(channel=chan, kind__in=["recv", "send"]).select_related("goroutine").order_by("id")
    for c in pending:
        if c.goroutine_id:
            who = {"process": c.goroutine.process_id, "goroutine": c.goroutine.name, "target": c.target}
        else:
            who = {"external_send": c.external_send_id}
        if c.kind == "send":
            who["value"] = c.value
            senders.append(who)
        else:
            receivers.append(who)
    return ChannelView(chan.name, chan.capacity, chan.closed, buffer, receivers, senders)


def recent_deliveries(chan: Channel | str, limit: int = 50) -> list[Event]:
    name = chan.name if isinstance(chan, Channel) else chan
    return list(Event.objects.filter(channel=name).order_by("-id")[:limit])


# -- REST API lists (appended for slct_workflows.api) -------------------------------------------

def processes(
    *, definition: str | None = None, statuses: list[str] | None = None, created_after: datetime | None = None,
    created_before: datetime | None = None, search: str | None = None,
):
    """Processes, newest first, filtered by definition, statuses, a created range [after, before)
    and part of the id."""
    qs = ProcessInstance.objects.all()
    if definition:
        qs = qs.filter(definition=definition)
    if statuses:
        qs = qs.filter(status__in=list(statuses))
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    if search:
        qs = qs.filter(id__icontains=search)
    return qs.order_by("-created_at", "-id")


def history_events(process: ProcessInstance | str):
    """The process's events in order, as a queryset (to paginate)."""
    pid = process.pk if isinstance(process, ProcessInstance) else process
    return Event.objects.filter(process_id=pid).order_by("seq", "id")


def channels(*, closed: bool | None = None, search: str | None = None):
    """Channels by name, optionally only open or closed ones, or names containing `search`."""
    qs = Channel.objects.all()
    if closed is not None:
        qs = qs.filter(closed=closed)
    if search:
        qs = qs.filter(name__icontains=search)
    return qs.order_by("name")


# -- admin: what a process touches, who talked to it, the operator's dashboard -----------------

def process_channels(process: ProcessInstance | str) -> list[Channel]:
    """Channels a process waits on, has used (history) or answers its parent on; existing ones only."""
    proc = process if isinstance(process, ProcessInstance) else ProcessInstance.objects.filter(pk=process).first()
    if proc is None:
        return []
    names = set(
        PendingCase.objects.filter(goroutine__process_id=proc.pk, channel__isnull=False)
        .values_list("channel_id", flat=True)
    )
    names |= set(Event.objects.filter(process_id=proc.pk).exclude(channel="").values_list("channel", flat=True))
    if proc.result_channel:
        names.add(proc.result_channel)
    return list(Channel.objects.filter(name__in=names).order_by("name"))


def related_events(events: list[Event], process_id: str, limit: int = 200) -> list[Event]:
    """Steps of *other* processes that sent a value (or started) one of `events`, or that received
    from this process: the far ends of the timeline's cross-process arrows. A few queries, however
    many events: one per other process named by seq, one per sending goroutine, one for receivers."""
    out: dict[int, Event] = {}
    wanted_seq: dict[str, set[int]] = {}
    latest_before: dict[tuple[str, str], list[int]] = {}  # (process, goroutine) -> receiving event ids
    for e in events:
        src = e.source if isinstance(e.source, dict) else {}
        pid = src.get("process")
        if not pid or pid == process_id:
            continue
        if "seq" in src:
            wanted_seq.setdefault(pid, set()).add(src["seq"])
        elif e.pk is not None:
            latest_before.setdefault((pid, src.get("goroutine") or ""), []).append(e.pk)
    for pid, seqs in wanted_seq.items():
        for found in Event.objects.filter(process_id=pid, seq__in=sorted(seqs)[:limit]):
            out[found.pk] = found
    for (pid, goroutine), ids in latest_before.items():
        # The sender's latest step before each receive; ids follow commit order (clocks may tie).
        qs = Event.objects.filter(process_id=pid, id__lt=max(ids))
        if goroutine:
            qs = qs.filter(goroutine=goroutine)
        candidates = list(qs.order_by("-id")[:limit])
        for rid in ids:
            found = next((c for c in candidates if c.pk < rid), None)
            if found is not None:
                out[found.pk] = found
    for found in Event.objects.filter(source__process=process_id).exclude(process_id=process_id).exclude(
        process_id__isnull=True
    ).order_by("-id")[:limit]:
        out[found.pk] = found
    return sorted(out.values(), key=lambda e: e.pk)


@dataclass
class Dashboard:
    by_definition: list[dict[str, Any]]  # {"definition", "running", "failed", "done", "cancelled", "total"}
    status_totals: dict[str, int]
    waiting_by_channel: list[dict[str, Any]]  # {"channel", "receivers", "senders", "external_senders"}
    failed: list[ProcessInstance]
    failed_count: int
    overdue_timers: list[PendingCase]
    overdue_count: int
    runnable_count: int
    oldest_runnable: datetime | None
    retrying_count: int
    paused: list[Goroutine] = field(default_factory=list)  # paused by the runaway guard, oldest first
    paused_count: int = 0


def paused_goroutines(process: ProcessInstance | str | None = None):
    """Goroutines the runaway guard paused, in running processes, oldest pause first."""
    from slct_workflows.models import ProcessStatus

    qs = Goroutine.objects.filter(status=GoroutineStatus.PAUSED, process__status=ProcessStatus.RUNNING)
    if process is not None:
        qs = qs.filter(process_id=process.pk if isinstance(process, ProcessInstance) else process)
    return qs.select_related("process").order_by("updated_at", "id")


def overdue_timer_cases(now: datetime):
    """Timer cases of blocked goroutines whose deadline has passed: what the dashboard and the
    metrics call overdue (the engine's due-timers query)."""
    return PendingCase.objects.due_timers(now)


def dashboard(now: datetime | None = None, limit: int = 50) -> Dashboard:
    from django.db.models import Case, Count, Min, Value, When

    from slct_workflows.models import ProcessStatus

    now = now or clock.now()
    statuses = [s for s, _ in ProcessStatus.choices]
    rows: dict[str, dict[str, Any]] = {}
    totals = {s: 0 for s in statuses}
    for r in ProcessInstance.objects.values("definition", "status").annotate(n=Count("id")).order_by("definition"):
        row = rows.setdefault(r["definition"], {"definition": r["definition"], **{s: 0 for s in statuses}, "total": 0})
        row[r["status"]] = row.get(r["status"], 0) + r["n"]
        row["total"] += r["n"]
        totals[r["status"]] = totals.get(r["status"], 0) + r["n"]
    waiting: dict[str, dict[str, Any]] = {}
    for r in (
        PendingCase.objects.filter(kind__in=["recv", "send"], channel__isnull=False)
        .filter(_really_waiting_q())
        .annotate(external=Case(When(external_send__isnull=False, then=Value(1)), default=Value(0)))
        .values("channel_id", "kind", "external").annotate(n=Count("id"))
    ):
        w = waiting.setdefault(
            r["channel_id"], {"channel": r["channel_id"], "receivers": 0, "senders": 0, "external_senders": 0}
        )
        if r["external"]:
            w["external_senders"] += r["n"]
        elif r["kind"] == "recv":
            w["receivers"] += r["n"]
        else:
            w["senders"] += r["n"]
    overdue = overdue_timer_cases(now)
    runnable = Goroutine.objects.filter(status=GoroutineStatus.RUNNABLE, process__status=ProcessStatus.RUNNING)
    failed = ProcessInstance.objects.filter(status=ProcessStatus.FAILED)
    paused = paused_goroutines()
    return Dashboard(
        by_definition=list(rows.values()),
        status_totals=totals,
        waiting_by_channel=sorted(
            waiting.values(), key=lambda w: (-(w["receivers"] + w["senders"] + w["external_senders"]), w["channel"])
        ),
        failed=list(failed.order_by("-updated_at")[:limit]),
        failed_count=failed.count(),
        overdue_timers=list(overdue.select_related("goroutine", "goroutine__process").order_by("deadline", "id")[:limit]),
        overdue_count=overdue.count(),
        runnable_count=runnable.count(),
        oldest_runnable=runnable.aggregate(m=Min("runnable_since"))["m"],
        retrying_count=runnable.filter(retry_at__isnull=False).count(),
        paused=list(paused[:limit]),
        paused_count=paused.count(),
    )


def _really_waiting_q():
    """Pending cases that really wait: of a blocked goroutine, or an external send left waiting."""
    from django.db.models import Q

    return Q(goroutine__status=GoroutineStatus.BLOCKED) | Q(goroutine__isnull=True, external_send__isnull=False)


# -- what a channel *is* to the admin: a child's result, a Slack question, a state field ---------
#
# slct_workflows knows nothing of the apps built on it; an app that owns some channels (Slack: a
# question's reply channel) registers a describer from its AppConfig.ready():
#
#     selectors.register_channel_describer("question", describe, names=open_reply_channels)
#
# `describe(names)` returns {channel name: ChannelRole} for the names it owns; `names()` returns a
# queryset (or list) of the channel names it owns that something may wait on (the list filter).

@dataclass
class ChannelRole:
    kind: str  # "channel" | "child" | "question"
    words: str  # "child process expense 86c07…", "approval “Approve?” in #finance", "`answers`"
    short: str  # a few words for the process list: "child expense", "question “Approve?”"
    url: str = ""  # where the counterpart is shown in the admin (child process, Slack message)
    process_id: str = ""  # the child, for kind "child"
    field: str = ""  # the state field holding the channel's name, for generated names


_DESCRIBERS: dict[str, tuple[Any, Any]] = {}

GENERATED_CHANNEL = __import__("re").compile(r"^chan-[0-9a-f]{32}$")


def register_channel_describer(kind: str, describe, names=None) -> None:
    """Register (or replace) the describer of the channels of one kind (see above)."""
    _DESCRIBERS[kind] = (describe, names)


def described_channel_names(kind: str):
    """The channel names the describer of `kind` owns (for a filter), or None if none is registered."""
    entry = _DESCRIBERS.get(kind)
    if entry is None or entry[1] is None:
        return None
    return entry[1]()


def short_id(value: str, keep: int = 8) -> str:
    return value if len(value) <= keep + 1 else value[:keep] + "…"


def channel_roles(names, states: dict[str, Any] | None = None) -> dict[str, ChannelRole]:
    """What each channel of `names` is: the result channel of a child process, a channel another
    app described (a Slack question), or a plain channel (labelled by the state field that holds
    its name when the name was generated by make_chan). `states` is {process id: state} of the
    processes whose fields may hold the names."""
    from django.urls import NoReverseMatch, reverse

    names = {n for n in names if n}
    roles: dict[str, ChannelRole] = {}
    if not names:
        return roles
    for child in ProcessInstance.objects.filter(result_channel__in=names).only("id", "definition", "result_channel"):
        try:
            url = reverse("admin:slct_workflows_processinstance_change", args=[child.pk])
        except NoReverseMatch:  # pragma: no cover - admin not mounted
            url = ""
        roles[child.result_channel] = ChannelRole(
            kind="child", words=f"child process {child.definition} {short_id(child.pk)}",
            short=f"child {child.definition}", url=url, process_id=child.pk,
        )
    rest = names - set(roles)
    for kind, (describe, _names) in _DESCRIBERS.items():
        if not rest:
            break
        try:
            found = describe(sorted(rest)) or {}
        except Exception:  # a describer must never break the admin page
            found = {}
        for name, role in found.items():
            if name in rest:
                roles[name] = role
        rest -= set(found)
    fields: dict[str, str] = {}
    for state in (states or {}).values():
        if isinstance(state, dict):
            for key, value in state.items():
                if isinstance(value, str) and value in rest:
                    fields.setdefault(value, key)
    for name in rest:
        field_name = fields.get(name, "")
        if field_name and GENERATED_CHANNEL.match(name):
            roles[name] = ChannelRole(kind="channel", words=f"`{name}` (state.{field_name})",
                                      short=field_name, field=field_name)
        else:
            roles[name] = ChannelRole(kind="channel", words=f"`{name}`", short=name)
    return roles


def ago(seconds: float) -> str:
    """"12 s", "3 min", "2 h 05 min", "4 days": how long, in words an operator reads at a glance."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    return f"{h // 24} days"


def blocked_since(process: ProcessInstance | str) -> dict[int, datetime]:
    """{goroutine id: when it blocked} for the process's blocked goroutines (its oldest pending case)."""
    from django.db.models import Min

    pid = process.pk if isinstance(process, ProcessInstance) else process
    rows = (
        PendingCase.objects.filter(goroutine__process_id=pid, goroutine__status=GoroutineStatus.BLOCKED)
        .values("goroutine_id").annotate(since=Min("created_at"))
    )
    return {r["goroutine_id"]: r["since"] for r in rows}


def describe_cases(view: GoroutineView, roles: dict[str, ChannelRole], now: datetime | None = None) -> list[dict[str, Any]]:
    """Each case of a blocked goroutine as {"kind", "words", "short", "url", "target"}; kind is
    child | question | channel | timer (what the process list filters on)."""
    now = now or clock.now()
    out = []
    for c in view.cases:
        if c.kind == "timer":
            left = (c.deadline - now).total_seconds() if c.deadline else 0
            words = f"a timer ({ago(left)} left)" if left > 0 else f"a timer that is due (overdue by {ago(-left)})"
            out.append({"kind": "timer", "words": words, "short": "timer", "url": "", "target": c.target,
                        "deadline": c.deadline})
            continue
        role = roles.get(c.channel) or ChannelRole(kind="channel", words=f"`{c.channel}`", short=c.channel or "")
        if role.kind == "child" and c.kind == "recv":
            words = f"{role.words} to finish"
        elif role.kind == "question" and c.kind == "recv":
            words = f"an answer to {role.words}"
        else:
            words = f"to {'receive on' if c.kind == 'recv' else 'send on'} {role.words}"
        short = role.short if role.kind != "channel" else f"{c.kind} {role.short}"
        out.append({"kind": role.kind, "words": words, "short": short, "url": role.url, "target": c.target,
                    "channel": c.channel})
    return out


def waiting_summary(procs, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """For a page of the process list: {process id: {"items": [{"kind", "short", "url", "channel"}],
    "since": oldest block}} in a fixed number of queries, however many processes."""
    from slct_workflows.models import ProcessStatus

    now = now or clock.now()
    procs = [p for p in procs if p.status == ProcessStatus.RUNNING]
    out: dict[str, dict[str, Any]] = {p.pk: {"items": [], "since": None} for p in procs}
    if not procs:
        return out
    gs = list(
        Goroutine.objects.filter(process_id__in=out, status__in=[
            GoroutineStatus.BLOCKED, GoroutineStatus.RUNNABLE, GoroutineStatus.PAUSED, GoroutineStatus.FAILED,
        ]).order_by("process_id", "id").values("id", "process_id", "name", "status")
    )
    cases = list(
        PendingCase.objects.filter(goroutine_id__in=[g["id"] for g in gs], goroutine__status=GoroutineStatus.BLOCKED)
        .order_by("goroutine_id", "case_index").values("goroutine_id", "kind", "channel_id", "deadline", "created_at")
    )
    roles = channel_roles({c["channel_id"] for c in cases if c["channel_id"]}, {p.pk: p.state for p in procs})
    by_g: dict[int, list[dict[str, Any]]] = {}
    for c in cases:
        by_g.setdefault(c["goroutine_id"], []).append(c)
    for g in gs:
        entry = out[g["process_id"]]
        if g["status"] != GoroutineStatus.BLOCKED:
            words = {"runnable": "ready to run", "paused": "paused", "failed": "failed"}[g["status"]]
            entry["items"].append({"kind": g["status"], "short": f"{g['name']} {words}", "url": "", "channel": ""})
            continue
        for c in by_g.get(g["id"], []):
            if entry["since"] is None or c["created_at"] < entry["since"]:
                entry["since"] = c["created_at"]
            if c["kind"] == "timer":
                left = (c["deadline"] - now).total_seconds() if c["deadline"] else 0
                short = f"timer {ago(left)}" if left > 0 else "timer (due)"
                entry["items"].append({"kind": "timer", "short": short, "url": "", "channel": ""})
                continue
            role = roles.get(c["channel_id"])
            if role is None or role.kind == "channel" or c["kind"] != "recv":
                label = role.short if role is not None else c["channel_id"]
                entry["items"].append({"kind": "channel", "short": f"{c['kind']} {label}", "url": "",
                                       "channel": c["channel_id"]})
            else:
                entry["items"].append({"kind": role.kind, "short": role.short, "url": role.url,
                                       "channel": c["channel_id"]})
    for entry in out.values():  # one mention of each thing, in order
        seen, items = set(), []
        for it in entry["items"]:
            key = (it["kind"], it["short"])
            if key not in seen:
                seen.add(key)
                items.append(it)
        entry["items"] = items
    return out
