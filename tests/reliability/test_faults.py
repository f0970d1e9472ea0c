"""Fault injection with real workers: SIGKILL workers at random moments in the middle of steps;
lose Redis (this run's queue keys deleted, then the whole redis-server killed and restarted empty)
while processes wait on timers and channels; cut the database away from the workers while they
run. After recovery (the recovery sweep, services.sweep(grace_seconds=0), run every second as the
periodic sweep would) every process completes with the right result and no step committed twice.

Guarantees 1 (exactly-once step commit) and 3 (no lost wake-ups) -- DESIGN.md section 2.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

from django.db import connection, transaction

from slct_workflows import services
from slct_workflows.models import Event, ProcessInstance

from .helpers import (
    assert_quiescent, captured_log, check_history, committed_steps, ledger, read_attempts, report, terminate_backends,
    wait_done,
)
from .conftest import _drop_queue_keys

SIZES = {
    "postgresql": dict(workers=4, nodes=40, per_node=10, chans=8, delay_ms=20, chaos=12.0),
    "sqlite": dict(workers=3, nodes=20, per_node=10, chans=6, delay_ms=20, chaos=10.0),
}


def _start_nodes(tmp_path, size, prefix: str, *, guard: bool = False):
    """The stress workload, smaller, with every step sleeping `delay_ms` inside its transaction."""
    n, k, c = size["nodes"], size["per_node"], size["chans"]
    chans = [f"{prefix}-u{i}" for i in range(c // 2)] + [f"{prefix}-b{i}" for i in range(c - c // 2)]
    for name in chans:
        services.create_channel(name, 0 if "-u" in name else 2)
    services.create_channel(f"{prefix}-done", 10)
    common = {"log_path": str(tmp_path / "attempts.log"), "delay_ms": size["delay_ms"]}
    if guard:
        (tmp_path / "guard").mkdir()
        common["guard_dir"] = str(tmp_path / "guard")
    coord = services.start_process(
        "rel-coordinator", {"n": n, "done_chan": f"{prefix}-done", "chans": chans, **common}, id=f"{prefix}-coord"
    ).process.id
    nodes = [
        services.start_process("rel-node", {
            "idx": idx, "values": list(range(idx * k, (idx + 1) * k)), "chans": chans,
            "recv_chans": [chans[idx % c], chans[(idx + 3) % c], chans[(idx + 5) % c]],
            "done_chan": f"{prefix}-done", "short_timeout": 1.0, "long_timeout": 60.0, "idle_timeout": 2.0,
            **common,
        }, id=f"{prefix}-node-{idx}").process.id
        for idx in range(n)
    ]
    return coord, nodes, chans


def _check_nodes(coord, nodes, chans, size, prefix: str) -> dict:
    n, k = size["nodes"], size["per_node"]
    states = {p.pk: p.state for p in ProcessInstance.objects.filter(pk__in=nodes)}
    for pid, st in states.items():
        assert st["sent"] == st["values"], f"{pid} sent {st['sent']} instead of {st['values']}"
    figures = ledger(range(n * k), [v for st in states.values() for v in st["received"]],
                     pids=[coord, *nodes])
    history = Event.objects.filter(process_id__in=nodes, kind="step", method__startswith="Receiver_Got").exclude(
        case__endswith="(closed)").values_list("value", flat=True)
    ledger(range(n * k), history, pids=[coord, *nodes])
    # One committed Sender_Sent step per value: none ran twice.
    sent_steps = Counter(Event.objects.filter(process_id__in=nodes, kind="step", method="Sender_Sent").values_list("process_id", flat=True))
    assert all(sent_steps[pid] == k for pid in nodes), sent_steps
    assert ProcessInstance.objects.get(pk=coord).output == {"done": list(range(n))}
    assert_quiescent([coord, *nodes], channels=[*chans, f"{prefix}-done"])
    figures["history_events"] = check_history([coord, *nodes])
    return figures


def _interrupted(tmp_path, pids) -> tuple[int, int]:
    """(attempts that began, attempts that never committed)."""
    attempts = read_attempts(tmp_path / "attempts.log")
    return len(attempts), len(attempts) - committed_steps(pids)


# -- SIGKILL --------------------------------------------------------------------------------------

def _worker_in_a_step(log, alive, *, within_ns: int, patience: float):
    """A live worker whose latest attempt line is younger than `within_ns`, polled for up to
    `patience` seconds (the tail of the attempts log: pid, process, goroutine, method, time_ns)."""
    by_pid = {p.pid: p for p in alive}
    end = time.monotonic() + patience
    while time.monotonic() < end:
        if log.exists():
            with log.open("rb") as f:
                f.seek(max(0, log.stat().st_size - 1000))
                lines = f.read().decode(errors="replace").splitlines()[1:]
            now = time.time_ns()
            for line in reversed(lines):
                parts = line.split(" ")
                if len(parts) == 5 and parts[4].isdigit() and now - int(parts[4]) < within_ns:
                    if int(parts[0]) in by_pid:
                        return by_pid[int(parts[0])]
        time.sleep(0.002)
    return None

def test_workers_killed_mid_step_at_random_moments(rel_workers, tmp_path):
    size = SIZES[connection.vendor]
    rng = random.Random(4242)
    rel_workers.start(size["workers"])
    coord, nodes, chans = _start_nodes(tmp_path, size, "k")
    log = tmp_path / "attempts.log"

    kills = aimed = 0
    end = time.monotonic() + size["chaos"]
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.3, 1.2))
        alive = rel_workers.alive()
        victim = None
        if rng.random() < 0.7:
            # Aim: a worker that began a step less than 10 ms ago (steps sleep `delay_ms` = 20 ms
            # inside their transaction, so it is in the middle of one).
            victim = _worker_in_a_step(log, alive, within_ns=10_000_000, patience=0.5)
            aimed += victim is not None
        if victim is None:
            victim = rng.choice(alive)
        rel_workers.kill(victim)
        kills += 1
        rel_workers.start(1)  # the supervisor restarts it

    waited = wait_done([coord, *nodes], 120, pool=rel_workers, what="processes after the kills", sweep_every=1.0)
    figures = _check_nodes(coord, nodes, chans, size, "k")
    began, interrupted = _interrupted(tmp_path, [coord, *nodes])
    assert interrupted > 0, "no kill landed in the middle of a step"
    report("sigkill", workers=size["workers"], processes=len(nodes) + 1, values_sent=figures["sent"],
           sigkills=kills, aimed_mid_step=aimed, step_attempts=began, interrupted_attempts=interrupted,
           recovery_sweeps=waited["sweeps"], lost=figures["lost"], duplicated=figures["duplicated"])


# -- Redis ------------------------------------------------------------------------------------------

def _start_waiters(prefix: str, n: int, log: str):
    """n timer waiters (2 ticks of 1 s), n receivers, n senders, on unbuffered channels."""
    timers = [services.start_process("rel-waiter", {"kind": "timer", "delay": 1.0, "ticks": 2, "log_path": log},
                                     id=f"{prefix}-timer-{i}").process.id for i in range(n)]
    recvs = [services.start_process("rel-waiter", {"kind": "recv", "chan": f"{prefix}-in-{i}", "log_path": log},
                                    id=f"{prefix}-recv-{i}").process.id for i in range(n)]
    sends = [services.start_process("rel-waiter", {"kind": "send", "chan": f"{prefix}-out-{i}", "value": i,
                                                   "log_path": log}, id=f"{prefix}-send-{i}").process.id
             for i in range(n)]
    return timers, recvs, sends


def _all_blocked(pids, timeout=60):
    deadline = time.monotonic() + timeout
    while ProcessInstance.objects.filter(pk__in=pids, step_count__lt=2).exists():
        assert time.monotonic() < deadline, "processes did not reach their first select"
        time.sleep(0.1)


def _check_waiters(prefix, n, timers, recvs, sends, takers):
    for i, pid in enumerate(timers):
        p = ProcessInstance.objects.get(pk=pid)
        assert p.output == {"ticks": 2}, (pid, p.output)
        assert Event.objects.filter(process_id=pid, kind="step", method="Main_Tick").count() == 2
    for i, pid in enumerate(recvs):
        assert ProcessInstance.objects.get(pk=pid).output == {"got": 1000 + i}
        assert Event.objects.filter(process_id=pid, kind="step", method="Main_Got").count() == 1
    for i, pid in enumerate(sends):
        assert ProcessInstance.objects.get(pk=pid).output == {"sent": i}
        assert ProcessInstance.objects.get(pk=takers[i]).output == {"got": i}
    everyone = [*timers, *recvs, *sends, *takers]
    assert_quiescent(everyone)
    return check_history(everyone)


def test_redis_loses_its_jobs_then_restarts_empty(private_redis, private_redis_workers, tmp_path):
    """Phase 1: this run's queue keys are deleted while processes wait on timers and channels --
    the scheduled timer jobs are gone, yet the timers fire on time: the workers' timer loop reads
    them from the database. Phase 2: the redis-server is killed; sends and starts go on (the
    database commits, the enqueue fails and is logged); a new empty redis-server starts on the
    same port; the timer loop and the sweep recover all."""
    import django_rq
    from django.conf import settings

    pool = private_redis_workers
    log = str(tmp_path / "attempts.log")
    n = 10
    pool.start(2)
    timers, recvs, sends = _start_waiters("r", n, log)
    _all_blocked([*timers, *recvs, *sends])

    # Phase 1: delete this run's queue keys (the scheduled timer jobs among them).
    conn = django_rq.get_connection(settings.SLCT_QUEUE)
    # Timers due in the same second share one scheduled job (jobs.fire_timers), the fallback.
    scheduled = conn.zrange(f"rq:scheduled:{settings.SLCT_QUEUE}", 0, -1)
    assert scheduled and all(j.startswith(b"slct-timers-") for j in scheduled), scheduled
    _drop_queue_keys(conn)
    for i in range(n // 2):
        services.send(f"r-in-{i}", 1000 + i, f"r-key-{i}")  # delivered; the wake-up job is enqueued
    # No sweep runs here: only the timer loop can fire the first ticks, their jobs are gone.
    wait_done(timers, 30, pool=pool, what="timers after the flush")

    # Phase 2: Redis dies with everything in it.
    timers2 = [services.start_process("rel-waiter", {"kind": "timer", "delay": 1.0, "ticks": 2, "log_path": log},
                                      id=f"r-timer2-{i}").process.id for i in range(n)]
    _all_blocked(timers2)
    private_redis.kill()
    outage_sends = []
    with captured_log() as records:
        for i in range(n // 2, n):  # sends while Redis is down: the caller gets its answer
            outage_sends.append(services.send(f"r-in-{i}", 1000 + i, f"r-key-{i}").status)
        takers = [services.start_process("rel-waiter", {"kind": "recv", "chan": f"r-out-{i}", "log_path": log},
                                         id=f"r-taker-{i}").process.id for i in range(n)]
    assert set(outage_sends) <= {"delivered"}, outage_sends
    lost_enqueues = [r for r in records if "could not" in r.getMessage()]
    assert len(lost_enqueues) >= n, f"the wake-ups should have failed to reach the dead Redis: {records}"
    time.sleep(2.5)
    private_redis.start()  # a new, empty redis-server on the same port
    dead = [p for p in pool.procs if p.poll() is not None]
    if len(pool.alive()) < 2:
        pool.start(2 - len(pool.alive()))  # the supervisor restarts workers that gave up
    everyone = [*timers, *recvs, *sends, *takers, *timers2]
    waited = wait_done(everyone, 60, pool=pool, what="processes after the Redis restart", sweep_every=1.0)
    events = _check_waiters("r", n, [*timers, *timers2], recvs, sends, takers)
    began = len(read_attempts(tmp_path / "attempts.log"))
    report("redis", processes=len(everyone), timers=2 * n, channel_waits=3 * n, queue_keys_flushed=1,
           redis_restarts=private_redis.starts - 1, sends_during_outage=len(outage_sends),
           enqueues_lost_in_outage=len(lost_enqueues),
           workers_died_with_redis=len(dead), recovery_sweeps=waited["sweeps"] + 1, step_attempts=began,
           committed_steps=committed_steps(everyone), history_events=events, lost=0, duplicated=0)


# -- the database goes away -----------------------------------------------------------------------

def _hold_sqlite(seconds: float, bursts: int) -> int:
    """SQLite's single writer lock held by this process for `seconds`, `bursts` times: every worker
    (and every external sender) must wait for it, not fail with "database is locked"."""
    for _ in range(bursts):
        with transaction.atomic():  # BEGIN IMMEDIATE: takes the write lock at once
            with connection.cursor() as cur:
                cur.execute("UPDATE slct_workflows_channel SET capacity = capacity WHERE 0")
            time.sleep(seconds)
        time.sleep(0.3)
    return bursts


def test_database_taken_away_while_workers_run(rel_workers, tmp_path):
    size = dict(SIZES[connection.vendor])
    rel_workers.start(size["workers"])
    coord, nodes, chans = _start_nodes(tmp_path, size, "d", guard=False)
    # Let the work get going, so the outage hits steps in flight.
    deadline = time.monotonic() + 60
    while committed_steps([coord, *nodes]) < 3 * len(nodes):
        assert time.monotonic() < deadline, rel_workers.logs()[-3000:]
        time.sleep(0.1)

    # On SQLite, external sends go on while the writer lock is held, from threads with their own
    # connections: they must wait for the lock, not fail.
    services.create_channel("d-ext", 1000)
    errors: list[str] = []
    statuses: list[str] = []

    def sender(t: int) -> None:
        try:
            for i in range(10):
                statuses.append(services.send("d-ext", [t, i], f"d-ext-{t}-{i}").status)
        except Exception as exc:  # noqa: BLE001 - any error reaching the caller is a failure
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    if connection.vendor == "postgresql":
        faults = terminate_backends(4.0)
        fault = "backends_terminated"
    else:
        threads = [threading.Thread(target=sender, args=(t,)) for t in range(3)]
        for th in threads:
            th.start()
        faults = _hold_sqlite(2.0, 3)
        fault = "write_lock_holds_2s"
        for th in threads:
            th.join(120)
        assert not errors, f"errors reached the caller while the writer lock was held: {errors[:5]}"
        assert statuses == ["buffered"] * 30, statuses
        from slct_workflows.runtime.channels import buffer_values

        assert sorted(buffer_values("d-ext")) == sorted([t, i] for t in range(3) for i in range(10))

    waited = wait_done([coord, *nodes], 120, pool=rel_workers, what="processes after the outage", sweep_every=1.0)
    figures = _check_nodes(coord, nodes, chans, size, "d")
    began, interrupted = _interrupted(tmp_path, [coord, *nodes])
    # Lost connections recorded in the history as failures of the user's step (see
    # test_a_lost_connection_is_not_a_failure_of_the_step): reported here, asserted there.
    recorded = Event.objects.filter(process_id__in=[coord, *nodes], kind__in=["error", "failed"]).count()
    report("database-outage", workers=size["workers"], processes=len(nodes) + 1, values_sent=figures["sent"],
           **{fault: faults}, step_attempts=began, interrupted_attempts=interrupted,
           db_errors_recorded_as_step_failures=recorded,
           recovery_sweeps=waited["sweeps"], lost=figures["lost"], duplicated=figures["duplicated"])


def _terminate_others() -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cur.fetchone()[0]


def test_a_lost_connection_is_not_a_failure_of_the_step(rel_workers, tmp_path):
    """The database goes away in the middle of the same step three times (SLCT_MAX_ATTEMPTS is 3).
    That is not the user's method raising (DESIGN 2.5): the transaction is retried (db.py), the
    step commits once when the database is back, no error is recorded against it, and the process
    is certainly not marked failed. On PostgreSQL the worker's backend is terminated while the step
    sleeps inside its transaction; on SQLite the writer lock is held while the step wants to run."""
    log = tmp_path / "attempts.log"
    rel_workers.start(1)
    pid = services.start_process("rel-waiter", {"kind": "recv", "chan": "lc-in", "log_path": str(log),
                                                "delay_ms": 1500}, id="lc").process.id
    deadline = time.monotonic() + 60
    while ProcessInstance.objects.get(pk=pid).step_count < 2:
        assert time.monotonic() < deadline, rel_workers.logs()[-3000:]
        time.sleep(0.1)
    services.send("lc-in", 7, "lc-key")
    faults = 0
    for round_ in range(1, 4):
        # Wait for attempt number `round_` of Main_Got to be inside its step, then cut it off.
        deadline = time.monotonic() + 30
        while sum(1 for a in read_attempts(log) if a[3] == "Main_Got") < round_:
            if ProcessInstance.objects.get(pk=pid).status != "running":
                break
            assert time.monotonic() < deadline, f"attempt {round_} never began\n{rel_workers.logs()[-3000:]}"
            time.sleep(0.05)
        if connection.vendor == "postgresql":
            time.sleep(0.3)
            faults += _terminate_others()
        else:
            faults += _hold_sqlite(2.0, 1)
    wait_done([pid], 60, pool=rel_workers, what="the process whose step lost its connection", sweep_every=1.0)
    proc = ProcessInstance.objects.get(pk=pid)
    assert proc.output == {"got": 7}
    assert Event.objects.filter(process_id=pid, kind="step", method="Main_Got").count() == 1
    recorded = list(Event.objects.filter(process_id=pid, kind__in=["error", "failed"]).values_list("error", flat=True))
    assert not recorded, f"the lost connection was recorded as a failure of the step: {recorded}"
    report("lost-connection", faults=faults, attempts=sum(1 for a in read_attempts(log) if a[3] == "Main_Got"),
           committed=1, recorded_as_failures=0)
