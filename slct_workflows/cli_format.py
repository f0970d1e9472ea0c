"""What `manage.py slct` prints: aligned plain-text tables for people, JSON for scripts.

The JSON keys are those of the REST API's answers (docs/API.md) wherever both show the same
thing, so a script can move between them; they do not change with the table layout.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Sequence

from slct_workflows.models import Channel, Event, ExternalSend, ProcessInstance, ProcessStatus
from slct_workflows.read.selectors import ChannelView, GoroutineView, ago

NONE = "-"


# -- primitives -----------------------------------------------------------------------------------

def dumps(data: Any) -> str:
    """Valid JSON whatever the terminal's encoding (non-ASCII is escaped)."""
    return json.dumps(data, indent=2, allow_nan=False)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def cell(value: Any, width: int = 0) -> str:
    """One line of text, cut to `width` characters (0: no limit)."""
    if value is None or value == "":
        text = NONE
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if not width or len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], widths: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; `widths` caps some of them (0: no cap)."""
    caps = list(widths) + [0] * (len(headers) - len(widths))
    lines = [[cell(v, caps[i]) for i, v in enumerate(row)] for row in rows]
    sizes = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers)]

    def join(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(sizes[i]) for i, v in enumerate(values)).rstrip()

    return "\n".join([join([h.upper() for h in headers]), *(join(line) for line in lines)])


def fields(pairs: Sequence[tuple[str, Any]], width: int = 100) -> str:
    """`name  value` lines, names aligned."""
    size = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(size)}  {cell(value, width)}" for name, value in pairs)


def when(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return NONE
    delta = (now - dt).total_seconds()
    return f"{stamp(dt)} ({ago(delta)} ago)" if delta >= 0 else stamp(dt)


def stamp(dt: datetime) -> str:
    return f"{dt:%Y-%m-%d %H:%M:%S %Z}".rstrip()


def first_line(text: str) -> str:
    """A process error is a message and a traceback: the message is what a list has room for."""
    return text.strip().splitlines()[0] if text and text.strip() else ""


def _error_line(error: str) -> str:
    line = first_line(error)
    return f"{line} (--json for the traceback)" if line and line != error.strip() else line


# -- processes ------------------------------------------------------------------------------------

def process_row(proc: ProcessInstance, waits: list[str]) -> dict[str, Any]:
    return {
        "id": proc.id, "definition": proc.definition, "version": proc.version, "status": proc.status,
        "step_count": proc.step_count, "parent": proc.parent_id, "created_at": iso(proc.created_at),
        "updated_at": iso(proc.updated_at), "finished_at": iso(proc.finished_at), "waits_for": waits,
        "error": proc.error or None,
    }


def process_list(rows: list[dict[str, Any]], now: datetime) -> str:
    if not rows:
        return "No processes."

    def waiting(r: dict[str, Any]) -> str:
        if r["status"] == ProcessStatus.FAILED:
            return f"error: {first_line(r['error'] or '')}"
        return ", ".join(r["waits_for"])

    return table(
        ["id", "workflow", "status", "steps", "updated", "waits for"],
        [[r["id"], r["definition"], r["status"], r["step_count"],
          ago((now - datetime.fromisoformat(r["updated_at"])).total_seconds()) + " ago", waiting(r)] for r in rows],
        widths=[36, 30, 0, 0, 0, 70],
    )


def event_dict(e: Event) -> dict[str, Any]:
    return {
        "seq": e.seq, "kind": e.kind, "goroutine": e.goroutine, "method": e.method, "case": e.case,
        "channel": e.channel, "value": e.value, "source": e.source, "detail": e.detail, "error": e.error,
        "started_at": iso(e.started_at), "finished_at": iso(e.finished_at), "duration_ms": e.duration_ms,
    }


def process_detail(
    proc: ProcessInstance, goroutines: list[GoroutineView], now: datetime, events: list[Event] | None = None,
    events_total: int = 0,
) -> dict[str, Any]:
    out = {
        "id": proc.id, "definition": proc.definition, "version": proc.version, "status": proc.status,
        "input": proc.input, "output": proc.output, "error": proc.error or None, "parent": proc.parent_id,
        "step_count": proc.step_count, "created_at": iso(proc.created_at), "updated_at": iso(proc.updated_at),
        "finished_at": iso(proc.finished_at), "state": proc.state, "result_channel": proc.result_channel,
        "goroutines": [g.as_dict(now) for g in goroutines],
    }
    if events is not None:
        out["events"] = [event_dict(e) for e in events]
        out["events_total"] = events_total
    return out


def process_page(detail: dict[str, Any], now: datetime) -> str:
    def at(key: str) -> str:
        return when(datetime.fromisoformat(detail[key]) if detail[key] else None, now)

    head = fields([
        ("process", detail["id"]),
        ("workflow", detail["definition"] + (f" (version {detail['version']})" if detail["version"] else "")),
        ("status", detail["status"]), ("steps", str(detail["step_count"])),
        ("created", at("created_at")), ("updated", at("updated_at")), ("finished", at("finished_at")),
        ("parent", detail["parent"]), ("input", detail["input"]), ("output", detail["output"]),
        ("state", detail["state"]), ("error", _error_line(detail["error"] or "")),
    ])
    gs = detail["goroutines"]
    parts = [head, "", f"Goroutines ({len(gs)})", table(
        ["name", "status", "waits for"],
        [[g["name"], g["status"], g["waits_for"]] for g in gs],
    )]
    notes = [f"  {g['name']}: {label} {g[key]}" for g in gs
             for key, label in (("paused_reason", "paused:"), ("last_error", "last error:")) if g[key]]
    if notes:
        parts.append("\n".join(cell(n, 160) for n in notes))
    events = detail.get("events")
    if events is not None:
        parts += ["", f"Recent events ({len(events)} of {detail['events_total']})", table(
            ["seq", "kind", "goroutine", "method", "channel", "at", "error"],
            [[e["seq"], e["kind"], e["goroutine"], e["method"], e["channel"],
              stamp(datetime.fromisoformat(e["finished_at"])), first_line(e["error"])]
             for e in events],
            widths=[0, 0, 0, 40, 40, 0, 60],
        )]
    return "\n".join(parts)


# -- channels -------------------------------------------------------------------------------------

def send_dict(record: ExternalSend, repeated: bool) -> dict[str, Any]:
    return {
        "key": record.key, "channel": record.channel, "value": record.value, "status": record.status,
        "created_at": iso(record.created_at), "delivered_at": iso(record.delivered_at),
        "delivered_to": record.delivered_to, "repeated": repeated,
    }


def send_line(sent: dict[str, Any]) -> str:
    what = {
        "delivered": f"delivered to {sent['delivered_to'] or 'a waiting receiver'}",
        "buffered": "buffered until a receiver takes it",
        "waiting": "waiting for a receiver (held until one comes)",
    }.get(sent["status"], sent["status"])
    if sent["repeated"]:
        return (f"key {sent['key']} was already used for this send: nothing new was sent "
                f"(status: {what})")
    return f"sent {cell(sent['value'], 60)} into {sent['channel']}: {what} (key {sent['key']})"


def channel_dict(chan: Channel, view: ChannelView, policy: str, changed: bool) -> dict[str, Any]:
    return {
        "name": chan.name, "capacity": chan.capacity, "closed": chan.closed, "owner": chan.owner, "policy": policy,
        "created_at": iso(chan.created_at), "closed_at": iso(chan.closed_at), "buffer": view.buffer,
        "receivers": view.receivers, "senders": view.senders, "changed": changed,
    }
