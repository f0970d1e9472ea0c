"""A Slack question that times out while its process goes on is closed, whichever path fires
the timer (issue 14): the workers' timer loop, the scheduled timer jobs, the recovery sweep's
re-enqueued wake-up. The engine raises hooks.SelectFired(by="timer") on every one of them,
inside the firing transaction; the Slack integration follows that hook (no model signals), and
its sync job edits the message: "Timed out", no buttons."""
from __future__ import annotations

from datetime import timedelta

import pytest

from slack_integration.models import SlackMessage, Status
from slct_workflows import clock, services
from slct_workflows.models import Goroutine, GoroutineStatus, NextKind, PendingCase
from slct_workflows.runtime import timers
from slct_workflows.workers import jobs
from tests.slack import workflows  # noqa: F401 - registers the definitions


def _timer_loop(gid: int) -> None:
    fired, done = timers.fire_due()  # what TimerLoop._round runs
    assert (fired, done) == (1, True)


def _scheduled_fire_timers_job(gid: int) -> None:
    assert jobs.fire_timers() == 1  # the one-second `fire_timers` job RQ's scheduler runs


def _scheduled_wake_timer_job(gid: int) -> None:
    jobs.wake_timer(gid)  # the goroutine's own scheduled job


def _sweep_then_worker(gid: int) -> None:
    report = services.sweep(grace_seconds=0)
    assert report.timers == 1  # the sweep found the overdue timer and re-enqueued its goroutine
    jobs.wake(gid)  # ... which a worker then runs: the job fires the due timer first


PATHS = {
    "timer loop": _timer_loop,
    "scheduled fire_timers job": _scheduled_fire_timers_job,
    "scheduled wake_timer job": _scheduled_wake_timer_job,
    "sweep": _sweep_then_worker,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_timed_out_question_is_closed_on_every_firing_path(path, runner, slack_settings, fake_slack):
    pid = runner.start("slack-test-approve-and-go-on", {"timeout": 60})
    message = SlackMessage.objects.get(process_id=pid)
    assert message.status == Status.OPEN
    main = Goroutine.objects.get(process_id=pid, name="Main")
    assert main.status == GoroutineStatus.BLOCKED

    clock.advance(timedelta(seconds=61))
    PATHS[path](main.id)
    main.refresh_from_db()
    # Fired by the path under test (the runner below finds no due timer left).
    assert main.next_kind in (NextKind.TIMER, "") and PendingCase.objects.due_timers(clock.now()).count() == 0

    runner.run()  # the woken step, then the outbox: the Slack sync the hook recorded
    assert runner.process(pid).status == "running"  # the process goes on: it did not end
    message.refresh_from_db()
    assert message.status == Status.TIMED_OUT
    shown = fake_slack.messages[(message.slack_channel, message.ts)]
    assert "Timed out" in shown["text"]
    assert not [b for b in shown["blocks"] if b["type"] == "actions"]  # the buttons are gone

    runner.send("go-on-more", "later")
    out = runner.process(pid).output
    assert out["outcome"]["timed_out"] is True and out["more"] == "later"


def test_without_the_hook_the_question_would_stay_open(runner, slack_settings, fake_slack):
    """The control: with the integration's listener unsubscribed, the same timeout leaves the
    message open with its buttons (what post_save missed before), so the test above is not
    passing by some other route."""
    from slack_integration import listeners
    from slct_workflows import hooks

    pid = runner.start("slack-test-approve-and-go-on", {"timeout": 60})
    hooks.unsubscribe(hooks.SelectFired, listeners.select_fired)
    try:
        runner.advance(seconds=61)
    finally:
        listeners.connect()
    assert SlackMessage.objects.get(process_id=pid).status == Status.OPEN
