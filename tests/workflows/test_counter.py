"""The demo `counter` process (slct_project/workflows.py)."""
from __future__ import annotations

from datetime import timedelta


def test_counts_values_and_finishes_after_an_idle_hour(workflow_runner):
    run = workflow_runner
    pid = run.start("counter")
    run.assert_waits(pid, Main=["recv counter", "timer"])
    assert run.timers(pid) == {"Main": [timedelta(hours=1)]}
    for value in ("a", "b", "c"):
        assert run.send("counter", value).status == "delivered"
    run.assert_state(pid, counter=3, values=["a", "b", "c"])
    run.advance(minutes=59, seconds=59)
    run.assert_running(pid)
    run.advance(seconds=1)
    run.assert_finished(pid, {"count": 3})
    run.assert_history(pid, ["start", "Main.Main_Start", "Main.Main_Count", "Main.Main_Count", "Main.Main_Count",
                             "Main.Main_Done"])
    run.assert_statuses(pid, Main="done")


def test_each_value_restarts_the_idle_timer(workflow_runner):
    run = workflow_runner
    pid = run.start("counter", {"idle_seconds": 600})
    for _ in range(3):
        run.advance(minutes=9)
        run.send("counter", 1)
    run.advance(minutes=9)
    run.assert_running(pid)  # 36 minutes in, but never 10 idle minutes
    run.advance(minutes=1)
    run.assert_finished(pid, {"count": 3})


def test_a_value_sent_before_anyone_listens_waits_for_the_receiver(workflow_runner):
    run = workflow_runner
    assert run.send("early", {"n": 1}).status == "waiting"
    pid = run.start("counter", {"channel": "early"})
    run.assert_state(pid, counter=1, values=[{"n": 1}])
    run.assert_waits(pid, Main=["recv early", "timer"])


def test_two_counters_on_one_channel_get_each_value_once(workflow_runner):
    run = workflow_runner
    first = run.start("counter", {"channel": "shared"})
    second = run.start("counter", {"channel": "shared"})
    for i in range(5):
        run.send("shared", i)
    a, b = run.state(first), run.state(second)
    assert a["counter"] + b["counter"] == 5
    assert sorted(a["values"] + b["values"]) == [0, 1, 2, 3, 4]
    assert a["values"][0] == 0  # the oldest waiter gets the first value


def test_zero_idle_time_finishes_at_once(workflow_runner):
    pid = workflow_runner.start("counter", {"idle_seconds": 0})
    workflow_runner.assert_finished(pid, {"count": 0})
