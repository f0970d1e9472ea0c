"""The timeline drawing: a pure function of events, checked without a database."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from slct_workflows import timeline

NS = {"s": "http://www.w3.org/2000/svg"}
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def ev(seq, goroutine, method="", case="", *, pid="p1", kind="step", t=None, value=None, source=None, detail=None,
       error=""):
    t = t or T0 + timedelta(milliseconds=10 * seq)
    return SimpleNamespace(
        process_id=pid, seq=seq, kind=kind, goroutine=goroutine, method=method, case=case, value=value,
        source=source, detail=detail, error=error, started_at=t, finished_at=t + timedelta(milliseconds=3),
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
