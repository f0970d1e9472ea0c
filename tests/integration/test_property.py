"""Property test: random programs of selects, external sends, closes and clock moves, run through
the real engine (WorkflowRunner), checked after every operation against a small in-memory model of
Go channels with ordered select cases written here (independent of slct_workflows.semantics).

Each actor process runs a *script*: a list of items, each ["close", chan] or ["select", cases],
a case being ["recv", chan], ["send", chan, value], ["after", seconds] or ["default"]. The actor
records every fired case as [script position, case index, value received, p.closed].

The model also mirrors the runner's scheduling (runnable goroutines by (runnable_since, id), then
due timers by (deadline, case), each a job whose queue runs the goroutines a step wakes first,
then the goroutine itself while its selects fire at once: runtime/group.py), so that the exact
outcome is predictable (Go allows either order after a rendezvous; the engine picks this one). The engine's clock is replaced by one that moves one
microsecond per reading: every step has its own `now`, in the order the steps ran.
"""
from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slct_workflows import Process, clock, conf, register, services
from slct_workflows.runtime.channels import buffer_values
from slct_workflows.runtime.group import LOCAL_QUEUE
from slct_workflows.errors import ChannelClosed, NoReceiver
from slct_workflows.models import ExternalSend, Goroutine, PendingCase, ProcessInstance
from slct_workflows.testing import WorkflowRunner

pytestmark = pytest.mark.django_db

MAX_CASES = 4


# -- the actor ------------------------------------------------------------------------------------

@register("prop-actor")
@dataclass
class PropActor:
    script: list = field(default_factory=list)
    pc: int = 0
    log: list = field(default_factory=list)

    def Main_Start(self, p: Process, input):
        self.script = input["script"]
        self._next(p)

    def Main_Case0(self, p: Process, value=None):
        self._fired(p, 0, value)

    def Main_Case1(self, p: Process, value=None):
        self._fired(p, 1, value)

    def Main_Case2(self, p: Process, value=None):
        self._fired(p, 2, value)

    def Main_Case3(self, p: Process, value=None):
        self._fired(p, 3, value)

    def _fired(self, p: Process, index: int, value: Any) -> None:
        self.log.append([self.pc, index, value, p.closed])
        self.pc += 1
        self._next(p)

    def _next(self, p: Process) -> None:
        while self.pc < len(self.script) and self.script[self.pc][0] == "close":
            p.close(self.script[self.pc][1])
            self.pc += 1
        if self.pc == len(self.script):
            return  # no select: the goroutine (and with it the process) ends
        sel = p.select()
        for i, case in enumerate(self.script[self.pc][1]):
            target = getattr(self, f"Main_Case{i}")
            if case[0] == "recv":
                sel.recv(case[1]).to(target)
            elif case[0] == "send":
                sel.send(case[1], case[2]).to(target)
            elif case[0] == "after":
                sel.after(timedelta(seconds=case[1])).to(target)
            else:
                sel.default().to(target)


# -- the reference model --------------------------------------------------------------------------

@dataclass
class MWaiter:
    owner: tuple  # ("a", actor index) or ("x", idempotency key)
    case: int = 0
    value: Any = None


@dataclass
class MChan:
    name: str
    cap: int
    buf: list = field(default_factory=list)
    origins: list = field(default_factory=list)  # per buffered value: the external send's key, or None
    closed: bool = False
    recvq: list = field(default_factory=list)  # oldest first
    sendq: list = field(default_factory=list)


@dataclass
class MActor:
    idx: int
    script: list
    pc: int = 0
    log: list = field(default_factory=list)
    status: str = "runnable"  # runnable | blocked | done
    since: int = 0  # the tick it became runnable (the engine's runnable_since)
    next: Any = "start"  # what the next step receives: "start" or (case index, value, closed)
    cases: list | None = None  # the select it is blocked on
    select_offset: int = 0  # clock offset (seconds) and tick when that select was made
    select_tick: int = 0


class Model:
    """Go channels and ordered selects, plus the test runner's scheduling order."""

    def __init__(self, caps: dict[str, int], steps_per_job: int) -> None:
        self.chans = {name: MChan(name, cap) for name, cap in caps.items()}
        self.actors: list[MActor] = []
        self.ext: dict[str, str] = {}  # external send key -> status
        self.tick = 0  # one per clock reading that stamps something
        self.offset = 0  # seconds the clock was advanced
        self.steps_per_job = steps_per_job
        self.woken: list[int] = []  # the actors the current step made runnable, in order

    # channel rules
    def drop(self, owner: tuple) -> None:
        for ch in self.chans.values():
            ch.recvq = [w for w in ch.recvq if w.owner != owner]
            ch.sendq = [w for w in ch.sendq if w.owner != owner]

    def fire(self, w: MWaiter, value: Any = None, closed: bool = False, into_buffer: bool = False) -> None:
        self.drop(w.owner)
        kind, ident = w.owner
        if kind == "a":
            a = self.actors[ident]
            assert a.status == "blocked"
            self.woken.append(ident)
            a.status, a.next, a.since, a.cases = "runnable", (w.case, value, closed), self.tick, None
        else:
            # A held send whose value moved into the buffer has no receiver yet.
            self.ext[ident] = "closed" if closed else "buffered" if into_buffer else "received"

    def ready(self, case: list, a: MActor) -> tuple[Any, bool] | None:
        """Try one case of a running select: (value, closed) if it fires, with its effects."""
        kind = case[0]
        if kind == "recv":
            ch = self.chans[case[1]]
            if ch.buf:
                value = ch.buf.pop(0)
                origin = ch.origins.pop(0)
                if origin is not None:
                    self.ext[origin] = "received"  # an outside value reached its receiver
                if ch.sendq:  # a slot freed: the oldest blocked sender's value moves in
                    w = ch.sendq[0]
                    ch.buf.append(w.value)
                    ch.origins.append(w.owner[1] if w.owner[0] == "x" else None)
                    self.fire(w, into_buffer=True)
                return value, False
            if ch.sendq:
                w = ch.sendq[0]
                self.fire(w)
                return w.value, False
            if ch.closed:
                return None, True
            return None
        if kind == "send":
            ch = self.chans[case[1]]
            if ch.closed:
                return None, True
            if ch.recvq:
                self.fire(ch.recvq[0], value=case[2])
                return None, False
            if len(ch.buf) < ch.cap:
                ch.buf.append(case[2])
                ch.origins.append(None)
                return None, False
            return None
        if kind == "after":
            return (None, False) if self.offset + case[1] <= self.offset else None
        return None, False  # default

    def close(self, name: str) -> bool:
        ch = self.chans[name]
        if ch.closed:
            return False
        ch.closed = True
        while ch.recvq:
            self.fire(ch.recvq[0], None, True)
        while ch.sendq:
            self.fire(ch.sendq[0], None, True)
        return True

    # steps and scheduling
    def step(self, a: MActor) -> bool:
        """One step of actor `a`; True if its new select fired at once (it runs on)."""
        self.tick += 1
        if a.next != "start":
            index, value, closed = a.next
            a.log.append([a.pc, index, value, closed])
            a.pc += 1
        a.next = None
        while a.pc < len(a.script) and a.script[a.pc][0] == "close":
            self.close(a.script[a.pc][1])
            a.pc += 1
        if a.pc == len(a.script):
            a.status = "done"
            return False
        cases = a.script[a.pc][1]
        for i, case in enumerate(cases):
            got = self.ready(case, a)
            if got is not None:
                a.next, a.since = (i, *got), self.tick
                return True
        a.status, a.cases, a.select_offset, a.select_tick = "blocked", cases, self.offset, self.tick
        for i, case in enumerate(cases):
            if case[0] == "recv":
                self.chans[case[1]].recvq.append(MWaiter(("a", a.idx), i))
            elif case[0] == "send":
                self.chans[case[1]].sendq.append(MWaiter(("a", a.idx), i, case[2]))
        return False

    def due(self, a: MActor) -> list[int]:
        return [
            i for i, c in enumerate(a.cases or [])
            if c[0] == "after" and a.select_offset + c[1] <= self.offset
        ]

    def wake(self, a: MActor) -> None:
        """jobs.wake (runtime/group.py): the job's queue starts with `a`. A blocked goroutine with
        a due timer has it fired, then steps. The goroutines a step wakes run next, then the
        goroutine itself if its new select fired at once (LOCAL_QUEUE of them; the rest wait for
        the runner's next pass), until the job has run steps_per_job steps."""
        queue, steps = [a.idx], 0
        while queue and steps < self.steps_per_job:
            current = self.actors[queue.pop(0)]
            if current.status == "blocked" and self.due(current):
                self.tick += 1
                self.drop(("a", current.idx))
                due = self.due(current)[0]
                current.status, current.next, current.since, current.cases = "runnable", (due, None, False), self.tick, None
            if current.status != "runnable":
                continue
            self.woken = []
            again = self.step(current)
            steps += 1
            next_up = [*dict.fromkeys(self.woken), *([current.idx] if again else [])]
            queue[:0] = next_up[:LOCAL_QUEUE]

    def run(self) -> None:
        """WorkflowRunner.run: passes over the runnable goroutines by (runnable_since, id), then the
        blocked ones with a due timer by (deadline, pending case), each goroutine once per pass."""
        while True:
            runnable = sorted((a for a in self.actors if a.status == "runnable"), key=lambda a: (a.since, a.idx))
            timers = sorted(
                ((a.select_offset + a.cases[i][1], a.select_tick, i), a.idx)
                for a in self.actors if a.status == "blocked" for i in self.due(a)
            )
            if not runnable and not timers:
                return
            seen: set[int] = set()
            for idx in [a.idx for a in runnable] + [idx for _, idx in timers]:
                if idx not in seen:
                    seen.add(idx)
                    self.wake(self.actors[idx])

    # operations from outside
    def start(self, script: list) -> None:
        self.tick += 1
        self.actors.append(MActor(len(self.actors), script, since=self.tick))
        self.run()

    def send(self, name: str, value: Any, key: str, wait: bool) -> str:
        self.tick += 1
        ch = self.chans[name]
        if ch.closed:
            return "closed"  # refused, nothing recorded
        if ch.recvq:
            self.fire(ch.recvq[0], value=value)
            outcome = "delivered"
        elif len(ch.buf) < ch.cap:
            ch.buf.append(value)
            ch.origins.append(key)
            outcome = "buffered"
        elif wait:
            ch.sendq.append(MWaiter(("x", key), 0, value))
            outcome = "waiting"
        else:
            outcome = "no_receiver"
        self.ext[key] = outcome
        self.run()
        return outcome

    def close_op(self, name: str) -> bool:
        self.tick += 1
        changed = self.close(name)
        self.run()
        return changed

    def advance(self, seconds: int) -> None:
        self.offset += seconds
        self.run()

    def waits(self, a: MActor) -> list[str]:
        if a.status != "blocked":
            return []
        return ["timer" if c[0] == "after" else f"{c[0]} {c[1]}" for c in a.cases]


# -- programs -------------------------------------------------------------------------------------

N_CHANS = 3

case_st = st.one_of(
    st.tuples(st.just("recv"), st.integers(0, N_CHANS - 1)),
    st.tuples(st.just("send"), st.integers(0, N_CHANS - 1)),
    st.tuples(st.just("after"), st.sampled_from([0, 1, 2, 3])),
)
select_st = st.tuples(
    st.just("select"), st.lists(case_st, min_size=1, max_size=MAX_CASES - 1), st.sampled_from([False, False, True])
)
close_st = st.tuples(st.just("close"), st.integers(0, N_CHANS - 1))
script_st = st.lists(st.one_of(select_st, select_st, select_st, close_st), min_size=1, max_size=4)
op_st = st.one_of(
    st.tuples(st.just("start"), script_st),
    st.tuples(st.just("start"), script_st),
    st.tuples(st.just("send"), st.integers(0, N_CHANS - 1), st.booleans()),
    st.tuples(st.just("send"), st.integers(0, N_CHANS - 1), st.booleans()),
    st.tuples(st.just("close"), st.integers(0, N_CHANS - 1)),
    st.tuples(st.just("advance"), st.sampled_from([1, 2, 3])),
)
program_st = st.fixed_dictionaries({
    "caps": st.lists(st.sampled_from([0, 0, 1, 2]), min_size=N_CHANS, max_size=N_CHANS),
    "ops": st.lists(op_st, min_size=1, max_size=14),
})

_example_no = itertools.count(1)


class Values:
    """Every value sent in a program is unique, so the ledger can follow it."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self) -> int:
        return next(self._n)


def build_script(raw: list, names: list[str], values: Values) -> list:
    script = []
    for item in raw:
        if item[0] == "close":
            script.append(["close", names[item[1]]])
            continue
        _, raw_cases, with_default = item
        cases = []
        for c in raw_cases:
            if c[0] == "recv":
                cases.append(["recv", names[c[1]]])
            elif c[0] == "send":
                cases.append(["send", names[c[1]], values()])
            else:
                cases.append(["after", c[1]])
        if with_default:
            cases.append(["default"])
        script.append(["select", cases])
    return script


@contextmanager
def ticking_clock():
    """Every clock reading is one microsecond after the previous one (plus the runner's offset).

    Installed inside the runner (which may freeze the clock): every step gets its own `now`, in
    the order the steps ran, so runnable_since orders goroutines by when they were woken."""
    base = datetime(2031, 1, 1, tzinfo=timezone.utc)
    ticks = itertools.count(1)
    previous = clock._now
    clock._now = lambda: base + timedelta(microseconds=next(ticks))
    try:
        yield
    finally:
        clock._now = previous


# -- comparing the engine with the model ----------------------------------------------------------

def check(model: Model, pids: list[str], op: Any) -> None:
    """The engine's processes, goroutines, pending cases, buffers and external sends = the model's."""
    where = f"after {op!r}"
    for a, pid in zip(model.actors, pids):
        proc = ProcessInstance.objects.get(pk=pid)
        g = Goroutine.objects.get(process_id=pid, name="Main")
        assert not g.last_error and not proc.error, f"{where}: actor {a.idx} failed: {g.last_error or proc.error}"
        assert proc.state["log"] == a.log, f"{where}: actor {a.idx} fired {proc.state['log']}, model {a.log}"
        assert g.status == a.status, f"{where}: actor {a.idx} is {g.status}, model {a.status}"
        assert proc.status == ("done" if a.status == "done" else "running"), where
        waits = [
            "timer" if c.kind == "timer" else f"{c.kind} {c.channel_id}"
            for c in PendingCase.objects.filter(goroutine=g).order_by("case_index")
        ]
        assert waits == model.waits(a), f"{where}: actor {a.idx} waits {waits}, model {model.waits(a)}"
    for name, ch in model.chans.items():
        assert buffer_values(name) == ch.buf, f"{where}: buffer of {name} {buffer_values(name)}, model {ch.buf}"
        assert services.get_channel(name).closed == ch.closed, where
    for key, status in model.ext.items():
        got = ExternalSend.objects.get(pk=key).status
        assert got == status, f"{where}: external send {key} is {got}, model {status}"
    check_invariants(pids, list(model.chans), where)


def check_invariants(pids: list[str], names: list[str], where: str) -> None:
    """Model-free checks of the engine's own data: the ledger and no missed rendezvous."""
    # Ledger: every value offered and not refused is in exactly one place.
    received, offered = [], set()
    for pid in pids:
        state = ProcessInstance.objects.get(pk=pid).state
        for pc, index, value, closed in state["log"]:
            case = state["script"][pc][1][index]
            if case[0] == "recv" and not closed:
                received.append(value)
            if case[0] == "send" and not closed:
                offered.add(case[2])
    pending = list(PendingCase.objects.filter(channel_id__in=names, kind="send").values_list("value", flat=True))
    buffered = [v for name in names for v in buffer_values(name)]
    for send in ExternalSend.objects.filter(channel__in=names):
        if send.status in ("delivered", "buffered", "received", "waiting"):
            offered.add(send.value)
    offered.update(pending)
    located = received + buffered + pending
    assert len(located) == len(set(located)), f"{where}: a value is in two places: {sorted(located)}"
    assert set(located) == offered, f"{where}: offered {sorted(offered)} but found {sorted(located)}"

    # Quiescence: nothing runnable, and no waiter whose counterpart is ready on the same channel.
    assert not Goroutine.objects.filter(process_id__in=pids, status="runnable").exists(), where
    for name in names:
        chan = services.get_channel(name)
        rows = PendingCase.objects.filter(channel_id=name)
        recv_owners = {(r.goroutine_id, r.external_send_id) for r in rows if r.kind == "recv"}
        send_owners = {(r.goroutine_id, r.external_send_id) for r in rows if r.kind == "send"}
        buf = buffer_values(name)
        if chan.closed:
            assert not recv_owners and not send_owners, f"{where}: waiters on closed {name}"
        if recv_owners:
            assert not buf, f"{where}: receivers blocked on {name} with buffered values {buf}"
            assert not any(s != r for s in send_owners for r in recv_owners), f"{where}: missed rendezvous on {name}"
        if send_owners:
            assert len(buf) == chan.capacity, f"{where}: senders blocked on {name} with room in the buffer"


def run_program(program: dict) -> None:
    n = next(_example_no)
    names = [f"prop{n}-c{i}" for i in range(N_CHANS)]
    caps = dict(zip(names, program["caps"]))
    values = Values()
    model = Model(caps, conf.steps_per_job())
    pids: list[str] = []
    with WorkflowRunner() as run, ticking_clock(), transaction.atomic():
        try:
            for name, cap in caps.items():
                services.create_channel(name, cap)
            for i, op in enumerate(program["ops"]):
                kind = op[0]
                if kind == "start":
                    script = build_script(op[1], names, values)
                    pids.append(run.start("prop-actor", {"script": script}))
                    model.start(script)
                elif kind == "send":
                    name, value, key = names[op[1]], values(), f"prop{n}-send{i}"
                    expected = model.send(name, value, key, op[2])
                    try:
                        got = services.send(name, value, key, wait=op[2]).status
                    except ChannelClosed:
                        got = "closed"
                    except NoReceiver:
                        got = "no_receiver"
                    run.run()
                    assert got == expected, f"send {value} on {name} (wait={op[2]}): {got}, model {expected}"
                elif kind == "close":
                    got = services.close_channel(names[op[1]])
                    run.run()
                    assert got == model.close_op(names[op[1]]), f"close {names[op[1]]} returned {got}"
                else:
                    run.advance(seconds=op[1])
                    model.advance(op[1])
                check(model, pids, op)
        finally:
            transaction.set_rollback(True)  # each example leaves nothing behind


@settings(max_examples=int(os.environ.get("SLCT_PROPERTY_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(program=program_st)
@example(program={  # full buffer and a blocked external sender: a receive moves its value in
    "caps": [1, 0, 0],
    "ops": [
        ("send", 0, True), ("send", 0, True),  # buffered, waiting
        ("start", [("select", [("recv", 0)], False), ("select", [("send", 0)], True)]),  # gets v1; full again
        ("start", [("select", [("recv", 0)], False)] * 2),
    ],
})
@example(program={  # close wakes every waiter; a select with two cases on the channel fires once
    "caps": [0, 2, 0],
    "ops": [
        ("start", [("select", [("recv", 0), ("recv", 0)], False)]),
        ("start", [("select", [("send", 1), ("recv", 0)], False)]),  # buffered at once
        ("start", [("select", [("recv", 1), ("recv", 0)], False), ("select", [("recv", 0)], False)]),
        ("start", [("select", [("send", 2), ("recv", 2)], False)]),
        ("send", 0, True),  # delivered to the first actor's first case
        ("start", [("select", [("recv", 0), ("recv", 0)], False)]),
        ("close", 0), ("close", 0),
        ("close", 2),
    ],
})
@example(program={  # timers: two due at once in one select, due order across actors, after(0), default
    "caps": [2, 0, 1],
    "ops": [
        ("start", [("select", [("recv", 1), ("after", 3)], False), ("select", [("send", 2)], False)]),
        ("start", [("select", [("after", 2), ("after", 1)], False), ("select", [("recv", 2)], True)]),
        ("advance", 3),
        ("send", 0, False), ("close", 0),
        ("start", [("select", [("recv", 0)], False), ("select", [("recv", 0), ("after", 0)], False)]),
        ("start", [("select", [("after", 0), ("recv", 2)], False)]),
    ],
})
@example(program={  # closing refuses waiting external senders; the buffer is drained before `closed`
    "caps": [0, 1, 0],
    "ops": [
        ("send", 0, True), ("send", 1, True), ("send", 1, True), ("send", 1, False),
        ("close", 0), ("close", 1), ("send", 1, True),
        ("start", [("select", [("recv", 1)], False)] * 2 + [("select", [("send", 1)], False)]),
    ],
})
def test_engine_matches_the_go_channel_model(program):
    run_program(program)
