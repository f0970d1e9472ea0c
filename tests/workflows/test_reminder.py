"""The demo `reminder` process (slct_project/workflows.py): two goroutines, one process."""
from __future__ import annotations


def test_nudges_until_answered_then_the_reminder_goroutine_is_cancelled(workflow_runner):
    run = workflow_runner
    pid = run.start("reminder", {"every": 1800})
    run.assert_waits(pid, Main=["recv answers"], Reminder=["timer"])
    run.advance(minutes=30)
    run.advance(minutes=30)
    run.assert_state(pid, reminders=2)
    run.send("answers", "yes")
    run.assert_finished(pid, {"answer": "yes", "reminders": 2})
    run.assert_statuses(pid, Main="done", Reminder="cancelled")
    run.assert_history(pid, ["start", "Main.Main_Start", "Reminder.Reminder_Start", "Reminder.Reminder_Nudge",
                             "Reminder.Reminder_Start", "Reminder.Reminder_Nudge", "Reminder.Reminder_Start",
                             "Main.Main_Answered"])


def test_no_nudge_before_the_interval(workflow_runner):
    run = workflow_runner
    pid = run.start("reminder", {"every": 600})
    run.advance(minutes=9, seconds=59)
    run.assert_state(pid, reminders=0)
    run.advance(seconds=1)
    run.assert_state(pid, reminders=1)


def test_nudges_reach_a_listener_and_are_dropped_without_one(workflow_runner):
    run = workflow_runner
    pid = run.start("reminder", {"every": 60, "nudges": "pings", "answers": "reply"})
    run.advance(minutes=1)  # nobody listens: the send's default case drops the nudge
    run.assert_state(pid, reminders=1)
    assert run.buffer("pings") == []
    run.assert_waits(pid, Reminder=["timer"])

    listener = run.start("counter", {"channel": "pings", "idle_seconds": 3600})
    run.advance(minutes=1)
    run.advance(minutes=1)
    run.assert_state(listener, values=[{"reminder": 2}, {"reminder": 3}])
    run.send("reply", {"ok": True})
    run.assert_finished(pid, {"answer": {"ok": True}, "reminders": 3})
    run.advance(hours=1)
    run.assert_finished(listener, {"count": 2})


def test_two_reminders_do_not_share_answers(workflow_runner):
    run = workflow_runner
    a = run.start("reminder", {"answers": "answers-a"})
    b = run.start("reminder", {"answers": "answers-b"})
    run.send("answers-b", "b")
    run.assert_finished(b, {"answer": "b", "reminders": 0})
    run.assert_running(a)
    run.assert_waits(a, Main=["recv answers-a"], Reminder=["timer"])
