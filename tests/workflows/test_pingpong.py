"""The demo `pingpong` processes (slct_project/workflows.py): a rendezvous on unbuffered channels."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("pong_first", [False, True])
def test_the_ball_goes_back_and_forth_until_rounds(workflow_runner, pong_first):
    run = workflow_runner
    ping_input = {"role": "ping", "inbox": "to-ping", "outbox": "to-pong", "rounds": 6}
    pong_input = {"role": "pong", "inbox": "to-pong", "outbox": "to-ping", "rounds": 6}
    if pong_first:
        pong = run.start("pingpong", pong_input)
        run.assert_waits(pong, Main=["recv to-pong"])
        ping = run.start("pingpong", ping_input)
    else:
        ping = run.start("pingpong", ping_input)
        run.assert_waits(ping, Main=["send to-pong"])  # unbuffered: blocks until someone receives
        pong = run.start("pingpong", pong_input)
    run.assert_finished(ping, {"last": 5})
    run.assert_finished(pong, {"last": 5})
    run.assert_history(ping, ["start", "Main.Main_Start", "Main.Main_Sent", "Main.Main_Received",
                              "Main.Main_Sent", "Main.Main_Received", "Main.Main_Sent", "Main.Main_Received"])
    assert run.history(pong).count("Main.Main_Received") == 3
    assert run.buffer("to-ping") == run.buffer("to-pong") == []


def test_a_lone_ping_waits_forever(workflow_runner):
    run = workflow_runner
    ping = run.start("pingpong", {"role": "ping", "inbox": "in", "outbox": "out", "rounds": 2})
    run.advance(hours=24 * 30)
    run.assert_running(ping)
    run.assert_waits(ping, Main=["send out"])


def test_the_outside_world_can_play_pong(workflow_runner):
    run = workflow_runner
    ping = run.start("pingpong", {"role": "ping", "inbox": "in", "outbox": "out", "rounds": 4})
    # a counter process takes the serves; the test sends the returns from outside
    counter = run.start("counter", {"channel": "out"})
    run.assert_state(counter, values=[0])
    run.assert_waits(ping, Main=["recv in"])
    run.send("in", 1)
    run.assert_state(ping, last=1)
    run.assert_state(counter, values=[0, 2])  # the counter was waiting: the rendezvous was immediate
    run.assert_waits(ping, Main=["recv in"])
    run.send("in", 3)
    run.assert_finished(ping, {"last": 3})
