"""The runaway guard (DESIGN 2.9, docs/OPERATIONS.md "Runaway goroutines").

A goroutine whose select keeps firing at once on its own (a closed channel, a default(), a due
timer, its own buffered values) is paused after SLCT_RUNAWAY_STEPS such fires in a row, inside the
step's transaction; the reason shows in REST, the admin and the dashboard; an operator resumes it
(REST, admin, service). Values others send never count: draining a buffer, or a consumer behind a
busy channel, is work between parties.

The definitions here are also loaded by the e2e test's workers (SLCT_WORKFLOW_MODULES).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from slct_workflows import Process, clock, register, services

from slct_workflows.runtime import dispatch
from slct_workflows.errors import Conflict
from slct_workflows.models import Event, EventKind, Goroutine, GoroutineStatus, ProcessStatus


@register("runaway-counter")
@dataclass
class RunawayCounter:
    """The README's counter as it was: after `services.close_channel(...)` its receive is always
    ready (closed) and it counts forever."""

    counter: int = 0
    channel: str = "counter"

    def Main_Start(self, p: Process, input=None):
        self.channel = (input or {}).get("channel", self.channel)
        self.Main_Count(p)

    def Main_Count(self, p: Process, value=None):
        self.counter += 1
        (p.select()
           .recv(self.channel).to(self.Main_Count)
           .after(timedelta(hours=1)).to(self.Main_Done))

    def Main_Done(self, p: Process):
        p.finish({"count": self.counter})


@register("runaway-self-drain")
@dataclass
class SelfDrain:
    """Buffers `n` values of its own into a channel it makes, then drains them: `n` receives
    that fire at once with its own values (they count), then finishes."""

    n: int = 0
    chan: str = ""
    sent: int = 0
    got: list = None

    def Main_Start(self, p: Process, input):
        self.n, self.got = input["n"], []
        self.chan = p.make_chan(self.n)
        self.Main_Sent(p)

    def Main_Sent(self, p: Process):
        if self.sent < self.n:
            self.sent += 1
            p.select().send(self.chan, self.sent).to(self.Main_Sent)
        else:
            p.select().recv(self.chan).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        self.got.append(value)
        if len(self.got) == self.n:
            p.finish({"got": len(self.got)})
        else:
            p.select().recv(self.chan).to(self.Main_Got)


@register("runaway-drain")
@dataclass
class Drain:
    """Receives `n` values from a channel others fill, then finishes."""

    n: int = 0
    chan: str = ""
    got: int = 0

    def Main_Start(self, p: Process, input):
        self.n, self.chan = input["n"], input["chan"]
        p.select().recv(self.chan).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        self.got += 1
        if self.got == self.n:
            p.finish({"got": self.got})
        else:
            p.select().recv(self.chan).to(self.Main_Got)


@register("runaway-slow-poller")
@dataclass
class SlowPoller:
    """Polls with default() `n` times, each step taking a second of (test) clock: busy, but slow."""

    n: int = 0
    polls: int = 0

    def Main_Start(self, p: Process, input):
        self.n = input["n"]
        self.Main_Poll(p)

    def Main_Poll(self, p: Process):
        self.polls += 1
        clock.advance(timedelta(seconds=1))  # the step's own work
        if self.polls >= self.n:
            p.finish({"polls": self.polls})
        else:
            p.select().recv("runaway-never").to(self.Main_Poll).default().to(self.Main_Poll)


LIMIT = 50


@pytest.fixture
def limit(settings):
    settings.SLCT_RUNAWAY_STEPS = LIMIT
    settings.SLCT_RUNAWAY_RATE = 0
    return LIMIT


def main(pid: str) -> Goroutine:
    return Goroutine.objects.get(process_id=pid, name="Main")


def counts(pid: str) -> int:
    return Event.objects.filter(process_id=pid, kind=EventKind.STEP, method="Main_Count").count()


def paused_counter(run, channel: str = "rc") -> str:
    pid = run.start("runaway-counter", {"channel": channel})
    run.assert_waits(pid, Main=[f"recv {channel}", "timer"])
    run.close(channel)  # runs until everything rests: the guard must stop it (else Stuck)
    return pid


# -- the guard ------------------------------------------------------------------------------------

def test_the_closed_channel_counter_is_paused_within_the_limit(runner, limit):
    pid = paused_counter(runner)
    g = main(pid)
    assert g.status == GoroutineStatus.PAUSED
    assert g.hot_steps == limit
    # Woken by the close, every Main_Count step fired at once on the closed channel: the
    # `limit`-th is the last one.
    assert counts(pid) == limit
    assert "runaway" in g.paused_reason and "recv rc (closed)" in g.paused_reason
    assert f"SLCT_RUNAWAY_STEPS={limit}" in g.paused_reason
    # The fired select is kept for the resume; nothing is lost, the process still runs.
    assert g.next_method == "Main_Count" and g.next_closed and g.runnable_since is None
    runner.assert_running(pid)
    pause = Event.objects.get(process_id=pid, kind=EventKind.PAUSE)
    assert pause.goroutine == "Main" and pause.detail["reason"] == g.paused_reason
    assert pause.seq == runner.process(pid).step_count  # seq follows the step that paused
    last_step = Event.objects.filter(process_id=pid, kind=EventKind.STEP).order_by("-seq").first()
    assert last_step.seq == pause.seq - 1 and "paused by the runaway guard" in last_step.detail["next"]
    assert runner.history(pid)[-2:] == ["Main.Main_Count", "pause"]
    assert "Main: paused" in runner.describe(pid)


def test_a_paused_goroutine_is_not_run_again(runner, limit):
    from slct_workflows.runtime import engine
    from slct_workflows.workers import jobs

    pid = paused_counter(runner)
    g = main(pid)
    steps = runner.process(pid).step_count
    assert engine.run_step(g.id).ran is False
    assert jobs.wake(g.id) == 0  # a worker given the id does nothing (no spinning)
    assert services.sweep(grace_seconds=0).runnable == 0
    assert runner.run() == 0
    assert runner.process(pid).step_count == steps


def test_the_guard_is_off_with_zero(db, settings):
    from slct_workflows.testing import Stuck, WorkflowRunner

    settings.SLCT_RUNAWAY_STEPS = 0
    with WorkflowRunner(max_steps=300) as run:
        pid = run.start("runaway-counter", {"channel": "rc-off"})
        with pytest.raises(Stuck):
            run.close("rc-off")
    assert main(pid).status == GoroutineStatus.RUNNABLE


def test_the_count_restarts_when_the_goroutine_blocks(runner, limit):
    """A step that blocks resets the count: the guard counts fires *in a row*."""
    pid = runner.start("runaway-counter", {"channel": "rc-reset"})
    for i in range(3 * limit):  # many steps, each after blocking
        runner.send("rc-reset", i)
    g = main(pid)
    assert g.status == GoroutineStatus.BLOCKED and g.hot_steps == 0
    assert counts(pid) == 3 * limit


# -- resuming -------------------------------------------------------------------------------------

def test_resume_through_the_service_runs_it_again_and_it_pauses_again(runner, limit, django_capture_on_commit_callbacks):
    pid = paused_counter(runner)
    g = main(pid)
    woken: list[int] = []

    class Recorder(type(dispatch.get())):
        def wake(self, ids, at_front=False):
            woken.extend(ids)

    previous = dispatch.use(Recorder())
    try:
        with django_capture_on_commit_callbacks(execute=True):
            proc = services.resume_process(pid)
    finally:
        dispatch.use(previous)
    assert woken == [g.id]  # enqueued after commit
    g.refresh_from_db()
    assert g.status == GoroutineStatus.RUNNABLE and g.hot_steps == 0 and g.paused_reason == ""
    assert g.runnable_since is not None
    resume = Event.objects.get(process_id=pid, kind=EventKind.RESUME)
    assert resume.seq == proc.step_count and resume.detail["goroutines"] == ["Main"]
    assert "runaway" in resume.detail["reasons"]["Main"]

    runner.run()  # the channel is still closed: paused again after another `limit` fires
    g.refresh_from_db()
    assert g.status == GoroutineStatus.PAUSED and g.hot_steps == limit
    assert counts(pid) == 2 * limit  # the resumed goroutine ran its kept Main_Count first
    assert Event.objects.filter(process_id=pid, kind=EventKind.PAUSE).count() == 2


def test_resume_refuses_what_is_not_paused(runner, limit):
    pid = runner.start("runaway-counter", {"channel": "rc-none"})
    with pytest.raises(Conflict, match="no paused goroutines"):
        services.resume_process(pid)
    paused = paused_counter(runner, "rc-cancel")
    runner.cancel(paused)
    assert main(paused).status == GoroutineStatus.CANCELLED  # cancel ends paused goroutines too
    with pytest.raises(Conflict, match="only running processes can be resumed"):
        services.resume_process(paused)
    from slct_workflows.errors import NotFound

    with pytest.raises(NotFound):
        services.resume_process("no-such-process")


def test_a_paused_goroutine_resumes_into_a_fixed_world(runner, limit):
    """Resumed after the cause is gone (here: the process finishes through its other case once
    the timer is due), it runs its kept step and goes on normally."""
    pid = paused_counter(runner, "rc-fix")
    runner.advance(hours=2)  # the timer case is not pending while paused: nothing happens
    assert main(pid).status == GoroutineStatus.PAUSED
    services.resume_process(pid)
    runner.run()
    # Still closed: it loops again, and is paused again; the operator cancels it.
    assert main(pid).status == GoroutineStatus.PAUSED
    runner.cancel(pid, "runaway")
    runner.assert_status(pid, ProcessStatus.CANCELLED)


# -- REST -----------------------------------------------------------------------------------------

def _api(django_user_model, *codenames: str):
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIClient

    user = django_user_model.objects.create_user(username=f"u-{'-'.join(codenames) or 'none'}", password="pw")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="slct_workflows", codename__in=codenames)
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_rest_shows_the_reason_and_resumes(runner, limit, django_user_model):
    pid = paused_counter(runner)
    viewer = _api(django_user_model, "view_processinstance")
    body = viewer.get(f"/api/processes/{pid}/").json()
    assert body["status"] == "running"
    (g,) = body["goroutines"]
    assert g["status"] == "paused"
    assert "runaway" in g["paused_reason"] and "recv rc (closed)" in g["paused_reason"]
    assert "paused by the runaway guard" in g["waits_for"]

    refused = viewer.post(f"/api/processes/{pid}/resume/")
    assert refused.status_code == 403
    assert main(pid).status == GoroutineStatus.PAUSED

    operator = _api(django_user_model, "view_processinstance", "change_processinstance")
    resumed = operator.post(f"/api/processes/{pid}/resume/")
    assert resumed.status_code == 200, resumed.content
    (g,) = resumed.json()["goroutines"]
    assert g["status"] == "runnable" and g["paused_reason"] is None

    again = operator.post(f"/api/processes/{pid}/resume/")
    assert again.status_code == 409 and "no paused goroutines" in again.json()["detail"]
    assert operator.post("/api/processes/nope/resume/").status_code == 404

    runner.run()  # still runaway: paused again, and REST says so
    (g,) = viewer.get(f"/api/processes/{pid}/").json()["goroutines"]
    assert g["status"] == "paused" and g["paused_reason"]


# -- the admin ------------------------------------------------------------------------------------

@pytest.fixture
def admin_client_(db, django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_superuser("runaway-admin", "a@example.com", None)
    c = Client()
    c.force_login(user)
    return c


def test_the_admin_process_page_shows_the_reason_and_resumes_with_confirmation(runner, limit, admin_client_):
    from slct_workflows.admin_views.common import process_url

    pid = paused_counter(runner)
    reason = main(pid).paused_reason
    page = admin_client_.get(process_url(pid)).content.decode()
    assert 'id="slct-paused"' in page and 'id="slct-resume"' in page
    assert "recv rc (closed)" in page and "slct-badge paused" in page

    confirm = admin_client_.get(process_url(pid, "resume"))
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Resume process" in text and "recv rc (closed)" in text
    assert main(pid).status == GoroutineStatus.PAUSED  # the GET changed nothing

    done = admin_client_.post(process_url(pid, "resume"), {"confirm": "yes"})
    assert done.status_code == 302
    g = main(pid)
    assert g.status == GoroutineStatus.RUNNABLE and g.paused_reason == ""
    assert reason in Event.objects.get(process_id=pid, kind=EventKind.RESUME).detail["reasons"]["Main"]
    page = admin_client_.get(process_url(pid)).content.decode()
    assert 'id="slct-resume"' not in page


def test_the_admin_list_dashboard_and_bulk_resume(runner, limit, admin_client_):
    from django.urls import reverse

    pid = paused_counter(runner, "rc-list")
    other = runner.start("counter", {"channel": "rc-calm"})
    changelist = reverse("admin:slct_workflows_processinstance_changelist")
    listing = admin_client_.get(changelist).content.decode()
    assert "1 paused" in listing
    filtered = admin_client_.get(changelist + "?paused=yes").content.decode()
    assert pid in filtered and other not in filtered

    dash = admin_client_.get(reverse("admin:slct_workflows_processinstance_dashboard")).content.decode()
    assert 'id="slct-paused-count">1<' in dash and pid in dash and "recv rc-list (closed)" in dash

    from django.contrib.admin import helpers

    data = {"action": "resume_selected", helpers.ACTION_CHECKBOX_NAME: [pid, other]}
    confirm = admin_client_.post(changelist, data)
    assert confirm.status_code == 200 and "Resume 2 process(es)?" in confirm.content.decode()
    assert main(pid).status == GoroutineStatus.PAUSED
    done = admin_client_.post(changelist, {**data, "confirm": "yes"}, follow=True)
    text = done.content.decode()
    assert "Resume: 1 process(es)." in text and "no paused goroutines" in text  # the calm one is refused
    assert main(pid).status == GoroutineStatus.RUNNABLE


def test_an_operator_without_the_change_permission_cannot_resume(runner, limit, django_user_model):
    from django.contrib.auth.models import Permission
    from django.test import Client

    from slct_workflows.admin_views.common import process_url

    pid = paused_counter(runner)
    user = django_user_model.objects.create_user("viewer", "v@example.com", None, is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="slct_workflows",
                                                     codename="view_processinstance"))
    c = Client()
    c.force_login(user)
    page = c.get(process_url(pid)).content.decode()
    assert "recv rc (closed)" in page and 'id="slct-resume"' not in page
    assert c.post(process_url(pid, "resume"), {"confirm": "yes"}).status_code == 403
    assert main(pid).status == GoroutineStatus.PAUSED


# -- what must not trip ---------------------------------------------------------------------------

def test_draining_a_buffer_others_filled_never_counts(runner, limit):
    """Values others sent are work between parties: a drain longer than the limit goes through."""
    n = 3 * limit
    services.create_channel("rd-buf", n)
    for i in range(n):
        assert runner.send("rd-buf", i).status == "buffered"
    pid = runner.start("runaway-drain", {"n": n, "chan": "rd-buf"})
    runner.assert_finished(pid, {"got": n})
    assert not Event.objects.filter(process_id=pid, kind=EventKind.PAUSE).exists()


def test_draining_its_own_buffer_below_the_limit_does_not_trip(runner, limit):
    pid = runner.start("runaway-self-drain", {"n": limit - 1})
    runner.assert_finished(pid, {"got": limit - 1})


def test_draining_its_own_buffer_beyond_the_limit_trips(runner, limit):
    pid = runner.start("runaway-self-drain", {"n": limit + 10})
    g = main(pid)
    assert g.status == GoroutineStatus.PAUSED and "Main_Got" in g.paused_reason
    services.resume_process(pid)  # a legitimate burst: resuming lets it finish
    runner.run()
    runner.assert_finished(pid, {"got": limit + 10})


def test_the_rate_option_lets_a_slow_busy_goroutine_go_on(runner, settings):
    settings.SLCT_RUNAWAY_STEPS = 20
    settings.SLCT_RUNAWAY_RATE = 5  # steps/s; each poll takes a second of the test clock
    pid = runner.start("runaway-slow-poller", {"n": 70})
    runner.assert_finished(pid, {"polls": 70})

    settings.SLCT_RUNAWAY_RATE = 0  # the count alone: paused at 20
    pid = runner.start("runaway-slow-poller", {"n": 70})
    assert main(pid).status == GoroutineStatus.PAUSED and main(pid).hot_steps == 20

    settings.SLCT_RUNAWAY_RATE = 1000  # faster than any frozen-clock loop can be measured: paused
    pid = runner.start("runaway-counter", {"channel": "rc-rate"})
    runner.close("rc-rate")
    assert main(pid).status == GoroutineStatus.PAUSED and main(pid).hot_steps == 20


def test_the_demos_do_not_trip_even_with_a_tiny_limit(runner, settings):
    settings.SLCT_RUNAWAY_STEPS = 3
    c = runner.start("counter", {"channel": "demo-c", "idle_seconds": 60})
    for i in range(30):
        runner.send("demo-c", i)
    runner.advance(seconds=60)
    runner.assert_finished(c, {"count": 30})

    a = runner.start("pingpong", {"role": "pong", "inbox": "demo-a", "outbox": "demo-b", "rounds": 60})
    b = runner.start("pingpong", {"role": "ping", "inbox": "demo-b", "outbox": "demo-a", "rounds": 60})
    runner.assert_finished(a)
    runner.assert_finished(b)

    r = runner.start("reminder", {"every": 60, "answers": "demo-ans", "nudges": "demo-nudges"})
    listener = runner.start("counter", {"channel": "demo-nudges", "idle_seconds": 3600})
    for _ in range(10):
        runner.advance(minutes=1)
    runner.send("demo-ans", "ok")
    runner.assert_finished(r, {"answer": "ok", "reminders": 10})
    assert not Goroutine.objects.filter(status=GoroutineStatus.PAUSED).exists()
    runner.cancel(listener)


def test_the_bench_fan_in_never_trips_even_with_a_tiny_limit(db, settings):
    """The bench's fan-in (tests of its figures run it for real): 20 senders keep a buffer of 10
    full for one sink, whose every receive fires at once; none of it is a runaway."""
    import bench.workflows  # noqa: F401  (registers bench-sender, bench-sink)
    from slct_workflows.testing import Stuck, WorkflowRunner

    settings.SLCT_RUNAWAY_STEPS = 3
    with WorkflowRunner(max_steps=600) as run:
        services.create_channel("bench-fanin", 10)
        sink = services.start_process("bench-sink", {"chan": "bench-fanin"}).process.id
        for _ in range(20):
            services.start_process("bench-sender", {"chan": "bench-fanin"})
        with pytest.raises(Stuck):  # they run forever: the runner stops them
            run.run()
        assert run.state(sink)["count"] > 200
        assert not Goroutine.objects.filter(status=GoroutineStatus.PAUSED).exists()


def test_the_demo_counter_finishes_when_its_channel_closes(runner, limit):
    pid = runner.start("counter", {"channel": "demo-close"})
    runner.send("demo-close", 1)
    runner.send("demo-close", 2)
    runner.close("demo-close")
    runner.assert_finished(pid, {"count": 2})
    assert not Event.objects.filter(process_id=pid, kind=EventKind.PAUSE).exists()


@pytest.mark.parametrize("every", [0, -5, 0.0001])
def test_the_reminder_cannot_nudge_without_waiting(runner, limit, every):
    pid = runner.start("reminder", {"every": every, "answers": f"ans-{every}", "nudges": f"nud-{every}"})
    runner.assert_waits(pid, Main=[f"recv ans-{every}"], Reminder=["timer"])
    runner.assert_state(pid, every=1.0, reminders=0)
    assert runner.timers(pid)["Reminder"] == [timedelta(seconds=1)]
    for _ in range(10):
        runner.advance(seconds=1)
    runner.assert_state(pid, reminders=10)
    assert not Goroutine.objects.filter(process_id=pid, status=GoroutineStatus.PAUSED).exists()
