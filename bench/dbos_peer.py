"""The peer: the same ping-pong written with DBOS Transact (DBOS.send / DBOS.recv), on the bench's
own database (DBOS keeps its system tables there: schema `dbos` on PostgreSQL, tables in the same
file on SQLite).

Each pair is two workflows. The ping workflow sends n to its pong and waits for the answer; the
pong workflow receives n and sends it back. Each DBOS.send and each DBOS.recv is one durable
operation (one transaction that records the operation's output in the system database), so a
message costs two durable operations -- as it costs our runtime two steps (the receiving step and
the sending one). With --workers N the workflows live in N DBOS processes (ping i and pong i in
different processes when N > 1), as our runtime's goroutines run on N workers.

    parent: run_peer(...)             child: python -m bench.dbos_peer child ...  (one per worker)
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

SENDS: list[tuple] = []  # (direction, pair, n, t): a DBOS.send returned (committed)
RECVS: list[tuple] = []  # (direction, pair, n, t): a DBOS.recv returned with the message


def _placement(pair: int, procs: int) -> tuple[int, int]:
    """(process of ping `pair`, process of pong `pair`)."""
    return (2 * pair) % procs, (2 * pair + 1) % procs


def sqlalchemy_url(database_url: str) -> str:
    if database_url.startswith("postgres://"):
        return "postgresql://" + database_url[len("postgres://"):]
    return database_url


# -- child ------------------------------------------------------------------------------------

def child(argv: list[str]) -> None:
    """One DBOS process. Commands on stdin, one a line: `PONGS phase pairs` (start this process's
    pong workflows of the phase, answer READY), `GO phase pairs deadline` (start its pings, wait
    for all of the phase's workflows, answer RESULT json), `QUIT`."""
    url, index, procs, max_pairs, run, poll = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4], float(argv[5])

    from dbos import DBOS, DBOSConfig, SetWorkflowID

    config: DBOSConfig = {
        "name": "slct-bench-peer",
        "system_database_url": url,
        "executor_id": f"bench-{run}-{index}",  # each process recovers only its own workflows
        "application_version": "slct-bench",
        "log_level": "WARNING",
        "max_executor_threads": 4 * max_pairs + 16,  # a thread per workflow blocked in recv
        "notification_listener_polling_interval_sec": poll,
    }
    DBOS(config=config)

    @DBOS.workflow(name="bench_ping")
    def ping(pair: int, pong_id: str, deadline: float) -> int:
        n = 0
        while time.time() < deadline:
            DBOS.send(pong_id, n)
            SENDS.append(("p", pair, n, time.time()))
            m = DBOS.recv(timeout_seconds=60)
            if m is None:
                break
            RECVS.append(("q", pair, m, time.time()))
            n += 1
        DBOS.send(pong_id, -1)  # stop
        return n

    @DBOS.workflow(name="bench_pong")
    def pong(pair: int, ping_id: str) -> int:
        count = 0
        while True:
            m = DBOS.recv(timeout_seconds=120)
            if m is None or m < 0:
                return count
            RECVS.append(("p", pair, m, time.time()))
            DBOS.send(ping_id, m)
            SENDS.append(("q", pair, m, time.time()))
            count += 1

    DBOS.launch()
    print("LAUNCHED", flush=True)
    handles: list = []
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "QUIT":
            break
        phase, pairs = cmd[1], int(cmd[2])
        ids = lambda i: (f"{run}-{phase}-ping-{i}", f"{run}-{phase}-pong-{i}")  # noqa: E731
        if cmd[0] == "PONGS":
            for i in range(pairs):
                if _placement(i, procs)[1] == index:
                    with SetWorkflowID(ids(i)[1]):
                        handles.append(DBOS.start_workflow(pong, i, ids(i)[0]))
            print("READY", flush=True)
        elif cmd[0] == "GO":
            deadline = float(cmd[3])
            for i in range(pairs):
                if _placement(i, procs)[0] == index:
                    with SetWorkflowID(ids(i)[0]):
                        handles.append(DBOS.start_workflow(ping, i, ids(i)[1], deadline))
            errors = []
            for h in handles:
                try:
                    h.get_result()
                except Exception as exc:  # reported, not fatal: the figures say how far it got
                    errors.append(f"{type(exc).__name__}: {exc}")
            print("RESULT " + json.dumps({"sends": SENDS, "recvs": RECVS, "errors": errors[:5]}), flush=True)
            handles.clear()
            SENDS.clear()
            RECVS.clear()
    DBOS.destroy(destroy_registry=True)


# -- parent -----------------------------------------------------------------------------------

def run_peer(database_url: str, *, phases: list[tuple[int, float, float]], procs: int, poll: float,
             env: dict[str, str], logdir) -> list[dict]:
    """Run each phase (pairs, warmup, duration) on the same DBOS processes; one result each."""
    from .infra import PYTHON, ROOT

    run = "b" + uuid.uuid4().hex[:8]
    url = sqlalchemy_url(database_url)
    logdir.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen] = []
    out = []
    max_pairs = max(p for p, _, _ in phases)
    try:
        for index in range(procs):  # one after the other: the first one creates DBOS's tables
            err = open(logdir / f"dbos-{index}.log", "ab")
            p = subprocess.Popen(
                [PYTHON, "-m", "bench.dbos_peer", "child", url, str(index), str(procs), str(max_pairs), run, str(poll)],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )
            children.append(p)
            if not _expect(p, "LAUNCHED", 120):
                raise RuntimeError(f"DBOS process {index} did not start; see {logdir}/dbos-{index}.log")
        for n, (pairs, warmup, duration) in enumerate(phases):
            for p in children:
                _say(p, f"PONGS {n} {pairs}")
            for index, p in enumerate(children):
                if not _expect(p, "READY", 60):
                    raise RuntimeError(f"DBOS process {index} did not start its workflows; see {logdir}")
            t_go = time.time()
            deadline = t_go + warmup + duration + 0.2
            for p in children:
                _say(p, f"GO {n} {pairs} {deadline}")
            results = []
            for index, p in enumerate(children):
                line = _expect(p, "RESULT ", deadline - time.time() + 120)
                if not line:
                    raise RuntimeError(f"DBOS process {index} gave no result; see {logdir}/dbos-{index}.log")
                results.append(json.loads(line[len("RESULT "):]))
            out.append(_figures(results, pairs, procs, poll, t_go + warmup, t_go + warmup + duration))
        for p in children:
            _say(p, "QUIT")
        for p in children:
            p.wait(timeout=60)
    finally:
        for p in children:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def _say(p: subprocess.Popen, line: str) -> None:
    p.stdin.write(line + "\n")
    p.stdin.flush()


def _figures(results: list[dict], pairs: int, procs: int, poll: float, t0: float, t1: float) -> dict:
    from .measure import summary_ms

    duration = t1 - t0
    sends = {(d, pair, n): t for r in results for d, pair, n, t in r["sends"]}
    recvs = [(d, pair, n, t) for r in results for d, pair, n, t in r["recvs"]]
    ops = sum(1 for r in results for *_, t in r["sends"] if t0 <= t < t1) + sum(1 for *_, t in recvs if t0 <= t < t1)
    msgs = [x for x in recvs if t0 <= x[3] < t1]
    lat = [t - sends[(d, pair, n)] for d, pair, n, t in msgs if (d, pair, n) in sends]
    return {
        "pairs": pairs,
        "processes": procs,
        "poll_s": poll,
        "seconds": round(duration, 3),
        "ops_per_s": round(ops / duration, 1),
        "messages_per_s": round(len(msgs) / duration, 1),
        "wake": summary_ms(lat),  # sender's DBOS.send returned -> receiver's DBOS.recv returned
        "errors": [e for r in results for e in r["errors"]],
    }


def _expect(p: subprocess.Popen, prefix: str, timeout: float) -> str | None:
    """The first stdout line of `p` starting with `prefix`, within `timeout` seconds."""
    found: list[str] = []

    def reader():
        for line in p.stdout:
            if line.startswith(prefix):
                found.append(line.rstrip("\n"))
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    return found[0] if found else None


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m bench.dbos_peer child URL INDEX PROCS PAIRS RUN POLL")
