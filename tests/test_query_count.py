"""SQL queries per step: an upper bound, so a regression in the engine's query count shows.

Every step is one transaction; its queries are most of its cost (see docs/PERFORMANCE.md). This
drives two "pingpong" processes (slct_project/workflows.py) step by step with
slct_workflows.runtime.engine.run_step, in real transactions (transactional_db, as in a worker), and counts
the queries of each kind of step in the steady state:

* a step whose select sends to a goroutine blocked on the channel (rendezvous: fires it);
* a step whose select receives and blocks (nobody sending yet);
* the same two for the steps that start the processes.

BEGIN/COMMIT are not counted (Django logs them on SQLite only); SAVEPOINTs are. Nor is the
one-time preparation of a fixed statement on PostgreSQL (tests/sql_log.py). Set
SLCT_PRINT_QUERIES=1 (with pytest -s) to see every query of every step.
"""
from __future__ import annotations

import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from slct_workflows import services

from slct_workflows.runtime import engine, timers
from slct_workflows.models import Goroutine, GoroutineStatus
from slct_workflows.testing import WorkflowRunner
from tests.sql_log import sent

TX_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")

# Upper bounds (measured + a small margin). Lower them when the engine gets cheaper.
# Measured on 2026-11-27 (engine at b2babef), SQLite and PostgreSQL alike: 10 / 8 / 10, and 10 for
# the first select on a channel that does not exist yet (it is created in the step). Unchanged on
# 2026-11-28: that day's work made the statements cheaper (SQL written once, see fixed_sql.py),
# not fewer, except for the step that ends a process (no query for "was that the last goroutine").
# 2026-11-30 (issue 17): the counterpart is fired by one conditional UPDATE instead of a locking
# SELECT, then DELETE, then UPDATE: 9 statements; on PostgreSQL they travel in 3 round trips.
MAX_SEND_FIRES = 9    # Main_Received: receive the value, send it back to a blocked receiver
# Main_Sent: select recv, nobody sending: register the pending case. 8 in the steady state; the
# first select on a channel that does not exist yet creates it, then locks it and reads its
# waiters again (11: a waiter registered by whoever created it concurrently must be seen).
MAX_RECV_BLOCKS = 11
MAX_START = 12        # Main_Start of either side


def _main(process_id: str) -> int:
    return Goroutine.objects.get(process_id=process_id, name="Main").id


def _step(gid: int) -> tuple[engine.StepResult, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        result = engine.run_step(gid)
    # SQLite's backend logs its BEGIN IMMEDIATE and COMMIT, PostgreSQL's does not: leave them out
    queries = sent(ctx.captured_queries, TX_CONTROL)
    if os.environ.get("SLCT_PRINT_QUERIES"):
        print(f"\n--- goroutine {gid}: {len(queries)} queries")
        print("\n".join(f"  {i + 1:2}. {q[:150]}" for i, q in enumerate(queries)))
    return result, queries


def _status(gid: int) -> str:
    return Goroutine.objects.get(pk=gid).status


def _explain(name: str, queries: list[str], limit: int) -> str:
    listing = "\n".join(f"  {i + 1:2}. {q[:160]}" for i, q in enumerate(queries))
    return f"{name}: {len(queries)} queries > {limit}:\n{listing}"


@pytest.mark.django_db(transaction=True)
def test_queries_per_pingpong_step():
    with WorkflowRunner():
        pong = services.start_process("pingpong", {"role": "pong", "inbox": "qa", "outbox": "qb", "rounds": 100})
        ping = services.start_process("pingpong", {"role": "ping", "inbox": "qb", "outbox": "qa", "rounds": 100})
        pong_g, ping_g = _main(pong.process.id), _main(ping.process.id)

        # pong starts and blocks on recv qa
        result, q = _step(pong_g)
        assert result.ran and _status(pong_g) == GoroutineStatus.BLOCKED
        assert len(q) <= MAX_START, _explain("pong Main_Start (recv, blocks)", q, MAX_START)

        # ping starts and sends 0 on qa: rendezvous with the blocked pong
        result, q = _step(ping_g)
        assert result.ran and _status(pong_g) == GoroutineStatus.RUNNABLE
        assert len(q) <= MAX_START, _explain("ping Main_Start (send fires a receiver)", q, MAX_START)

        counts: dict[str, list[int]] = {"send_fires": [], "recv_blocks": []}
        for _ in range(3):  # steady state, a few rounds
            # the sender goes on in Main_Sent: recv on its inbox; the peer has not sent: blocks
            sender, receiver = (ping_g, pong_g)
            result, q = _step(sender)
            assert result.ran and _status(sender) == GoroutineStatus.BLOCKED
            assert len(q) <= MAX_RECV_BLOCKS, _explain("Main_Sent (recv, blocks)", q, MAX_RECV_BLOCKS)
            counts["recv_blocks"].append(len(q))

            # the receiver gets the value and sends the next one back: fires the blocked sender
            result, q = _step(receiver)
            assert result.ran and _status(sender) == GoroutineStatus.RUNNABLE
            assert len(q) <= MAX_SEND_FIRES, _explain("Main_Received (send fires a receiver)", q, MAX_SEND_FIRES)
            counts["send_fires"].append(len(q))

            # and the roles swap
            result, q = _step(receiver)
            assert result.ran and _status(receiver) == GoroutineStatus.BLOCKED
            assert len(q) <= MAX_RECV_BLOCKS, _explain("Main_Sent (recv, blocks)", q, MAX_RECV_BLOCKS)
            counts["recv_blocks"].append(len(q))
            result, q = _step(sender)
            assert result.ran and _status(receiver) == GoroutineStatus.RUNNABLE
            assert len(q) <= MAX_SEND_FIRES, _explain("Main_Received (send fires a receiver)", q, MAX_SEND_FIRES)
            counts["send_fires"].append(len(q))

        # the count does not grow with the history (the first recv on qb also created the channel)
        assert len(set(counts["send_fires"])) == 1, counts
        assert len(set(counts["recv_blocks"][1:])) == 1, counts


@pytest.mark.django_db(transaction=True)
def test_a_step_that_does_not_run_is_cheap():
    """A duplicate wake-up (the goroutine is blocked, not runnable) costs a couple of queries."""
    with WorkflowRunner():
        pong = services.start_process("pingpong", {"role": "pong", "inbox": "qc", "outbox": "qd", "rounds": 100})
        gid = _main(pong.process.id)
        assert engine.run_step(gid).ran
        result, q = _step(gid)
        assert not result.ran
        assert len(q) <= 3, _explain("duplicate wake-up", q, 3)


# fire_due_timers: find the due cases, lock, read the cases, delete, one UPDATE; and, for the whole
# batch, the Slack integration's one read of open questions (its hooks.SelectFired listener).
MAX_BULK_FIRE = 6
# The woken step that finishes its process: lock, goroutines, process, goroutine, event, and the
# Slack integration's check for open questions of the ended process (slack_integration.signals).
MAX_TIMER_STEP = 6


@pytest.mark.django_db(transaction=True)
def test_timers_due_together_fire_in_a_fixed_number_of_queries_and_their_steps_stay_small():
    """Fifty timers due at the same moment cost as many queries to fire as one (one UPDATE per
    deadline), and each woken step that only finishes its process stays at six queries."""
    from datetime import timedelta

    from slct_workflows import clock

    from tests.integration import workflows_for_tests  # noqa: F401  (t-sleeper: after(1 h), then finish)

    with WorkflowRunner():
        pids = [services.start_process("t-sleeper").process.id for _ in range(50)]
        gids = [_main(pid) for pid in pids]
        for gid in gids:
            assert engine.run_step(gid).ran and _status(gid) == GoroutineStatus.BLOCKED
        assert timers.fire_due_timers() == []  # not due yet
        clock.advance(timedelta(hours=2))
        with CaptureQueriesContext(connection) as ctx:
            fired = timers.fire_due_timers()
        queries = sent(ctx.captured_queries, TX_CONTROL)
        assert sorted(fired) == sorted(gids)
        assert len(queries) <= MAX_BULK_FIRE, _explain("bulk timer firing", queries, MAX_BULK_FIRE)
        assert all(_status(gid) == GoroutineStatus.RUNNABLE for gid in gids)

        result, q = _step(gids[0])
        assert result.ran and services.get_process(pids[0]).status == "done"
        assert len(q) <= MAX_TIMER_STEP, _explain("timer step that finishes", q, MAX_TIMER_STEP)
