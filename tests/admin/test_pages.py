"""The read-only pages: process, channel, every model's list and detail."""
from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

import pytest

from slct_workflows import services
from slct_workflows.models import (
    BufferedValue, Channel, Event, ExternalSend, Goroutine, Outbox, PendingCase, ProcessInstance,
)

from .workflows import FLAKY

pytestmark = pytest.mark.django_db

ADMIN = "/admin/slct_workflows"


def page(client, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code)
    return html.unescape(r.content.decode())


def text_only(content: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", content))


@pytest.fixture
def failing(run, settings):
    settings.SLCT_MAX_ATTEMPTS = 1
    FLAKY["fail"] = True
    pid = run.start("admin-test-flaky", {"amount": 5})
    yield pid
    FLAKY["fail"] = True


def test_process_page_shows_fields_goroutines_channels_timeline_history(run, admin_client_):
    pid = run.start("reminder", {"every": 3600})
    content = page(admin_client_, f"{ADMIN}/processinstance/{pid}/change/")
    words = text_only(content)
    assert "reminder" in words and "Running" in words
    # Input and state as formatted (indented) JSON, not form fields.
    assert '<pre class="slct-json">{\n  "every": 3600\n}</pre>' in content
    assert '{\n  "answer": null,\n  "answers": "answers",\n  "every": 3600.0,\n  "nudges": "nudges",\n' in content
    assert 'name="state"' not in content and "<textarea" not in content
    # Every goroutine, with what it waits for in plain words; the channel is a link.
    assert "Main waits to receive on answers, then Main_Answered" in words
    assert re.search(r"Reminder waits (00:59:5\d|01:00:00) left on a timer, then Reminder_Nudge", words)
    assert f'<a href="{ADMIN}/channel/answers/change/"><code>answers</code></a>' in content
    # The timeline, drawn inline, with a lane per goroutine; the history table.
    raw = admin_client_.get(f"{ADMIN}/processinstance/{pid}/change/").content.decode()
    svg = re.search(r'<svg xmlns="http://www.w3.org/2000/svg" class="slct-timeline".*?</svg>', raw, re.S).group(0)
    root = ET.fromstring(svg)
    lane_titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("font-size") == "13"}
    assert lane_titles == {"Main", "Reminder"}
    assert len(re.findall(r'class="slct-step', svg)) == 3  # start, Main_Start, Reminder_Start
    assert "Main_Start" in words and "Reminder_Start" in words
    assert "History (3 events)" in words


def test_process_page_after_progress_shows_output_and_finished_goroutines(run, admin_client_):
    pid = run.start("reminder", {"every": 3600})
    run.send("answers", "yes")
    content = page(admin_client_, f"{ADMIN}/processinstance/{pid}/change/")
    words = text_only(content)
    assert "Done" in words
    assert '"answer": "yes"' in content  # output
    assert "Main is done" in words and "Reminder is cancelled" in words
    assert "Main_Answered" in words
    assert 'id="slct-cancel"' not in content  # nothing to cancel any more


def test_failed_process_shows_error_with_traceback_and_retry(failing, admin_client_):
    content = page(admin_client_, f"{ADMIN}/processinstance/{failing}/change/")
    assert ProcessInstance.objects.get(pk=failing).status == "failed"
    assert '<pre class="slct-traceback">' in content
    assert "RuntimeError: boom: the approval service is down" in content
    assert "Traceback (most recent call last)" in content
    assert 'id="slct-retry"' in content and 'id="slct-cancel"' in content


def test_view_only_user_sees_the_process_but_no_actions(run, make_client):
    pid = run.start("reminder")
    client = make_client("view_processinstance", "view_channel")
    content = page(client, f"{ADMIN}/processinstance/{pid}/change/")
    assert "Main waits to receive on" in text_only(content)
    assert 'id="slct-cancel"' not in content
    assert "slct-send-link" not in content
    assert client.get(f"{ADMIN}/processinstance/{pid}/cancel/").status_code == 403
    chan = page(client, f"{ADMIN}/channel/answers/change/")
    assert 'id="slct-send"' not in chan and 'id="slct-close"' not in chan


def test_users_without_view_permission_see_nothing(run, make_client):
    pid = run.start("reminder")
    client = make_client("view_channel")
    assert client.get(f"{ADMIN}/processinstance/{pid}/change/").status_code == 403
    assert client.get(f"{ADMIN}/processinstance/{pid}/timeline.svg").status_code == 403
    assert client.get(f"{ADMIN}/processinstance/dashboard/").status_code == 403


def test_timeline_svg_draws_arrows_across_processes(run, admin_client_):
    ping = run.start("pingpong", {"role": "ping", "inbox": "a", "outbox": "b", "rounds": 4})
    pong = run.start("pingpong", {"role": "pong", "inbox": "b", "outbox": "a", "rounds": 4})
    r = admin_client_.get(f"{ADMIN}/processinstance/{ping}/timeline.svg")
    assert r.status_code == 200 and r["Content-Type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    ns = {"s": "http://www.w3.org/2000/svg"}
    arrows = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "slct-arrow"]
    titles = ["".join(a.find("s:title", ns).itertext()) for a in arrows]
    # ping's receives (on a) come from pong's steps and pong's receives (on b) from ping's: 4 arrows.
    assert sorted(t.rsplit(" on ", 1)[1] for t in titles) == ["a", "a", "b", "b"]
    link = root.find(".//s:a", ns)
    assert link is not None and link.get("href") == f"{ADMIN}/processinstance/{pong}/change/"


def test_channel_page_shows_buffer_in_order_waiters_and_deliveries(run, admin_client_):
    services.create_channel("buf", capacity=3)
    run.send("buf", {"n": 1})
    run.send("buf", {"n": 2})
    content = page(admin_client_, f"{ADMIN}/channel/buf/change/")
    words = text_only(content)
    assert "Buffer: 2 of 3 values" in words
    assert content.index('"n": 1') < content.index('"n": 2')
    assert words.count("external send: buffered") == 2

    ping = run.start("pingpong", {"role": "ping", "inbox": "in", "outbox": "out", "rounds": 3})
    reminder = run.start("reminder")
    out = text_only(page(admin_client_, f"{ADMIN}/channel/out/change/"))
    assert f"Blocked sending (1) {ping} / Main, then Main_Sent" in out
    assert "Blocked receiving (0)" in out
    answers = text_only(page(admin_client_, f"{ADMIN}/channel/answers/change/"))
    assert f"Blocked receiving (1) {reminder} / Main, then Main_Answered" in answers
    run.send("answers", "ok")
    answers = text_only(page(admin_client_, f"{ADMIN}/channel/answers/change/"))
    assert "Blocked receiving (0)" in answers
    assert f"{reminder} Main.Main_Answered ran after recv answers" in answers
    assert "external send: delivered" in answers


def test_every_model_lists_searches_filters_and_shows_read_only(run, admin_client_, failing):
    pid = run.start("reminder")
    services.create_channel("buf", capacity=2)
    run.send("buf", 1)
    Outbox.objects.create(process_id=pid, func="builtins.print", args=["hi"])
    rows = {
        "processinstance": (ProcessInstance.objects.get(pk=pid), f"?q={pid[:8]}", "?status__exact=failed"),
        "goroutine": (Goroutine.objects.filter(process_id=pid).first(), "?q=Reminder", "?status__exact=blocked"),
        "channel": (Channel.objects.get(pk="answers"), "?q=answ", "?closed__exact=0"),
        "bufferedvalue": (BufferedValue.objects.first(), "?q=buf", ""),
        "pendingcase": (PendingCase.objects.first(), "?q=answers", "?kind__exact=timer"),
        "event": (Event.objects.filter(process_id=pid).first(), "?q=Main_Start", "?kind__exact=step"),
        "externalsend": (ExternalSend.objects.first(), "?q=buf", "?status__exact=buffered"),
        "outbox": (Outbox.objects.first(), "?q=print", "?status__exact=pending"),
    }
    for model, (obj, search, filt) in rows.items():
        assert obj is not None, model
        for query in ("", search, filt):
            assert admin_client_.get(f"{ADMIN}/{model}/{query}").status_code == 200, (model, query)
        from django.contrib.admin.utils import quote

        url = f"{ADMIN}/{model}/{quote(obj.pk)}/change/"
        content = page(admin_client_, url)
        assert 'type="submit" value="Save"' not in content, model
        # Not through a form: no add, no delete, no POSTed change.
        assert admin_client_.get(f"{ADMIN}/{model}/add/").status_code == 403, model
        assert admin_client_.post(f"{ADMIN}/{model}/{quote(obj.pk)}/delete/", {"post": "yes"}).status_code == 403
        assert admin_client_.post(url, {"status": "done", "state": "{}"}).status_code == 403, model
    assert ProcessInstance.objects.get(pk=pid).status == "running"
    assert ProcessInstance.objects.get(pk=pid).state["answers"] == "answers"
    failed_list = page(admin_client_, f"{ADMIN}/processinstance/?status__exact=failed")
    assert failing in failed_list and pid not in failed_list
    search = page(admin_client_, f"{ADMIN}/processinstance/?q={pid}")
    assert pid in search and failing not in search


def test_goroutine_list_says_what_each_waits_on(run, admin_client_):
    run.start("reminder")
    words = text_only(page(admin_client_, f"{ADMIN}/goroutine/?status__exact=blocked"))
    assert "recv answers" in words and "timer" in words


def test_pending_case_overdue_filter(run, admin_client_):
    run.start("reminder", {"every": 60})
    assert "0 pending cases" in text_only(page(admin_client_, f"{ADMIN}/pendingcase/?overdue=yes"))
    from datetime import timedelta

    from slct_workflows import clock

    clock.advance(timedelta(seconds=120))  # due, but nobody ran it
    assert "1 pending case" in text_only(page(admin_client_, f"{ADMIN}/pendingcase/?overdue=yes"))


def test_process_page_queries_do_not_grow_with_the_history(run, admin_client_, django_assert_max_num_queries):
    ping = run.start("pingpong", {"role": "ping", "inbox": "a", "outbox": "b", "rounds": 40})
    run.start("pingpong", {"role": "pong", "inbox": "b", "outbox": "a", "rounds": 40})
    assert Event.objects.filter(process_id=ping).count() > 40
    with django_assert_max_num_queries(30):
        r = admin_client_.get(f"{ADMIN}/processinstance/{ping}/change/")
    assert r.status_code == 200
    assert r.content.decode().count('class="slct-arrow"') == 40  # 20 values each way
