"""The dashboard: counts, waiting goroutines, failures, overdue timers, the RQ queue (or its absence)."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from slct_workflows import clock
from slct_workflows.admin_views import dashboard as dashboard_views

from .workflows import FLAKY

pytestmark = pytest.mark.django_db

URL = "/admin/slct_workflows/processinstance/dashboard/"


def words(response) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


class FakeRegistry:
    def __init__(self, n):
        self.count = n


class FakeQueue:
    count = 7
    scheduled_job_registry = FakeRegistry(2)
    failed_job_registry = FakeRegistry(1)


@pytest.fixture
def queue_of_seven(monkeypatch):
    import django_rq

    monkeypatch.setattr(django_rq, "get_queue", lambda name: FakeQueue())


@pytest.fixture
def populated(run, settings):
    settings.SLCT_MAX_ATTEMPTS = 1
    FLAKY["fail"] = True
    ids = {
        "r1": run.start("reminder", {"every": 60, "answers": "ans-1", "nudges": "nud-1"}),
        "r2": run.start("reminder", {"every": 3600, "answers": "ans-1", "nudges": "nud-2"}),
        "r3": run.start("reminder", {"every": 3600, "answers": "ans-3", "nudges": "nud-3"}),
        "c1": run.start("counter", {"channel": "cnt"}),
        "f1": run.start("admin-test-flaky"),
    }
    run.send("ans-3", "ok")  # r3 done
    clock.advance(timedelta(seconds=150))  # r1's reminder timer is due; nobody ran it
    return ids


def test_dashboard_counts_waiting_failures_overdue_and_queue(populated, admin_client_, queue_of_seven):
    r = admin_client_.get(URL)
    text = words(r)
    content = r.content.decode()
    # Processes by definition and status (running, done, failed, cancelled, total).
    assert re.search(r"reminder 2 1 0 0 3", text), text
    assert re.search(r"counter 1 0 0 0 1", text)
    assert re.search(r"admin-test-flaky 0 0 1 0 1", text)
    assert "?definition=reminder&amp;status__exact=running" in content
    # Goroutines waiting by channel: two receivers on ans-1, one on cnt.
    assert re.search(r"ans-1 2 0 0", text) and re.search(r"cnt 1 0 0", text)
    assert "ans-3" not in text
    # The failed process, with its error.
    assert populated["f1"] in text and "RuntimeError: boom" in text
    assert re.search(r'id="slct-failed-count">1<', content)
    # Overdue: r1's Reminder timer (deadline +60s, now +150s).
    assert re.search(r'id="slct-overdue-count">1<', content)
    assert re.search(rf"{populated['r1']} reminder Reminder .* 1m 30s Reminder_Nudge", text)
    # The queue, and a link to django-rq's own pages.
    assert re.search(r'id="slct-queue-count">7<', content)
    assert "2 scheduled, 1 failed" in text
    assert 'href="/django-rq/"' in content
    assert 'id="slct-sweep"' in content


def test_dashboard_renders_when_redis_is_unreachable(populated, admin_client_, settings, unused_port):
    settings.RQ_QUEUES = {settings.SLCT_QUEUE: {"URL": f"redis://127.0.0.1:{unused_port}/0"}}
    text = words(admin_client_.get(URL))
    assert "Redis is unreachable" in text
    assert "ConnectionError" in text
    assert re.search(r"reminder 2 1 0 0 3", text)  # the rest of the page is still there


def test_a_hanging_redis_does_not_hang_the_dashboard(monkeypatch):
    import threading

    import django_rq

    release = threading.Event()

    def hang(name):
        release.wait(5)
        raise TimeoutError("late")

    monkeypatch.setattr(django_rq, "get_queue", hang)
    info = dashboard_views.queue_info(timeout=0.2)
    release.set()
    assert info["ok"] is False and "timed out" in info["error"]


def test_the_admin_index_links_to_the_dashboard(admin_client_, make_client):
    content = admin_client_.get("/admin/").content.decode()
    assert f'href="{URL}"' in content
    nobody = make_client("view_channel")
    assert f'href="{URL}"' not in nobody.get("/admin/").content.decode()
    assert nobody.get(URL).status_code == 403


def test_view_only_user_sees_the_dashboard_without_the_sweep(populated, make_client, queue_of_seven):
    r = make_client("view_processinstance").get(URL)
    assert r.status_code == 200
    assert 'id="slct-sweep"' not in r.content.decode()


def test_empty_dashboard(admin_client_, queue_of_seven):
    text = words(admin_client_.get(URL))
    assert "no processes yet" in text and "nobody waits on a channel" in text
