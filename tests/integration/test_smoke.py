import pytest

from slct_workflows.testing import WorkflowRunner

pytestmark = pytest.mark.django_db


def test_counter_counts_and_finishes_after_silence():
    with WorkflowRunner() as run:
        pid = run.start("counter", {"idle_seconds": 3600})
        assert run.waits(pid)["Main"] == ["recv counter", "timer"]
        for i in range(3):
            r = run.send("counter", i)
            assert r.status == "delivered"
        assert run.state(pid)["counter"] == 3
        run.advance(minutes=59)
        assert run.process(pid).status == "running"
        run.advance(minutes=2)
        run.assert_finished(pid, {"count": 3})


def test_pingpong():
    with WorkflowRunner() as run:
        a = run.start("pingpong", {"role": "ping", "inbox": "a", "outbox": "b", "rounds": 6})
        b = run.start("pingpong", {"role": "pong", "inbox": "b", "outbox": "a", "rounds": 6})
        run.assert_finished(a)
        run.assert_finished(b)
