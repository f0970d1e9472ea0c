"""Stress: several real workers, hundreds of processes exchanging thousands of values over
unbuffered and buffered channels, with competing receivers and selects over several channels and
timers. Every value sent is received exactly once; nothing is left stuck; histories are sound.

Guarantees: 1 (exactly-once step commit), 2 (one step at a time per process), 4 (no missed
rendezvous, no double delivery) -- DESIGN.md section 2.
"""
from __future__ import annotations

import time

from django.db import connection

from slct_workflows import services
from slct_workflows.models import Event, ProcessInstance

from .helpers import assert_quiescent, check_history, ledger, read_attempts, report, wait_done

# Per database: PostgreSQL proves the concurrency; SQLite (one writer at a time) runs the same
# workload, smaller, to stay within the suite's time budget.
SIZES = {
    "postgresql": dict(workers=4, nodes=200, per_node=25, unbuffered=10, buffered=10, timeout=300),
    "sqlite": dict(workers=4, nodes=100, per_node=25, unbuffered=6, buffered=6, timeout=300),
}


def test_stress_every_value_is_received_exactly_once(rel_workers, tmp_path):
    size = SIZES[connection.vendor]
    guard = tmp_path / "guard"
    guard.mkdir()
    attempts_log = tmp_path / "attempts.log"
    chans = [f"s-u{i}" for i in range(size["unbuffered"])] + [f"s-b{i}" for i in range(size["buffered"])]
    for c in chans:
        services.create_channel(c, 0 if c.startswith("s-u") else 8)
    services.create_channel("s-done", 50)
    n, k, c = size["nodes"], size["per_node"], len(chans)

    rel_workers.start(size["workers"])
    started = time.monotonic()
    common = {"guard_dir": str(guard), "log_path": str(attempts_log)}
    coord = services.start_process(
        "rel-coordinator", {"n": n, "done_chan": "s-done", "chans": chans, "linger": 2.0, **common}, id="s-coord"
    ).process.id
    nodes = []
    for idx in range(n):
        nodes.append(services.start_process("rel-node", {
            "idx": idx, "values": list(range(idx * k, (idx + 1) * k)), "chans": chans,
            "recv_chans": [chans[idx % c], chans[(idx + 7) % c], chans[(idx + 13) % c]],
            "done_chan": "s-done", "short_timeout": 0.5, "long_timeout": 60.0, "idle_timeout": 1.5,
            **common,
        }, id=f"s-node-{idx}").process.id)

    wait_done([coord, *nodes], size["timeout"], pool=rel_workers, what="stress processes")
    elapsed = time.monotonic() - started

    # The ledger, from the processes' own state ...
    states = {p.pk: p.state for p in ProcessInstance.objects.filter(pk__in=nodes)}
    for pid, st in states.items():
        assert st["sent"] == st["values"], f"{pid} sent {st['sent']} instead of {st['values']}"
    expected = range(n * k)
    figures = ledger(expected, [v for st in states.values() for v in st["received"]],
                     pids=[coord, *nodes])
    # ... and from the history: one committed receive step per value.
    history = Event.objects.filter(process_id__in=nodes, kind="step", method__startswith="Receiver_Got").exclude(
        case__endswith="(closed)").values_list("value", flat=True)
    ledger(expected, history, pids=[coord, *nodes])
    assert ProcessInstance.objects.get(pk=coord).output == {"done": list(range(n))}

    assert_quiescent([coord, *nodes], channels=[*chans, "s-done"])
    events = check_history([coord, *nodes])
    violations = sorted(p.name for p in guard.glob("violation-*"))
    assert not violations, f"two steps of one process ran at the same time: {violations[:10]}"
    assert not list(guard.iterdir()), "a step guard was left behind"

    timeouts = sum(st["timeouts"] for st in states.values())
    idles = sum(st["idles"] for st in states.values())
    # Timer cases fired through the RQ scheduler: the coordinator's 2 s linger, and meanwhile the
    # idle timers (1.5 s) of every fourth receiver.
    assert Event.objects.filter(process_id=coord, kind="step", method="Main_Close", case__startswith="timer").count() == 1
    assert idles >= n // 4, f"only {idles} idle timers fired: the selects' timers were not exercised"
    steps = sum(ProcessInstance.objects.filter(pk__in=[coord, *nodes]).values_list("step_count", flat=True))
    attempts = len(read_attempts(attempts_log))
    report(
        "stress", workers=size["workers"], processes=n + 1, channels=c, values_sent=figures["sent"],
        values_received=figures["received"], lost=figures["lost"], duplicated=figures["duplicated"],
        sender_timeouts=timeouts, receiver_idle_timers=idles, history_events=events, step_attempts=attempts,
        seconds=round(elapsed, 1), steps_per_second=round(steps / elapsed, 1),
    )
