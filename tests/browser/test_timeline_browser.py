"""The process page of a long periodic process in a real headless Chromium: the timeline shows a
bounded window of the newest steps (with "older" / "newer" links), so the whole page stays under
PAGE_BOUND px instead of growing with the history (it was about 20,000 px for 500 steps).
Screenshots go to artifacts/screenshots/.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.browser.conftest import SHOTS, shot

pytestmark = [pytest.mark.browser]

PAGE_BOUND = 3000  # px: the whole process page (1280 px wide viewport), whatever the history's length
STEPS = 500
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def periodic_process(pid: str = "nudger-500") -> str:
    """A reminder-like process with STEPS steps: Main waits for an answer, Reminder nudges every minute."""
    from slct_workflows.models import Event, Goroutine, ProcessInstance

    proc = ProcessInstance.objects.create(id=pid, definition="reminder", input={"every": 60}, step_count=STEPS)
    Goroutine.objects.create(process=proc, name="Main", status="blocked")
    Goroutine.objects.create(process=proc, name="Reminder", status="blocked")
    rows = [
        Event(process=proc, seq=1, kind="start", goroutine="Main", value={"every": 60}, started_at=T0, finished_at=T0),
        Event(process=proc, seq=2, kind="step", goroutine="Main", method="Main_Start", case="start",
              detail={"next": "blocked on recv answers", "started": ["Reminder"]}, started_at=T0, finished_at=T0),
        Event(process=proc, seq=3, kind="step", goroutine="Reminder", method="Reminder_Start", case="go",
              source={"process": pid, "goroutine": "Main"}, detail={"next": "blocked on timer"},
              started_at=T0, finished_at=T0),
    ]
    for seq in range(4, STEPS + 1):
        t = T0 + timedelta(minutes=seq - 3)
        rows.append(Event(
            process=proc, seq=seq, kind="step", goroutine="Reminder", method="Reminder_Nudge",
            case=f"timer {t.isoformat()}", source={"timer": t.isoformat()}, value=None,
            detail={"next": f"blocked on timer {(t + timedelta(minutes=1)).isoformat()}"},
            started_at=t, finished_at=t + timedelta(milliseconds=4),
        ))
    Event.objects.bulk_create(rows)
    return pid


@pytest.mark.django_db(transaction=True)
def test_a_500_step_process_page_stays_short_and_pages_through_the_timeline(
    live_server, browser_page, django_user_model
):
    page = browser_page
    SHOTS.mkdir(parents=True, exist_ok=True)
    django_user_model.objects.create_superuser("operator", "op@example.com", "secret-pw")
    pid = periodic_process()

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#slct-dashboard-link")

    page.goto(f"{live_server.url}/admin/slct_workflows/processinstance/{pid}/change/")
    height = page.evaluate("document.documentElement.scrollHeight")
    print(f"\n500-step process page: {height} px high")
    shot(page, "timeline-500-steps-newest.png")
    assert height < PAGE_BOUND, f"the process page is {height} px high"

    # One window is shown: the newest steps, 'now' (what each goroutine waits for) under them.
    svg = page.locator("#slct-timeline svg.slct-timeline:visible")
    assert svg.count() == 1
    seqs = [int(s) for s in svg.locator("g.slct-step").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs and max(seqs) == STEPS and len(seqs) < 60
    assert svg.locator("g.slct-waiting").count() >= 1
    # Every lane is inside the drawing, and the drawing inside its scrollable frame.
    box = svg.bounding_box()
    assert box["height"] < PAGE_BOUND - 500

    # "older" (?timeline=1) shows the window before; the page stays short; "newer" comes back.
    with page.expect_navigation():
        page.locator("#slct-timeline .slct-tl-page:visible a.slct-tl-older").first.click()
    assert "timeline=1" in page.url
    svg = page.locator("#slct-timeline svg.slct-timeline:visible")
    assert svg.count() == 1
    older = [int(s) for s in svg.locator("g.slct-step").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert older and max(older) < min(seqs)
    height_older = page.evaluate("document.documentElement.scrollHeight")
    assert height_older < PAGE_BOUND
    shot(page, "timeline-500-steps-older.png")
    # The address names the window, so a reload (or the page's own refresh) keeps it.
    page.reload()
    svg = page.locator("#slct-timeline svg.slct-timeline:visible")
    assert [int(s) for s in svg.locator("g.slct-step").evaluate_all("els => els.map(e => e.dataset.seq)")] == older
    with page.expect_navigation():
        page.locator("#slct-timeline .slct-tl-page:visible a.slct-tl-newer").first.click()
    svg = page.locator("#slct-timeline svg.slct-timeline:visible")
    newer = [int(s) for s in svg.locator("g.slct-step").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert newer == seqs
