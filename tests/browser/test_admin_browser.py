"""The admin in a real headless Chromium against the live server, with a real RQ worker:
log in, look at a running two-goroutine process (waits in words, the timeline), send a value into
its channel from the channel page, see the process advance. Screenshots go to artifacts/screenshots/.
"""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SHOTS, shot

from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]



@pytest.mark.django_db(transaction=True)
def test_operator_sends_an_answer_from_the_channel_page(live_server, rq_worker, browser_page, django_user_model):
    from slct_workflows import services
    from slct_workflows.models import Goroutine, ProcessInstance

    page = browser_page
    SHOTS.mkdir(parents=True, exist_ok=True)
    django_user_model.objects.create_superuser("operator", "op@example.com", "secret-pw")

    pid = services.start_process(
        "reminder", {"every": 3600, "answers": "approvals", "nudges": "nudges"}, id="expense-42"
    ).process.id
    wait_until(
        lambda: sorted(Goroutine.objects.filter(process_id=pid).values_list("status", flat=True)) == ["blocked"] * 2,
        timeout=30, message=f"both goroutines blocked (worker log: {rq_worker.logs()[-800:]})",
    )

    # Log in.
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#slct-dashboard-link")

    # The process page: what each goroutine waits for, in words; the timeline.
    page.goto(f"{live_server.url}/admin/slct_workflows/processinstance/{pid}/change/")
    main = page.locator("tr.slct-goroutine[data-goroutine=Main]")
    reminder = page.locator("tr.slct-goroutine[data-goroutine=Reminder]")
    assert re.sub(r"\s+", " ", main.locator(".slct-waits").inner_text()).startswith(
        "Main waits to receive on approvals, then Main_Answered"
    )
    assert re.search(r"Reminder waits 00:59:\d\d left on a timer, then Reminder_Nudge",
                     reminder.locator(".slct-waits").inner_text())
    svg = page.locator("#slct-timeline svg.slct-timeline")
    assert svg.is_visible()
    box = svg.bounding_box()
    assert box["width"] > 500 and box["height"] > 200
    assert svg.locator("g.slct-step").count() == 3
    assert svg.locator("text", has_text="Reminder_Start").count() == 1
    shot(page, "process-waiting.png")

    # To the channel page through the link in Main's description; send a value, review, confirm.
    main.locator(".slct-waits a", has_text="approvals").first.click()
    page.wait_for_selector("#slct-receivers")
    assert "Blocked receiving (1)" in page.locator("#slct-receivers").inner_text()
    page.fill("#slct-send textarea[name=value]", '{"approved": true, "by": "ops"}')
    shot(page, "channel.png")
    page.click("#slct-send-submit")
    page.wait_for_selector("#slct-confirm")
    assert "Send this value into channel" in page.content()
    shot(page, "send-confirm.png")
    page.click("#slct-confirm")
    page.wait_for_selector("ul.messagelist li.success")
    assert "delivered to expense-42/Main" in page.locator("ul.messagelist").inner_text()

    # The worker runs the step; the process page shows the process advanced.
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).status == "done", timeout=30,
               message=f"process done (worker log: {rq_worker.logs()[-800:]})")
    page.goto(f"{live_server.url}/admin/slct_workflows/processinstance/{pid}/change/")
    assert "Main is done" in main.inner_text()
    assert "Reminder is cancelled" in reminder.inner_text()
    assert svg.locator("g.slct-step").count() == 4
    assert svg.locator("text", has_text="Main_Answered").count() == 1
    assert svg.locator("g.slct-external").count() == 1  # the arrow from outside
    assert '"approved": true' in page.locator(".field-output_json").inner_text()
    shot(page, "process-done.png")

    # The dashboard, from the admin index, with a few more processes about.
    others = [
        services.start_process("counter", {"channel": "counter"}).process.id,
        services.start_process("pingpong", {"role": "ping", "inbox": "pong-out", "outbox": "pong-in"}).process.id,
    ]
    wait_until(lambda: Goroutine.objects.filter(process_id__in=others, status="blocked").count() == 2, timeout=30,
               message="the other processes blocked")
    page.goto(f"{live_server.url}/admin/")
    page.click("#slct-dashboard-link a")
    page.wait_for_selector("#slct-by-definition")
    assert re.search(r"reminder\s+0\s+1\s+0\s+0\s+1", page.locator("#slct-by-definition").inner_text())
    assert re.search(r"counter\s+1\s+0\s+0", page.locator("#slct-waiting").inner_text())  # 1 receiver
    assert re.search(r"pong-in\s+0\s+1\s+0", page.locator("#slct-waiting").inner_text())  # 1 sender
    assert page.locator("#slct-queue-count").is_visible()  # Redis is up: the queue length is shown
    shot(page, "dashboard.png")

    print(f"\nscreenshots: {SHOTS}")
    for f in sorted(SHOTS.glob("*.png")):
        print(f"  {f}")
