"""External sends under load: threads in this process call services.send with repeated
idempotency keys at the same moment (three threads send every key, in the same order), into
channels that real workers' processes are receiving from. Each key is delivered once.

Guarantee 6 (idempotent external sends), with 4 (no double delivery) -- DESIGN.md section 2.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

from django.db import connection

from slct_workflows import services
from slct_workflows.errors import NoReceiver
from slct_workflows.models import BufferedValue, ExternalSend, PendingCase, ProcessInstance

from .helpers import assert_quiescent, check_history, ledger, report, wait_done

SIZES = {
    "postgresql": dict(workers=3, keys=450, groups=3, copies=3, sinks_per_channel=3, timeout=120),
    "sqlite": dict(workers=2, keys=180, groups=3, copies=3, sinks_per_channel=2, timeout=120),
}
CHANNELS = {"x-u0": 0, "x-u1": 0, "x-u2": 0, "x-b0": 2, "x-b1": 2, "x-b2": 5}


def test_concurrent_sends_with_repeated_keys_deliver_each_key_once(rel_workers):
    size = SIZES[connection.vendor]
    for name, capacity in CHANNELS.items():
        services.create_channel(name, capacity)
    names = list(CHANNELS)
    sinks = [
        services.start_process("rel-sink", {"chan": name}, id=f"x-sink-{name}-{j}").process.id
        for name in names for j in range(size["sinks_per_channel"])
    ]
    rel_workers.start(size["workers"])
    deadline = time.monotonic() + 60
    while ProcessInstance.objects.filter(pk__in=sinks, step_count__lt=2).exists():
        assert time.monotonic() < deadline, f"sinks did not start\n{rel_workers.logs()[-3000:]}"
        time.sleep(0.1)

    # Key i goes to one channel with one value. Every fifth key goes, with wait=False, to a channel
    # nobody receives from: it must be refused, every time, and never delivered later.
    services.create_channel("x-nobody", 0)
    keys = [(f"x-key-{i}", "x-nobody" if i % 5 == 0 else names[i % len(names)], {"key": i}, i % 5 != 0)
            for i in range(size["keys"])]
    groups = [keys[g::size["groups"]] for g in range(size["groups"])]
    results: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(size["groups"] * size["copies"])

    def sender(group: list) -> None:
        try:
            barrier.wait()
            for key, chan, value, wait in group:
                try:
                    r = services.send(chan, value, key, wait=wait)
                    outcome = (r.status, r.repeated)
                except NoReceiver as exc:
                    outcome = ("no_receiver", "repeated key" in str(exc))
                with lock:
                    results[key].append(outcome)
        except Exception as exc:  # noqa: BLE001 - any other error reaching the caller fails the test
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()  # each thread has its own connection

    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(groups[g],)) for g in range(size["groups"])
               for _ in range(size["copies"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    send_seconds = time.monotonic() - started
    assert not errors, f"errors reached the callers: {errors[:5]}"

    # Every call answered; per key exactly one call did the send, the others were told it was a repeat.
    assert len(results) == len(keys)
    for key, outcomes in results.items():
        assert len(outcomes) == size["copies"], (key, outcomes)
        firsts = [o for o in outcomes if not o[1]]
        assert len(firsts) == 1, f"{key}: {outcomes} (each key must be sent exactly once)"
    assert ExternalSend.objects.count() == len(keys)
    refused = {k for k, outcomes in results.items() if outcomes[0][0] == "no_receiver"}
    assert refused == {k for k, chan, _, _ in keys if chan == "x-nobody"}
    assert all(all(o[0] == "no_receiver" for o in results[k]) for k in refused), "a refused key was delivered later"

    # Waiting sends are taken by the sinks; then the channels close and the sinks drain and finish.
    deadline = time.monotonic() + size["timeout"]
    while (PendingCase.objects.filter(external_send__isnull=False).exists()
           or BufferedValue.objects.filter(channel_id__in=names).exists()):
        assert time.monotonic() < deadline, "waiting sends were never received"
        time.sleep(0.2)
    for name in names:
        services.close_channel(name)
    wait_done(sinks, size["timeout"], pool=rel_workers, what="sinks")

    statuses = Counter(ExternalSend.objects.values_list("status", flat=True))
    assert set(statuses) <= {"delivered", "buffered", "received", "no_receiver"}, statuses
    assert statuses["no_receiver"] == len(refused)
    delivered = [k for k, _, v, _ in keys if k not in refused]
    received = [v for p in ProcessInstance.objects.filter(pk__in=sinks) for v in p.state["received"]]
    figures = ledger([{"key": int(k.rsplit("-", 1)[1])} for k in delivered], received, pids=sinks)
    # Each value went to a sink of its own channel.
    for p in ProcessInstance.objects.filter(pk__in=sinks):
        assert all(names[v["key"] % len(names)] == p.state["chan"] for v in p.state["received"]), p.pk
    assert_quiescent(sinks, channels=[*names, "x-nobody"])
    check_history(sinks)
    report("external-sends", threads=len(threads), calls=sum(len(o) for o in results.values()),
           keys=len(keys), repeats=sum(len(o) for o in results.values()) - len(keys),
           delivered=figures["received"], refused_no_receiver=len(refused),
           statuses=dict(statuses), send_seconds=round(send_seconds, 1),
           lost=figures["lost"], duplicated=figures["duplicated"])
