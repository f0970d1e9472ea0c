"""A process's history as a picture: an SVG drawn on the server, no JavaScript.

One lane (column) per goroutine, time flowing down; every step is a box in its goroutine's lane,
labelled with the method that ran, the case that fired it and what the goroutine did next. A value
sent by another goroutine (of this or another process, found through `Event.source`) is an arrow
from the sender's step to the receiver's step; sends from outside (admin, REST, Slack) come from an
"outside" lane on the left. Long pauses are folded into a labelled gap so that a process which
waited an hour stays readable.

`render()` is a pure function: event-like objects in (anything with the attributes of
`models.Event`), SVG text out. All text is escaped.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any, Callable, Iterable

GUTTER = 116  # left column with the times
LANE_W = 250
BOX_W = 196
EXT_W = 120  # the narrow "outside" lane
BOX_H = 48
ROW_H = 58
HEADER_H = 58
GAP_H = 22  # extra room for a folded pause
PAD = 14
CHAR_W = 6.3  # average width of an 11px sans-serif character, to clip labels
MIN_GAP = timedelta(seconds=1)

PALETTE = ["#2f6f9f", "#7a4fa3", "#2e8b57", "#b8860b", "#c0504d", "#4b6c8a", "#8b5a2b", "#3a7d7c"]
KIND_FILL = {"error": "#fff1dc", "failed": "#fde2e1", "start": "#e3f4e8"}
KIND_STROKE = {"error": "#d9822b", "failed": "#c62828"}
UNDERLINE = ' text-decoration="underline"'
DASH_43 = ' stroke-dasharray="4 3"'
DASH_53 = ' stroke-dasharray="5 3"'
DASH_54 = ' stroke-dasharray="5 4"'
ISO_RE = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(?:[+-]\d\d:\d\d|Z)?")


@dataclass
class _Lane:
    key: tuple
    label: str
    sub: str = ""
    color: str = "#2f6f9f"
    foreign: bool = False
    x: float = 0
    w: float = LANE_W
    url: str = ""
    rows: list[float] = field(default_factory=list)


@dataclass
class _Box:
    event: Any
    lane: _Lane | None  # None: an operator event drawn across all lanes
    y: float

    @property
    def x(self) -> float:
        return self.lane.x + (self.lane.w - BOX_W) / 2 if self.lane else GUTTER

    @property
    def cx(self) -> float:
        return self.x + BOX_W / 2

    @property
    def cy(self) -> float:
        return self.y + BOX_H / 2


def clip(text: str, width: float) -> str:
    n = max(4, int(width / CHAR_W))
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def short_json(value: Any, limit: int = 400) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_id(pid: str) -> str:
    return pid if len(pid) <= 14 else pid[:12] + "…"


def fmt_gap(delta: timedelta) -> str:
    s = delta.total_seconds()
    if s < 9.95:
        return f"+{s:.1f}s"
    if round(s) < 60:
        return f"+{round(s)}s"
    m, s = divmod(round(s), 60)
    if m < 60:
        return f"+{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"+{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"+{d}d {h}h"


def _source(e: Any) -> dict:
    return e.source if isinstance(e.source, dict) else {}


def _detail(e: Any) -> dict:
    return e.detail if isinstance(e.detail, dict) else {}


def _key(e: Any) -> tuple:
    return (e.process_id, e.seq)


def title_line(e: Any) -> str:
    kind = e.kind
    if kind == "start":
        return "start" + (" (called)" if _source(e).get("process") else "")
    if kind in ("cancel", "retry", "migrate"):
        return {"cancel": "cancelled by operator", "retry": "retried by operator"}.get(kind, kind)
    name = e.method or kind
    if kind == "error":
        return f"{name} (error)"
    if kind == "failed":
        return f"{name} (FAILED)"
    return name


def case_line(e: Any) -> str:
    case = e.case or ""
    if e.kind == "start":
        return "input " + short_json(e.value, 80) if e.value is not None else "no input"
    if case.startswith("recv "):
        return f"← {case} = {short_json(e.value, 80)}"
    if case.startswith("timer"):
        return "timer fired"
    if case == "go":
        who = _source(e).get("goroutine") or "?"
        return f"go (started by {who})"
    if case == "start":
        return "start"
    return case or "—"


def next_line(e: Any) -> str:
    if e.kind in ("error", "failed"):
        return str(e.error or e.kind)
    d = _detail(e)
    parts = []
    nxt = str(d.get("next") or "")
    if nxt == "finish":
        parts.append("■ finished the process")
    elif nxt == "end":
        parts.append("goroutine ended")
    elif nxt.startswith("blocked on "):
        cases = [ISO_RE.sub("", c).strip() for c in nxt[len("blocked on "):].split(", ")]
        parts.append("→ waits: " + " | ".join(cases))
    elif nxt:
        parts.append("→ " + ISO_RE.sub("", nxt).strip())
    if d.get("started"):
        parts.append("+go " + ", ".join(map(str, d["started"])))
    if d.get("called"):
        parts.append("+call")
    return "; ".join(parts)


def tooltip(e: Any) -> str:
    lines = [
        f"#{e.seq} {e.kind} {e.goroutine} {e.method}".strip(),
        f"at {e.started_at.isoformat()}",
    ]
    if e.finished_at and e.started_at:
        lines.append(f"took {(e.finished_at - e.started_at).total_seconds() * 1000:.1f} ms")
    if e.case:
        lines.append(f"case: {e.case}")
    if e.value is not None:
        lines.append(f"value: {short_json(e.value)}")
    if e.source:
        lines.append(f"source: {short_json(e.source)}")
    if e.detail:
        lines.append(f"detail: {short_json(e.detail)}")
    if getattr(e, "error", ""):
        lines.append(f"error: {e.error}")
    if e.process_id:
        lines.append(f"process: {e.process_id}")
    return "\n".join(lines)


class _Drawing:
    def __init__(self, process_id: str, prefix: str) -> None:
        self.process_id = process_id
        self.prefix = prefix
        self.lanes: dict[tuple, _Lane] = {}
        self.parts: list[str] = []

    def lane(self, key: tuple, label: str, sub: str = "", foreign: bool = False) -> _Lane:
        if key not in self.lanes:
            n = sum(1 for k in self.lanes if k[0] != "ext")
            color = "#6b6b6b" if key[0] == "ext" else PALETTE[n % len(PALETTE)]
            self.lanes[key] = _Lane(key, label, sub, color, foreign)
        return self.lanes[key]

    def add(self, svg: str) -> None:
        self.parts.append(svg)


def _eid(e: Any) -> int | None:
    """The row id when there is one: the commit order, even when clocks tie (a frozen test clock)."""
    value = getattr(e, "id", None) or getattr(e, "pk", None)
    return value if isinstance(value, int) else None


def _before(a: Any, b: Any) -> bool:
    """Did step `a` (of another process) happen before step `b`?"""
    ia, ib = _eid(a), _eid(b)
    if ia is not None and ib is not None:
        return ia < ib
    return a.started_at <= b.started_at


def _called(caller: Any, child_pid: str) -> bool:
    called = _detail(caller).get("called") or []
    return child_pid in (called if isinstance(called, list) else [called])


def _find_sender(e: Any, events: list[Any], index: dict[tuple, Any]) -> Any | None:
    """The step that sent `e` its value (or started it): by seq when the source has it; for a called
    process's start, the parent's step that made the call (its `detail.called` names the child); else
    the sender goroutine's latest step before `e`."""
    src = _source(e)
    pid = src.get("process")
    if not pid:
        return None
    if "seq" in src:
        return index.get((pid, src["seq"]))
    g = src.get("goroutine") or None
    if e.kind == "start" and pid != e.process_id:
        # call(): the child's start is written inside the caller's step, before that step's own row,
        # so "the latest step before" would be some other (older) step, often of another goroutine.
        # Without the calling step there is no arrow rather than a wrong one.
        return next((c for c in events if c.process_id == pid and _called(c, e.process_id)), None)
    best = None
    for be in events:
        if be is e or be.process_id != pid or (g and be.goroutine != g):
            continue
        if pid == e.process_id:
            if be.seq >= e.seq:
                continue
        elif not _before(be, e):
            continue
        if best is None or _order(be, pid) > _order(best, pid):
            best = be
    return best


def _order(e: Any, process_id: str) -> tuple:
    eid = _eid(e)
    return (e.started_at, eid if eid is not None else 0, 0 if e.process_id == process_id else 1, e.seq)


class Timeline(str):
    """What `render()` returns: the whole drawing as SVG text (it *is* that string), plus the same
    history cut into windows of at most `per_page` rows, for a page that must stay short however
    long the history.

    pages: `Page`s, oldest first; the last is the newest window, the only one with 'now' (what each
    goroutine waits for). A page shows one of them, chosen by the query parameter `PARAM`: its
    `key` is how many windows back from the newest it is ("0": the newest, the default).
    keys: every page's key.
    """

    pages: list["Page"]
    keys: list[str]

    def page(self, key: str | None) -> "Page":
        """The window a request's `?timeline=` names; the newest when it names none."""
        return next((p for p in self.pages if p.key == key), self.pages[-1])


PARAM = "timeline"


@dataclass
class Page:
    id: str  # element id of the window
    key: str  # the value of ?timeline= that shows it: windows back from the newest
    number: int  # 1 = oldest
    first_row: int  # 1-based rows of the whole drawing
    last_row: int
    seqs: tuple[int, int] | None  # this process's first and last step shown, if any
    svg: str
    height: float
    nav: str = ""  # HTML: where this window is, and links to the older and newer ones
    newest: bool = False


def render(
    events: Iterable[Any],
    *,
    process_id: str,
    related: Iterable[Any] = (),
    waiting: dict[str, str] | None = None,
    statuses: dict[str, str] | None = None,
    prefix: str = "tl",
    omitted: int = 0,
    process_url: Callable[[str], str] | None = None,
    per_page: int | None = None,
) -> Timeline:
    """Draw `events` (one process's history, in any order) as an SVG string (a `Timeline`).

    related: events of other processes that sent to or received from this one (for arrows).
    waiting: goroutine name -> what it waits for now (drawn as a dashed box at the bottom).
    statuses: goroutine name -> status (shown in the lane header; adds lanes with no steps yet).
    prefix: makes element ids unique when several drawings share a page.
    omitted: how many older steps were left out (said in the header).
    process_url: process id -> link for the lanes of other processes.
    per_page: rows per window in `Timeline.pages` (default PER_PAGE).
    """
    prefix = re.sub(r"[^A-Za-z0-9_-]", "", prefix) or "tl"
    per_page = max(1, per_page or PER_PAGE)
    own = [e for e in events]
    seen = {_key(e) for e in own}
    others = []
    for e in related:
        if e.process_id != process_id and _key(e) not in seen:
            seen.add(_key(e))
            others.append(e)
    ordered = _calls_after_callers(sorted(own + others, key=lambda e: _order(e, process_id)))
    index = {_key(e): e for e in ordered}
    senders = {_key(e): _find_sender(e, ordered, index) for e in ordered}
    statuses = dict(statuses or {})
    waiting = dict(waiting or {})
    d = _Drawing(process_id, prefix)

    # Lanes: outside (if anything came from outside), this process's goroutines, then others. The
    # same lanes on every window, so a goroutine keeps its column when paging.
    if any("external" in _source(e) for e in own):
        d.lane(("ext",), "outside", "admin/API/Slack")
    for e in sorted(own, key=lambda e: e.seq):
        if e.goroutine:
            d.lane(("g", process_id, e.goroutine), e.goroutine, statuses.get(e.goroutine, ""))
    for name in [*statuses, *waiting]:
        d.lane(("g", process_id, name), name, statuses.get(name, ""))
    for e in others:
        d.lane(("g", e.process_id, e.goroutine or "?"), e.goroutine or "process",
               f"process {short_id(e.process_id)}", foreign=True)
    if not d.lanes:
        d.lane(("g", process_id, "Main"), "Main", statuses.get("Main", ""))
    x = GUTTER
    for lane in d.lanes.values():
        if lane.key[0] == "ext":
            lane.w = EXT_W
        elif lane.foreign and process_url:
            lane.url = process_url(lane.key[1])
        lane.x = x
        x += lane.w
    last_row = {}  # lane key -> index of its last row in the whole drawing
    for i, e in enumerate(ordered):
        last_row[_lane_key(e, process_id)] = i

    ctx = _Context(process_id, d, senders, waiting, statuses, last_row, {_key(e): i for i, e in enumerate(ordered)})
    full = _draw(ctx, ordered, 0, prefix=prefix, newest=True, omitted=omitted)
    windows = [(max(0, end - per_page), end) for end in range(len(ordered), 0, -per_page)][::-1] or [(0, 0)]
    pages = []
    for n, (a, b) in enumerate(windows, start=1):
        newest = n == len(windows)
        if len(windows) == 1:
            svg, height = full
        else:
            svg, height = _draw(ctx, ordered[a:b], a, prefix=f"{prefix}-p{n}", newest=newest,
                                omitted=omitted if n == 1 else 0)
        seqs = [e.seq for e in ordered[a:b] if e.process_id == process_id]
        pages.append(Page(f"{prefix}-page-{n}", str(len(windows) - n), n, a + 1, b,
                          (min(seqs), max(seqs)) if seqs else None, svg, height, newest=newest))
    for i, p in enumerate(pages):
        p.nav = _nav_html(pages, i, len(ordered), omitted)
    out = Timeline(full[0])
    out.pages = pages
    out.keys = [p.key for p in pages]
    return out


PER_PAGE = 12  # rows per window: at most 12 * (ROW_H + GAP_H) + the header and "now" = about 1,150 px
LABEL_CHAR_W = 7.0  # a generous width of a bold 11px character: arrow labels are kept this clear of boxes
LABEL_MAX = 28  # characters of an arrow's label


@dataclass
class _Context:
    process_id: str
    d: _Drawing
    senders: dict[tuple, Any]
    waiting: dict[str, str]
    statuses: dict[str, str]
    last_row: dict[tuple, int]
    position: dict[tuple, int]  # event key -> its row in the whole drawing


def _lane_key(e: Any, process_id: str) -> tuple | None:
    if e.goroutine or e.process_id != process_id:
        return ("g", e.process_id, e.goroutine or "?")
    return None


def _calls_after_callers(ordered: list[Any]) -> list[Any]:
    """A called process's start is committed inside its caller's step, before that step's own row
    (and at the same instant): draw it right after the step that made the call."""
    starts = [e for e in ordered if e.kind == "start" and _source(e).get("process")
              and _source(e)["process"] != e.process_id and "seq" not in _source(e)]
    for s in starts:
        caller = next((c for c in ordered if c.process_id == _source(s)["process"] and _called(c, s.process_id)), None)
        if caller is None:
            continue
        ordered.remove(s)
        ordered.insert(ordered.index(caller) + 1, s)
    return ordered


def _draw(ctx: _Context, rows: list[Any], offset: int, *, prefix: str, newest: bool, omitted: int
          ) -> tuple[str, float]:
    """One drawing of `rows` (a window of the whole, starting at row `offset`): SVG text, height."""
    process_id, d = ctx.process_id, ctx.d
    lanes = list(d.lanes.values())
    lanes_w = sum(lane.w for lane in lanes)
    waiting = ctx.waiting if newest else {}
    statuses = ctx.statuses

    # Rows: one per event; a pause of a second or more gets a folded gap with its length.
    boxes: list[_Box] = []
    gaps: list[tuple[float, str]] = []
    y = HEADER_H + PAD
    prev: datetime | None = None
    lane_rows: dict[tuple, list[float]] = {}
    for e in rows:
        if prev is not None and e.started_at - prev >= MIN_GAP:
            gaps.append((y + 2, fmt_gap(e.started_at - prev)))
            y += GAP_H
        key = _lane_key(e, process_id)
        lane = d.lanes.get(key) if key else None
        boxes.append(_Box(e, lane, y))
        if lane:
            lane_rows.setdefault(lane.key, []).append(y)
        y += ROW_H
        prev = e.started_at if prev is None else max(prev, e.started_at)
    wait_y = None
    if waiting:
        wait_y = y + GAP_H
        y = wait_y + ROW_H
    height = y + PAD
    index = {_key(b.event): b for b in boxes}

    # Arrows first (not drawn yet): their labels may need room right of the last lane.
    arrows: list[str] = []
    right = GUTTER + lanes_w + PAD
    ext = d.lanes.get(("ext",))
    for b in boxes:
        e = b.event
        src = _source(e)
        if b.lane is None:
            continue
        label = e.channel or ("go" if e.case == "go" else "call" if e.kind == "start" else "")
        if "external" in src and ext is not None and e.process_id == process_id:
            x1, y1 = ext.x + ext.w / 2, b.cy
            spot = _label_spot(label or "send", b, ext)
            arrows.append(
                f'<g class="slct-arrow slct-external"><title>{escape("sent from outside: " + str(src["external"]))}'
                f'</title><circle cx="{x1}" cy="{y1}" r="5" fill="#c25e00"/>'
                f'<line x1="{x1 + 5}" y1="{y1}" x2="{b.x - 2}" y2="{y1}" stroke="#c25e00" stroke-width="1.6" '
                f'marker-end="url(#{prefix}-arrow-ext)"/>'
                + _label_svg(spot, "#c25e00") + "</g>"
            )
            continue
        sender = ctx.senders.get(_key(e))
        if sender is None:
            continue
        skey = _lane_key(sender, process_id)
        slane = d.lanes.get(skey) if skey else None
        if slane is None:
            continue
        dashed = e.case == "go" or e.kind == "start"
        sbox = index.get(_key(sender))
        where = ""
        if sbox is not None:
            path = _arrow_path(sbox, b)
        else:  # the sender is in another window: come in from the top (or bottom) of its lane
            older = ctx.position.get(_key(sender), -1) < offset
            where = " (older window)" if older else " (newer window)"
            path = _stub_path(slane, b, HEADER_H + 2 if older else height - PAD)
        spot = _label_spot(label, b, slane) if label else None
        if spot:
            right = max(right, spot[3] + PAD)
        title = f"{sender.goroutine} #{sender.seq}{where} → {e.goroutine} #{e.seq}" + (f" on {label}" if label else "")
        arrows.append(
            f'<g class="slct-arrow"><title>{escape(title)}</title>'
            f'<path d="{path}" fill="none" stroke="#333" stroke-width="1.5"'
            f"{DASH_54 if dashed else ''} marker-end=\"url(#{prefix}-arrow)\"/>"
            + (_label_svg(spot, "#222") if spot else "")
            + "</g>"
        )
    width = round(right)

    d.parts = []
    add = d.parts.append
    add(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="slct-timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Timeline of process {escape(process_id)}" '
        f'font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="11">'
    )
    add(f"<title>Timeline of process {escape(process_id)}</title>")
    add(
        "<defs>"
        f'<marker id="{prefix}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>'
        f'<marker id="{prefix}-arrow-ext" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c25e00"/></marker>'
        "</defs>"
    )
    add(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')

    # Lane backgrounds, headers, lifelines.
    end_row = offset + len(rows) - 1
    for i, lane in enumerate(lanes):
        fill = "#f7f9fb" if i % 2 == 0 else "#ffffff"
        w, mid = lane.w, lane.x + lane.w / 2
        add(f'<rect class="slct-lane" x="{lane.x}" y="0" width="{w}" height="{height}" fill="{fill}"/>')
        if lane.url:
            add(f'<a href="{escape(lane.url)}" target="_top">')
        add(
            f'<rect x="{lane.x + 6}" y="8" width="{w - 12}" height="{HEADER_H - 16}" rx="6" '
            f'fill="{lane.color}" fill-opacity="{0.08 if lane.foreign else 0.15}" stroke="{lane.color}"'
            f"{DASH_43 if lane.foreign or lane.key[0] == 'ext' else ''}/>"
        )
        add(
            f'<text x="{mid}" y="27" text-anchor="middle" font-size="13" font-weight="bold" '
            f'fill="{lane.color}">{escape(clip(lane.label, w - 20))}</text>'
        )
        if lane.sub:
            add(
                f'<text x="{mid}" y="42" text-anchor="middle" fill="#555"'
                f'{UNDERLINE if lane.url else ""}>{escape(clip(lane.sub, w - 20))}</text>'
            )
        if lane.url:
            add("</a>")
        if lane.key[0] == "g":
            lrows = lane_rows.get(lane.key, [])
            bottom = (max(lrows) + BOX_H) if lrows else HEADER_H
            name = lane.key[2]
            if ctx.last_row.get(lane.key, -1) > end_row:
                bottom = height - PAD  # it goes on in a newer window
            if lane.key[1] == process_id and (name in ctx.waiting or statuses.get(name) in ("runnable", "blocked")):
                bottom = (wait_y + BOX_H) if wait_y else height - PAD
            add(
                f'<line x1="{mid}" y1="{HEADER_H - 8}" x2="{mid}" y2="{bottom}" '
                f'stroke="{lane.color}" stroke-opacity="0.45" stroke-width="2" stroke-dasharray="3 4"/>'
            )

    # Time gutter and folded pauses.
    add('<text x="8" y="27" font-size="12" font-weight="bold" fill="#333">time (UTC)</text>')
    if omitted:
        add(f'<text x="8" y="42" fill="#a33">{omitted} older steps not shown</text>')
    last_day = None
    for b in boxes:
        t = b.event.started_at
        day = t.date()
        label = t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"
        add(f'<text x="8" y="{b.y + 20}" fill="#333" font-family="monospace">{label}</text>')
        if day != last_day:
            add(f'<text x="8" y="{b.y + 34}" fill="#888" font-size="10">{t:%Y-%m-%d}</text>')
            last_day = day
        other = "" if b.event.process_id == process_id else " (other)"
        add(f'<text x="8" y="{b.y + 46}" fill="#aaa" font-size="10">#{b.event.seq}{other}</text>')
    for gy, text in gaps:
        add(
            f'<line x1="4" y1="{gy + 6}" x2="{width - 4}" y2="{gy + 6}" stroke="#999" stroke-dasharray="2 5"/>'
            f'<text x="{GUTTER - 8}" y="{gy + 10}" text-anchor="end" fill="#666" font-style="italic" '
            f'paint-order="stroke" stroke="#fff" stroke-width="4">{escape(text)}</text>'
        )

    # Boxes.
    for b in boxes:
        e = b.event
        tip = f"<title>{escape(tooltip(e))}</title>"
        if b.lane is None:  # operator action across the process
            color = "#8a1c1c" if e.kind == "cancel" else "#1c5a8a"
            add(
                f'<g class="slct-step slct-{escape(e.kind)}">{tip}'
                f'<rect x="{GUTTER}" y="{b.y + 10}" width="{lanes_w}" height="{BOX_H - 20}" rx="4" '
                f'fill="{color}" fill-opacity="0.12" stroke="{color}"/>'
                f'<text x="{GUTTER + 10}" y="{b.y + BOX_H / 2 + 4}" font-weight="bold" fill="{color}">'
                f"{escape(clip(title_line(e) + ' ' + next_line(e), lanes_w - 20))}</text></g>"
            )
            continue
        lane = b.lane
        fill = KIND_FILL.get(e.kind, "#ffffff")
        stroke = KIND_STROKE.get(e.kind, lane.color)
        finished = _detail(e).get("next") == "finish"
        add(
            f'<g class="slct-step slct-{escape(e.kind)}" data-seq="{e.seq}">{tip}'
            f'<rect x="{b.x}" y="{b.y}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{2.5 if finished or e.kind == "failed" else 1.3}"'
            f"{DASH_53 if lane.foreign else ''}/>"
            f'<rect x="{b.x}" y="{b.y}" width="4" height="{BOX_H}" fill="{lane.color}"/>'
            f'<text x="{b.x + 10}" y="{b.y + 15}" font-weight="bold" fill="#111">'
            f"{escape(clip(title_line(e), BOX_W - 16))}</text>"
            f'<text x="{b.x + 10}" y="{b.y + 29}" fill="#333">{escape(clip(case_line(e), BOX_W - 16))}</text>'
            f'<text x="{b.x + 10}" y="{b.y + 42}" fill="{"#a33" if e.kind in ("error", "failed") else "#666"}">'
            f"{escape(clip(next_line(e), BOX_W - 16))}</text></g>"
        )

    d.parts.extend(arrows)

    # What each goroutine waits for now.
    if wait_y is not None:
        add(f'<text x="8" y="{wait_y + 20}" font-weight="bold" fill="#333">now</text>')
        for name, text in waiting.items():
            lane = d.lanes.get(("g", process_id, name))
            if lane is None:
                continue
            x = lane.x + (lane.w - BOX_W) / 2
            words = _wrap(text, BOX_W - 16, 3)
            add(
                f'<g class="slct-waiting"><title>{escape(text)}</title>'
                f'<rect x="{x}" y="{wait_y}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="#fffbe6" '
                f'stroke="{lane.color}" stroke-dasharray="5 3"/>'
                + "".join(
                    f'<text x="{x + 8}" y="{wait_y + 14 + 13 * k}" fill="#5c4a00">{escape(line)}</text>'
                    for k, line in enumerate(words)
                )
                + "</g>"
            )
    add("</svg>")
    svg = "".join(d.parts)
    d.parts = []
    return svg, height


def _label_spot(text: str, b: _Box, sender_lane: _Lane) -> tuple[float, float, str, float, str] | None:
    """Where an arrow's label goes: in the receiver's row (no other step shares a row), just above
    where the arrow comes in, on the sender's side of the box, never over a box.
    Returns (x, baseline y, text-anchor, right edge, clipped text)."""
    y = b.y + 10
    if sender_lane.x < b.lane.x:  # comes in from the left: right-aligned, ending before the box
        x = b.x - 8
        room = x - max(GUTTER, sender_lane.x) - 4
        n = min(LABEL_MAX, int(room / LABEL_CHAR_W))
        if n < 3:
            return None
        text = _clip_chars(text, n)
        return (x, y, "end", x, text)
    # from the right, or from the same lane (the curve bulges right): left-aligned after the box
    x = b.x + BOX_W + (14 if sender_lane is b.lane else 8)
    text = _clip_chars(text, LABEL_MAX)
    return (x, y, "start", x + len(text) * LABEL_CHAR_W, text)


def _clip_chars(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"


def _label_svg(spot: tuple | None, color: str) -> str:
    if not spot:
        return ""
    x, y, anchor, _right, text = spot
    return (
        f'<text class="slct-arrow-label" x="{x}" y="{y}" text-anchor="{anchor}" fill="{color}" font-weight="bold" '
        f'paint-order="stroke" stroke="#fff" stroke-width="4">{escape(text)}</text>'
    )


def _nav_html(pages: list[Page], i: int, rows: int, omitted: int) -> str:
    """Where window `i` is, with links (`?timeline=<key>`) to the older and newer windows."""
    p = pages[i]
    older = pages[i - 1] if i > 0 else None
    newer = pages[i + 1] if i + 1 < len(pages) else None
    nav = []
    if len(pages) > 1:
        span = f"steps #{p.seqs[0]}–#{p.seqs[1]}" if p.seqs else "no step of this process"
        which = "Newest window" if newer is None else f"Window {p.number} of {len(pages)}"
        nav.append(f'<span class="slct-tl-where">{which}: {span} (rows {p.first_row}–{p.last_row} of {rows})</span>')
    if older:
        nav.append(f'<a class="slct-tl-older" href="?{PARAM}={older.key}#slct-timeline">← older</a>')
    if omitted and not older:
        nav.append(f'<span class="slct-muted">{omitted} older steps are not drawn: see the history</span>')
    if newer:
        nav.append(f'<a class="slct-tl-newer" href="?{PARAM}={newer.key}#slct-timeline">newer →</a>')
        nav.append(f'<a class="slct-tl-newest" href="?{PARAM}=0#slct-timeline">newest</a>')
    return f'<p class="slct-tl-nav">{" · ".join(nav)}</p>' if nav else ""


def _wrap(text: str, width: float, lines: int) -> list[str]:
    n = max(8, int(width / CHAR_W))
    out: list[str] = []
    current = ""
    for word in text.replace("`", "").split():
        if current and len(current) + 1 + len(word) > n:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        out.append(current)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = clip(out[-1] + " …", width)
    return [clip(line, width) for line in out]


def _arrow_path(a: _Box, b: _Box) -> str:
    """A curve from step `a` (the sender) to step `b` (the receiver)."""
    if a.lane is b.lane:
        x1, y1 = a.x + BOX_W, a.cy
        x2, y2 = b.x + BOX_W, b.cy
        bulge = x1 + 9
        return f"M{x1},{y1} C{bulge},{y1} {bulge},{y2} {x2 + 1},{y2}"
    if a.lane.x < b.lane.x:
        x1, x2 = a.x + BOX_W, b.x - 1
    else:
        x1, x2 = a.x, b.x + BOX_W + 1
    y1 = a.y + BOX_H - 10
    y2 = b.y + 14
    mx = (x1 + x2) / 2
    return f"M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}"


def _stub_path(lane: _Lane, b: _Box, y1: float) -> str:
    """From the sender's lane at the top (or bottom) edge, when its step is in another window."""
    y2 = b.y + 14
    if lane is b.lane:
        x1 = x2 = b.x + BOX_W + 9
        return f"M{x1},{y1} C{x1},{y2} {x1},{y2} {b.x + BOX_W + 1},{b.cy}"
    x1 = lane.x + lane.w / 2
    x2 = b.x - 1 if lane.x < b.lane.x else b.x + BOX_W + 1
    return f"M{x1},{y1} C{x1},{y2} {x1},{y2} {x2},{y2}"
