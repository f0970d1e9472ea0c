"""Read-side queries shared by the REST API, the admin and Slack: what a process is doing."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import clock
from .models import BufferedValue, Channel, Event, Goroutine, GoroutineStatus, PendingCase, ProcessInstance


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

    def waits_for(self, now: datetime | None = None) -> str:
        """Plain words: "Main waits to receive on `approvals` or 00:59:12 left on a timer, then Main_Done"."""
        now = now or clock.now()
        if self.status == GoroutineStatus.RUNNABLE:
            extra = f" (retry {self.attempts + 1} at {self.retry_at:%H:%M:%S})" if self.retry_at else ""
            return f"{self.name} is ready to run {self.next_method}{extra}"
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
        }


def goroutines(process: ProcessInstance | str) -> list[GoroutineView]:
    pid = process.pk if isinstance(process, ProcessInstance) else process
    views = {
        g.id: GoroutineView(
            id=g.id, name=g.name, status=g.status, next_method=g.next_method,
            attempts=g.attempts, last_error=g.last_error, retry_at=g.retry_at,
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
