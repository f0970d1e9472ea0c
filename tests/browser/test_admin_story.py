"""Issue 16 in a real headless Chromium against the live server, with a real RQ worker: the process
list's columns at 1400 px without horizontal overflow, parent <-> child links, the Slack question
link, a running process's page refreshing itself when the process moves on, the index order.
Screenshots: artifacts/screenshots/story-*.png (next to the other browser tests' screenshots).
"""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SHOTS, shot

from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WORKFLOWS = {"SLCT_WORKFLOW_MODULES": "tests.admin.story_workflows"}
VIEWPORT_WIDTH = 1400  # the width the issue checks the process list at


def text(locator) -> str:
    return re.sub(r"\s+", " ", locator.inner_text())


@pytest.mark.django_db(transaction=True)
def test_admin_story(live_server, worker_pool, browser_page, django_user_model):
    import tests.admin.story_workflows  # noqa: F401  (the definitions, here too)
    from slack_integration.models import SlackMessage
    from slct_workflows import services
    from slct_workflows.models import Goroutine, ProcessInstance

    worker_pool.start(1, extra_env=WORKFLOWS)
    page = browser_page
    SHOTS.mkdir(parents=True, exist_ok=True)
    django_user_model.objects.create_superuser("operator", "op@example.com", "secret-pw")
    base = live_server.url

    parent = services.start_process("story-parent", {"go": "story-go-b"}, id="story-mum-b").process.id
    expense = services.start_process("expense", {"amount": 77, "channel": "#finance"}, id="expense-77").process.id
    wait_until(lambda: ProcessInstance.objects.filter(parent_id=parent).exists()
               and Goroutine.objects.filter(process__parent_id=parent, status="blocked").count() == 2
               and Goroutine.objects.filter(process_id=expense, status="blocked").count() == 2,
               timeout=30, message=f"parent, child and expense blocked (worker log: {worker_pool.logs()[-800:]})"
               if hasattr(worker_pool, "logs") else "parent, child and expense blocked")
    child = ProcessInstance.objects.get(parent_id=parent).pk
    # A failed process with a long error (a row as the engine leaves it): the list must still fit.
    ProcessInstance.objects.create(
        id="story-broken", definition="story-child", status="failed",
        error="goroutine Main, method Main_Start: RuntimeError: the approval service answered 503 Service "
              "Unavailable after 3 attempts (https://approvals.internal.example.com/api/v2/requests)\n\n"
              "Traceback (most recent call last):\n  File ...",
    )
    question = SlackMessage.objects.get(process_id=expense, kind="approve")

    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#slct-dashboard-link")

    # The index: the workflows first (dashboard, processes, channels, schedules), Slack, engine internals below.
    captions = [" ".join(c.text_content().split()) for c in page.locator("#content-main .module caption").all()]
    assert captions[0] == "SLCT workflows" and captions.count("SLCT workflows") == 1, captions
    assert captions.index("Slack integration") < captions.index("SLCT engine internals"), captions
    first = page.locator("#content-main .module").first
    assert [a.text_content().strip() for a in first.locator("th a").all()] == ["Dashboard", "Processes", "Channels", "Schedules"]
    shot(page, "story-index.png", max_height=6000)

    # The process list at 1400 px: the new columns, nothing wider than the window.
    page.goto(f"{base}/admin/slct_workflows/processinstance/")
    heads = text(page.locator("#result_list thead"))
    for column in ("Waits for", "Blocked", "Error", "Parent", "Version"):
        assert column.lower() in heads.lower(), (column, heads)
    overflow = page.evaluate("""() => ({
        doc: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        results: (() => { const r = document.querySelector('#changelist .results');
                          return r ? r.scrollWidth - r.clientWidth : 0; })(),
        table: document.querySelector('#result_list').getBoundingClientRect().right - window.innerWidth,
    })""")
    assert overflow["doc"] <= 0 and overflow["results"] <= 0 and overflow["table"] <= 0, overflow
    broken = page.locator("#result_list tr:has(input[value='story-broken'])")
    assert "RuntimeError: the approval service answered 503" in text(broken) and "Traceback" not in text(broken)
    parent_row = page.locator(f"#result_list tr:has(input[value='{parent}'])")
    assert "child story-child" in text(parent_row) and "result-" not in text(parent_row)
    expense_row = page.locator(f"#result_list tr:has(input[value='{expense}'])")
    assert "approval “Approve expense of 77?” in #finance" in text(expense_row)
    shot(page, "story-process-list.png", max_height=6000)

    # Filter: only the one waiting on a child.
    page.click("#changelist-filter a:has-text('a child process')")
    page.wait_for_url(re.compile(r"waits_for=child"))
    assert page.locator("#result_list tbody tr").count() == 1

    # Parent -> child through the list's link, child -> parent through its page.
    page.goto(f"{base}/admin/slct_workflows/processinstance/")
    page.locator(f"#result_list tr:has(input[value='{parent}']) a.slct-wait-child").click()
    page.wait_for_url(re.compile(rf"/processinstance/{child}/change/"))
    assert text(page.locator("#slct-parent")).startswith(f"parent {parent}")
    assert "Side waits to receive on state.reply_to" in text(page.locator("tr[data-goroutine=Side] .slct-waits"))
    shot(page, "story-child.png", max_height=6000)
    page.click("a.slct-parent-link")
    page.wait_for_url(re.compile(rf"/processinstance/{parent}/change/"))
    main = page.locator("tr.slct-goroutine[data-goroutine=Main] .slct-waits")
    assert re.search(r"Main waits for child process story-child \S+ to finish, then Main_Child · blocked for \d+ s",
                     text(main)), text(main)
    assert page.locator("#slct-family a.slct-child-link").count() == 1
    shot(page, "story-parent-waiting.png", max_height=6000)

    # The question: named, linked to its Slack message.
    page.goto(f"{base}/admin/slct_workflows/processinstance/{expense}/change/")
    qmain = page.locator("tr.slct-goroutine[data-goroutine=Main] .slct-waits")
    assert "Main waits for an answer to approval “Approve expense of 77?” in #finance" in text(qmain)
    shot(page, "story-question.png", max_height=6000)
    qmain.locator("a.slct-question-link").click()
    page.wait_for_url(re.compile(rf"/slackmessage/{question.pk}/change/"))
    assert "Approve expense of 77?" in page.content()

    # The Slack messages table gives the text room (not one word a line).
    page.goto(f"{base}/admin/slack_integration/slackmessage/")
    cell = page.locator("#result_list td.field-short_text").first
    shot(page, "story-slack-messages.png", max_height=6000)
    assert cell.bounding_box()["width"] >= 170, cell.bounding_box()
    lines = page.evaluate("""(() => { const r = document.createRange();
        r.selectNodeContents(document.querySelector('#result_list td.field-short_text'));
        return r.getClientRects().length; })()""")
    assert lines == 1, lines  # "Approve expense of 77?" on one line, not one word a line
    wide = page.evaluate("(() => { const r = document.querySelector('#changelist .results'); return r.scrollWidth - r.clientWidth; })()")
    assert wide <= 0, wide
    shot(page, "story-slack-messages.png", max_height=6000)

    # A channel page: no grey "Close" button beside "Close channel…", no History; open/closed in words.
    page.goto(f"{base}/admin/slct_workflows/channel/story-go-b/change/")
    assert page.locator("#slct-close").count() == 1
    assert page.locator("a.closelink").count() == 0 and page.locator("a.historylink").count() == 0
    assert "open" in text(page.locator(".field-open_or_closed"))
    shot(page, "story-channel.png", max_height=6000)

    # Auto-refresh: the parent's page, left open, shows the process finish without a reload.
    page.goto(f"{base}/admin/slct_workflows/processinstance/{parent}/change/")
    assert page.locator("#slct-live[data-slct-live='1']").count() == 1
    page.evaluate("window.slctMarker = 'no reload'")
    services.send("story-go-b", "go!", "story-go-b-1")
    wait_until(lambda: ProcessInstance.objects.get(pk=parent).status == "done", timeout=30,
               message="the parent finished")
    page.wait_for_selector("tr.slct-goroutine[data-goroutine=Main] .slct-badge.done", timeout=20_000)
    assert page.evaluate("window.slctMarker") == "no reload"  # swapped in place, not reloaded
    assert page.locator("#slct-live[data-slct-live='0']").count() == 1
    assert "Main is done" in text(page.locator("tr.slct-goroutine[data-goroutine=Main]"))
    shot(page, "story-parent-done.png", max_height=6000)

    print(f"\nscreenshots: {SHOTS}/story-*.png")
