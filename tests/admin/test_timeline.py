"""The timeline drawing: a pure function of events, checked without a database (but for the last
tests, which render the process page of a long process)."""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from slct_workflows.read import timeline

NS = {"s": "http://www.w3.org/2000/svg"}
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def ev(seq, goroutine, method="", case="", *, pid="p1", kind="step", t=None, value=None, source=None, detail=None,
       error="", id=None):
    t = t or T0 + timedelta(milliseconds=10 * seq)
    head, _, rest = case.removesuffix(" (closed)").partition(" ")
    channel = rest if head in ("recv", "send") else ""  # as the engine stores it beside the case
    return SimpleNamespace(
        process_id=pid, seq=seq, kind=kind, goroutine=goroutine, method=method, case=case, channel=channel, value=value,
        source=source, detail=detail, error=error, started_at=t, finished_at=t + timedelta(milliseconds=3), id=id,
    )


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def steps(root) -> list[ET.Element]:
    return root.findall(".//s:g[@class]", NS)


def by_class(root, cls: str) -> list[ET.Element]:
    return [g for g in root.iter("{http://www.w3.org/2000/svg}g") if cls in (g.get("class") or "").split()]


def texts(el) -> list[str]:
    return ["".join(t.itertext()) for t in el.iter("{http://www.w3.org/2000/svg}text")]


def reminder_history():
    return [
        ev(1, "Main", kind="start", value={"every": 60}),
        ev(2, "Main", "Main_Start", "start", detail={"next": "blocked on recv answers", "started": ["Reminder"]}),
        ev(3, "Reminder", "Reminder_Start", "go", source={"process": "p1", "goroutine": "Main"},
           detail={"next": "blocked on timer 2024-05-01T12:01:00+00:00"}),
        ev(4, "Reminder", "Reminder_Nudge", "timer 2024-05-01T12:01:00+00:00", t=T0 + timedelta(minutes=1),
           source={"timer": "x"}, detail={"next": "fired default"}),
        ev(5, "Main", "Main_Answered", "recv answers", t=T0 + timedelta(minutes=2), value="yes",
           source={"external": "admin-abc"}, detail={"next": "finish"}),
    ]


def test_one_box_per_step_in_its_goroutines_lane_with_method_and_case():
    root = parse(timeline.render(reminder_history(), process_id="p1"))
    boxes = by_class(root, "slct-step")
    assert [b.get("data-seq") for b in boxes] == ["1", "2", "3", "4", "5"]
    # Lanes: outside (something came from outside), Main, Reminder - in that order, left to right.
    headers = [t for t in texts(root) if t in ("outside", "Main", "Reminder")]
    assert headers[:3] == ["outside", "Main", "Reminder"]
    x_of = {b.get("data-seq"): float(b.find("s:rect", NS).get("x")) for b in boxes}
    assert x_of["2"] == x_of["5"] < x_of["3"] == x_of["4"]  # Main's steps left of Reminder's
    y_of = {b.get("data-seq"): float(b.find("s:rect", NS).get("y")) for b in boxes}
    assert y_of["1"] < y_of["2"] < y_of["3"] < y_of["4"] < y_of["5"]  # time flows down
    label = texts(boxes[4])
    assert label[0] == "Main_Answered"
    assert label[1] == '← recv answers = "yes"'
    assert label[2] == "■ finished the process"
    assert texts(boxes[3])[1] == "timer fired"


def test_long_pause_is_folded_and_labelled():
    root = parse(timeline.render(reminder_history(), process_id="p1"))
    gaps = [t for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("font-style") == "italic"]
    # 12:00:00.03 -> 12:01:00 and 12:01:00 -> 12:02:00; the millisecond steps are not gaps.
    assert [g.text for g in gaps] == ["+1m 00s", "+1m 00s"]
    assert timeline.fmt_gap(timedelta(seconds=2.5)) == "+2.5s"
    assert timeline.fmt_gap(timedelta(hours=3, minutes=4)) == "+3h 04m"
    assert timeline.fmt_gap(timedelta(days=3, hours=1)) == "+3d 1h"


def test_arrows_go_from_sender_step_to_receiver_step():
    events = [
        ev(1, "Main", "Main_Start", "start", detail={"next": "blocked on send ch", "started": ["Worker"]}),
        ev(2, "Worker", "Worker_Start", "go", source={"process": "p1", "goroutine": "Main"}),
        ev(3, "Worker", "Worker_Got", "recv ch", value=7, source={"process": "p1", "goroutine": "Main"}),
        ev(4, "Main", "Main_Sent", "send ch"),
    ]
    root = parse(timeline.render(events, process_id="p1"))
    arrows = by_class(root, "slct-arrow")
    titles = ["".join(a.find("s:title", NS).itertext()) for a in arrows]
    # The go arrow from Main's step 1, and the value's arrow from step 1 (the blocked send) too.
    assert titles == ["Main #1 → Worker #2 on go", "Main #1 → Worker #3 on ch"]
    assert "stroke-dasharray" in ET.tostring(arrows[0].find("s:path", NS)).decode()  # go: dashed
    assert "ch" in texts(arrows[1])


def test_cross_process_arrows_use_the_related_events():
    ours = [
        ev(1, "Main", kind="start"),
        ev(2, "Main", "Main_Start", "start", detail={"next": "blocked on recv inbox"}),
        ev(3, "Main", "Main_Got", "recv inbox", value=1, source={"process": "peer", "goroutine": "Main", "seq": 2}),
    ]
    theirs = [ev(2, "Main", "Main_Start", "start", pid="peer", detail={"next": "fired send inbox"})]
    root = parse(timeline.render(
        ours, process_id="p1", related=theirs, process_url=lambda pid: f"/admin/p/{pid}/"
    ))
    arrows = by_class(root, "slct-arrow")
    assert len(arrows) == 1
    assert "inbox" in texts(arrows[0])
    # The other process gets its own (linked) lane.
    links = root.findall(".//s:a", NS)
    assert [a.get("href") for a in links] == ["/admin/p/peer/"]
    assert any("process peer" in t for t in texts(root))
    # Without the peer's events there is nothing to draw an arrow from, and nothing breaks.
    assert by_class(parse(timeline.render(ours, process_id="p1")), "slct-arrow") == []


def test_sender_without_seq_is_its_latest_step_before_the_receive():
    events = [
        ev(1, "A", "A_Start", "start", detail={"next": "blocked on send x"}),
        ev(2, "B", "B_Start", "go", detail={"next": "blocked on recv y"}),
        ev(3, "A", "A_Again", "send x", detail={"next": "blocked on send x"}),
        ev(4, "B", "B_Got", "recv x", source={"process": "p1", "goroutine": "A"}),
        ev(5, "A", "A_Later", "send x"),
    ]
    root = parse(timeline.render(events, process_id="p1"))
    titles = ["".join(a.find("s:title", NS).itertext()) for a in by_class(root, "slct-arrow")]
    assert titles == ["A #3 → B #4 on x"]


def test_text_is_escaped():
    evil = '<script>alert("x")</script>&'
    events = [ev(1, "Main", kind="start", value=evil), ev(2, "Main", "Main_Start", "start", error=evil,
                                                          kind="failed")]
    svg = timeline.render(events, process_id='p1"><script>', waiting={"Main": evil}, prefix='x"y')
    root = parse(svg)
    assert "<script>" not in svg
    assert root.find(".//s:marker", NS).get("id") == "xy-arrow"
    assert any("<script>" in t for t in texts(root))  # shown as text, not markup


def test_three_goroutines_fifty_steps_stay_readable():
    names = ["Main", "Reminder", "Worker"]
    events, t = [], T0
    for seq in range(1, 51):
        g = names[seq % 3]
        t += timedelta(seconds=30) if seq % 10 == 0 else timedelta(milliseconds=40)
        src = {"process": "p1", "goroutine": names[(seq - 1) % 3]} if seq > 1 else None
        events.append(ev(seq, g, f"{g}_Step{seq}", f"recv chan-{seq % 4}", t=t, value={"n": seq}, source=src,
                         detail={"next": f"blocked on recv chan-{(seq + 1) % 4}, timer 2024-05-01T13:00:00+00:00"}))
    svg = timeline.render(
        events, process_id="p1", statuses={n: "blocked" for n in names},
        waiting={n: f"{n} waits to receive on `chan-1`, then {n}_Next" for n in names},
    )
    root = parse(svg)
    assert len(by_class(root, "slct-step")) == 50
    assert len(by_class(root, "slct-arrow")) == 49
    assert len(by_class(root, "slct-waiting")) == 3
    width, height = float(root.get("width")), float(root.get("height"))
    assert width <= 1000  # fits the admin's content column without scrolling sideways
    assert height <= 50 * timeline.ROW_H + 10 * timeline.GAP_H + 400
    # Every step's method is written out in full; no label is wider than its box.
    all_text = texts(root)
    for seq in range(1, 51):
        assert f"{names[seq % 3]}_Step{seq}" in all_text
    max_chars = int((timeline.BOX_W - 16) / timeline.CHAR_W)
    for b in by_class(root, "slct-step"):
        assert all(len(line) <= max_chars for line in texts(b))
    # Boxes never overlap: distinct rows.
    ys = [float(b.find("s:rect", NS).get("y")) for b in by_class(root, "slct-step")]
    assert all(b - a >= timeline.BOX_H for a, b in zip(ys, ys[1:]))


def test_operator_events_span_all_lanes_and_omitted_steps_are_said():
    events = reminder_history()[:3] + [ev(6, "", kind="cancel", detail={"reason": "test"})]
    root = parse(timeline.render(events, process_id="p1", omitted=12))
    cancel = by_class(root, "slct-cancel")
    assert len(cancel) == 1 and "cancelled by operator" in texts(cancel[0])[0]
    assert "12 older steps not shown" in texts(root)


def test_empty_history_still_draws():
    root = parse(timeline.render([], process_id="p1", statuses={"Main": "runnable"}))
    assert "Main" in texts(root)


def test_failed_steps_are_marked_with_their_error():
    events = [ev(1, "Main", kind="start"), ev(2, "Main", "Main_Start", "start", kind="error",
                                             error="ValueError: bad input 42")]
    root = parse(timeline.render(events, process_id="p1"))
    box = by_class(root, "slct-error")[0]
    assert texts(box)[0] == "Main_Start (error)"
    assert texts(box)[2] == "ValueError: bad input 42"
    assert box.find("s:rect", NS).get("stroke") == timeline.KIND_STROKE["error"]


# -- layout: labels, the call arrow, width, long histories ------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def rects_of(root, selector: str) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of the first rect of each element of `selector` (steps, waits)."""
    out = []
    for g in by_class(root, selector):
        r = g.find("s:rect", NS)
        x, y = float(r.get("x")), float(r.get("y"))
        out.append((x, y, x + float(r.get("width")), y + float(r.get("height"))))
    return out


def label_rects(root) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Every arrow label with the box it covers: LABEL_CHAR_W per character (a generous width for
    bold 11px text), from 10px above its baseline to 3px below."""
    out = []
    for t in root.iter(SVG + "text"):
        if t.get("class") != "slct-arrow-label":
            continue
        text, x, y = "".join(t.itertext()), float(t.get("x")), float(t.get("y"))
        w = len(text) * timeline.LABEL_CHAR_W
        x0 = {"start": x, "end": x - w, "middle": x - w / 2}[t.get("text-anchor") or "start"]
        out.append((text, (x0, y - 10, x0 + w, y + 3)))
    return out


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def busy_history():
    """Four goroutines and a peer process sending to each other in every direction, on channels with
    long names: left to right, right to left, across lanes, to itself, from outside, started."""
    names = ["Main", "Approver", "Notifier", "Auditor"]
    events = [ev(1, "Main", kind="start", value={"n": 1}),
              ev(2, "Main", "Main_Start", "start", detail={"next": "blocked on recv x", "started": names[1:]})]
    seq = 2
    for g in names[1:]:
        seq += 1
        events.append(ev(seq, g, f"{g}_Start", "go", source={"process": "p1", "goroutine": "Main"}))
    for i in range(24):
        seq += 1
        receiver = names[i % 4]
        sender = names[(i * 3 + 1) % 4] if i % 5 else receiver  # every fifth: a goroutine to itself
        events.append(ev(seq, receiver, f"{receiver}_Got{i}", f"recv expense-approvals-channel-{i}", value={"i": i},
                         source={"process": "p1", "goroutine": sender}, detail={"next": "blocked on recv y"}))
    seq += 1
    events.append(ev(seq, "Approver", "Approver_Answer", "recv answers-from-the-admin-page", value="yes",
                     source={"external": "admin-1"}))
    seq += 1
    events.append(ev(seq, "Auditor", "Auditor_Peer", "recv audit-log-from-peer", value=1,
                     source={"process": "peer", "goroutine": "Main", "seq": 7}))
    theirs = [ev(7, "Main", "Main_Send", "start", pid="peer", t=T0 + timedelta(milliseconds=5),
                 detail={"next": "fired send audit-log-from-peer"})]
    return events, theirs, names


def test_no_arrow_label_overlaps_a_step_box_and_all_stay_inside_the_drawing():
    events, theirs, names = busy_history()
    for per_page in (100, 7):  # the whole history in one window, and cut into windows (stub arrows)
        drawing = timeline.render(events, process_id="p1", related=theirs, per_page=per_page,
                                  waiting={n: f"{n} waits to receive on y" for n in names})
        for page in drawing.pages:
            root = parse(page.svg)
            boxes = rects_of(root, "slct-step") + rects_of(root, "slct-waiting")
            labels = label_rects(root)
            assert labels and boxes
            for text, rect in labels:
                hits = [b for b in boxes if overlaps(rect, b)]
                assert not hits, f"label {text!r} at {rect} covers the box at {hits[0]} (window {page.key})"
                assert 0 <= rect[0] and rect[2] <= float(root.get("width")), f"label {text!r} leaves the drawing"
    # Labels say which channel, shortened only past LABEL_MAX characters.
    root = parse(timeline.render(events, process_id="p1", related=theirs, per_page=100))
    texts_ = [t for t, _ in label_rects(root)]
    assert "go" in texts_ and "expense-approvals-channel-1" in texts_
    assert all(len(t) <= timeline.LABEL_MAX for t in texts_)


def call_history(child_ids=(4, 5, 6)):
    """A parent with two goroutines; Worker calls a child. As the engine writes it: the child's start
    is inserted inside Worker's step, so its row id is *smaller* than that step's, and Main's step
    just before is the latest step of the parent before it."""
    start_id, main_id, worker_id = child_ids
    parent = [
        ev(1, "Main", kind="start", id=1),
        ev(2, "Main", "Main_Start", "start", detail={"next": "blocked on recv x", "started": ["Worker"]}, id=2),
        ev(3, "Worker", "Worker_Start", "go", source={"process": "p1", "goroutine": "Main"}, id=3),
        ev(4, "Main", "Main_Tick", "timer", t=T0 + timedelta(milliseconds=50), id=main_id,
           detail={"next": "blocked on recv x"}),
        ev(5, "Worker", "Worker_Call", "recv job", t=T0 + timedelta(milliseconds=50), id=worker_id,
           detail={"next": "blocked on recv result-c1", "called": ["c1"]}),
    ]
    child = [ev(1, "Main", kind="start", pid="c1", t=T0 + timedelta(milliseconds=50), id=start_id,
                source={"process": "p1", "goroutine": ""})]
    return parent, child


def arrow_titles(root) -> list[str]:
    return ["".join(a.find("s:title", NS).itertext()) for a in by_class(root, "slct-arrow")]


def test_the_call_arrow_starts_from_the_goroutine_that_called():
    parent, child = call_history()
    root = parse(timeline.render(parent, process_id="p1", related=child))
    titles = arrow_titles(root)
    assert "Worker #5 → Main #1 on call" in titles
    assert not any(t.startswith("Main #4") for t in titles)
    # The child's start is drawn right after the step that made the call, not above it.
    seqs = [(g.get("data-seq"), "".join(texts(g)[:1])) for g in by_class(root, "slct-step")]
    assert seqs[-2:] == [("5", "Worker_Call"), ("1", "start (called)")]
    call = next(a for a in by_class(root, "slct-arrow") if "call" in texts(a))
    path = call.find("s:path", NS).get("d")
    worker_box = next(g for g in by_class(root, "slct-step") if g.get("data-seq") == "5").find("s:rect", NS)
    x1 = float(re.match(r"M([\d.]+),", path).group(1))
    assert x1 in (float(worker_box.get("x")), float(worker_box.get("x")) + timeline.BOX_W)  # from Worker's box
    # On the child's page, without the calling step, no arrow rather than one from the wrong goroutine.
    root = parse(timeline.render(child, process_id="c1", related=[parent[3]]))
    assert arrow_titles(root) == []


def test_width_covers_every_lane_and_every_label_the_child_lane_included():
    parent, child = call_history()
    # The child answers on the parent's result channel, and keeps a self-addressed value too.
    child += [
        ev(2, "Main", "Main_Start", "start", pid="c1", t=T0 + timedelta(milliseconds=60), id=7,
           detail={"next": "blocked on recv a-rather-long-channel-name"}),
        ev(3, "Main", "Main_Loop", "recv a-rather-long-channel-name", pid="c1", t=T0 + timedelta(milliseconds=70),
           id=8, source={"process": "c1", "goroutine": "Main", "seq": 2}, detail={"next": "finish"}),
    ]
    parent.append(ev(6, "Worker", "Worker_Done", "recv result-c1", t=T0 + timedelta(milliseconds=80), id=9,
                     source={"process": "c1", "goroutine": "Main", "seq": 3}))
    svg = timeline.render(parent, process_id="p1", related=child, process_url=lambda pid: f"/p/{pid}/")
    root = parse(svg)
    width = float(root.get("width"))
    lanes = [(float(r.get("x")), float(r.get("width"))) for r in root.iter(SVG + "rect") if r.get("class") == "slct-lane"]
    assert len(lanes) == 3  # Main, Worker, the child's Main
    assert max(x + w for x, w in lanes) <= width
    assert "process c1" in texts(root)
    for x0, y0, x1, y1 in rects_of(root, "slct-step"):
        assert x1 <= width
    for text, rect in label_rects(root):
        assert rect[2] <= width, f"label {text!r} is cut at the right edge"
    # The child's value to itself is labelled right of its box, in the rightmost lane: the drawing
    # grew to hold it.
    assert any(t == "a-rather-long-channel-name" for t, _ in label_rects(root))
    assert width > max(x + w for x, w in lanes)


def periodic(steps: int):
    events = [ev(1, "Main", kind="start", value={"every": 60}),
              ev(2, "Main", "Main_Start", "start", detail={"next": "blocked on recv answers", "started": ["Reminder"]}),
              ev(3, "Reminder", "Reminder_Start", "go", source={"process": "p1", "goroutine": "Main"})]
    for seq in range(4, steps + 1):
        t = T0 + timedelta(minutes=seq)
        events.append(ev(seq, "Reminder", "Reminder_Nudge", f"timer {t.isoformat()}", t=t, source={"timer": "x"},
                         detail={"next": f"blocked on timer {(t + timedelta(minutes=1)).isoformat()}"}))
    return events


# A window: PER_PAGE rows, each with a folded pause, the header and 'now'.
WINDOW_BOUND = timeline.PER_PAGE * (timeline.ROW_H + timeline.GAP_H) + timeline.HEADER_H + timeline.ROW_H \
    + timeline.GAP_H + 2 * timeline.PAD


def test_a_500_step_process_is_drawn_in_bounded_windows_with_paging_links():
    drawing = timeline.render(periodic(500), process_id="p1", statuses={"Main": "blocked", "Reminder": "blocked"},
                              waiting={"Main": "Main waits for answers", "Reminder": "Reminder waits a minute"})
    assert float(parse(drawing).get("height")) > 30_000  # the whole picture, as "Open the SVG" shows it
    pages = drawing.pages
    assert len(pages) == math.ceil(500 / timeline.PER_PAGE)
    assert WINDOW_BOUND < 1300
    for p in pages:
        root = parse(p.svg)
        assert float(root.get("height")) == p.height <= WINDOW_BOUND
        assert len(by_class(root, "slct-step")) <= timeline.PER_PAGE
    # The newest window: the last steps and 'now'; the only one with 'now'.
    newest = drawing.page(None)
    assert newest is pages[-1] and newest.key == "0" and newest.newest
    root = parse(newest.svg)
    assert [g.get("data-seq") for g in by_class(root, "slct-step")][-1] == "500"
    assert len(by_class(root, "slct-waiting")) == 2
    assert all(not by_class(parse(p.svg), "slct-waiting") for p in pages[:-1])
    # Links: the newest has "older" only; a middle window both ways; the oldest "newer" only.
    assert 'href="?timeline=1#slct-timeline"' in newest.nav and "slct-tl-newer" not in newest.nav
    middle = drawing.page("3")
    assert 'href="?timeline=4#slct-timeline"' in middle.nav and 'href="?timeline=2#slct-timeline"' in middle.nav
    assert "slct-tl-older" not in pages[0].nav and "slct-tl-newer" in pages[0].nav
    assert "Newest window: steps #489–#500 (rows 489–500 of 500)" in newest.nav
    # Unknown keys show the newest; windows cover every row once, in order.
    assert drawing.page("nonsense") is newest and drawing.page("999") is newest
    seqs = [int(g.get("data-seq")) for p in pages for g in by_class(parse(p.svg), "slct-step")]
    assert seqs == list(range(1, 501))


def test_an_arrow_from_an_older_window_comes_in_from_its_lanes_top_edge():
    events = periodic(30)
    events.append(ev(31, "Main", "Main_Got", "recv answers", t=T0 + timedelta(hours=2), value="yes",
                     source={"process": "p1", "goroutine": "Reminder", "seq": 4}))
    drawing = timeline.render(events, process_id="p1", per_page=10)
    root = parse(drawing.page("0").svg)
    (arrow,) = [a for a in by_class(root, "slct-arrow") if "answers" in texts(a)]
    assert arrow_titles(root)[-1] == "Reminder #4 (older window) → Main #31 on answers"
    y_start = float(re.match(r"M[\d.]+,([\d.]+)", arrow.find("s:path", NS).get("d")).group(1))
    assert y_start < timeline.HEADER_H + timeline.PAD
    # Every arrow of the whole drawing is in exactly one window.
    whole = len(by_class(parse(drawing), "slct-arrow"))
    assert sum(len(by_class(parse(p.svg), "slct-arrow")) for p in drawing.pages) == whole


@pytest.mark.django_db
def test_the_process_page_shows_one_window_and_the_query_parameter_picks_it(admin_client_):
    from slct_workflows.models import Event, Goroutine, ProcessInstance

    proc = ProcessInstance.objects.create(id="long-one", definition="reminder", step_count=500)
    Goroutine.objects.create(process=proc, name="Main", status="blocked")
    Goroutine.objects.create(process=proc, name="Reminder", status="blocked")
    Event.objects.bulk_create([
        Event(process=proc, seq=e.seq, kind=e.kind, goroutine=e.goroutine, method=e.method, case=e.case,
              source=e.source, detail=e.detail, started_at=e.started_at, finished_at=e.finished_at)
        for e in periodic(500)
    ])
    url = "/admin/slct_workflows/processinstance/long-one/change/"

    def shown(query=""):
        content = admin_client_.get(url + query).content.decode()
        current = re.findall(r'class="slct-tl-page slct-tl-current" id="[^"]+" data-window="([^"]+)"', content)
        assert len(current) == 1, current
        return current[0], content

    key, content = shown()
    assert key == "0" and "Newest window: steps #489–#500" in content
    assert "200 older steps are not drawn: see the history" in content  # the page draws the newest 300
    assert shown("?timeline=3")[0] == "3"
    assert shown("?timeline=junk")[0] == "0"
    # The history table shows its newest rows; the rest fold away.
    assert re.search(r"<summary>194 older events</summary>", content)
