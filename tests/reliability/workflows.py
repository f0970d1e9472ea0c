"""Process definitions for the reliability suite; worker processes load them through
SLCT_WORKFLOW_MODULES=tests.reliability.workflows.

Every step method is wrapped by `instrumented`, which (when the process's state says so):

* appends one line per *attempt* to a log file (worker pid, process, goroutine, method), so a test
  can tell attempts that never committed (a killed worker, a retried transaction) from committed
  steps (history events);
* sleeps `delay_ms` inside the step's transaction, so a SIGKILL or a terminated connection lands
  in the middle of steps;
* holds an O_EXCL guard file per process while the method runs: the method runs after the engine
  has locked the process, so two methods of one process must never overlap. An overlap is written
  to a `violation-*` file (outside the database, so a rollback cannot hide it).
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from slct_workflows import Process, register


def instrumented(func):
    @functools.wraps(func)
    def wrapper(self, p: Process, *args):
        if func.__name__ == "Main_Start" and args and isinstance(args[0], dict):
            self._instrument(args[0])  # the first step: the settings come with the input
        if self.log_path:
            line = f"{os.getpid()} {p.process_id} {p.goroutine} {p.method} {time.time_ns()}\n".encode()
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        guard = None
        if self.guard_dir:
            path = Path(self.guard_dir, p.process_id)
            try:
                guard = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                Path(self.guard_dir, f"violation-{p.process_id}-{time.time_ns()}").write_text(
                    f"{p.goroutine} {p.method} entered while another step of {p.process_id} was running\n"
                )
        try:
            if self.delay_ms:
                time.sleep(self.delay_ms / 1000.0)
            return func(self, p, *args)
        finally:
            if guard is not None:
                os.close(guard)
                os.unlink(Path(self.guard_dir, p.process_id))

    return wrapper


@dataclass
class Instrumented:
    guard_dir: str = ""
    log_path: str = ""
    delay_ms: int = 0

    def _instrument(self, input: dict) -> None:
        self.guard_dir = input.get("guard_dir", "")
        self.log_path = input.get("log_path", "")
        self.delay_ms = input.get("delay_ms", 0)


# -- the stress node ----------------------------------------------------------------------------

@register("rel-node")
@dataclass
class Node(Instrumented):
    """A Sender goroutine sends this node's `values`, each through a select over two data channels
    and a timer (a timeout retries the same value, on two other channels); then it reports to the
    coordinator on `done_chan`. A Receiver goroutine receives from three data channels (and an idle
    timer) until all three are closed, recording every value in `received`."""

    idx: int = 0
    values: list = field(default_factory=list)
    chans: list = field(default_factory=list)
    recv_chans: list = field(default_factory=list)
    open: list = field(default_factory=list)
    done_chan: str = ""
    short_timeout: float = 0.5
    long_timeout: float = 60.0
    idle_timeout: float = 1.0
    sent: list = field(default_factory=list)
    received: list = field(default_factory=list)
    next_i: int = 0
    timeouts: int = 0
    idles: int = 0
    turn: int = 0

    @instrumented
    def Main_Start(self, p: Process, input):
        self._instrument(input)
        for k in ("idx", "values", "chans", "recv_chans", "done_chan", "short_timeout", "long_timeout",
                  "idle_timeout"):
            setattr(self, k, input[k])
        self.open = list(self.recv_chans)
        p.go(self.Sender_Start)
        p.go(self.Receiver_Start)

    # Sender
    def _send_next(self, p: Process) -> None:
        if self.next_i >= len(self.values):
            p.select().send(self.done_chan, self.idx).to(self.Sender_End)
            return
        v = self.values[self.next_i]
        n = len(self.chans)
        a = (v + self.timeouts) % n
        b = (v * 7 + 3 + self.timeouts) % n
        if b == a:
            b = (b + 1) % n
        timeout = self.short_timeout if v % 4 == 0 else self.long_timeout
        (p.select()
            .send(self.chans[a], v).to(self.Sender_Sent)
            .send(self.chans[b], v).to(self.Sender_Sent)
            .after(timedelta(seconds=timeout)).to(self.Sender_Timeout))

    @instrumented
    def Sender_Start(self, p: Process):
        self._send_next(p)

    @instrumented
    def Sender_Sent(self, p: Process):
        assert not p.closed, "a data channel was closed while a sender was still sending"
        self.sent.append(self.values[self.next_i])
        self.next_i += 1
        self._send_next(p)

    @instrumented
    def Sender_Timeout(self, p: Process):
        self.timeouts += 1
        self._send_next(p)

    @instrumented
    def Sender_End(self, p: Process):
        pass  # no select: the Sender goroutine ends

    # Receiver
    def _receive(self, p: Process) -> None:
        if not self.open:
            return  # every channel closed and drained: the Receiver ends (and with it the process)
        targets = [self.Receiver_Got0, self.Receiver_Got1, self.Receiver_Got2]
        order = list(range(len(self.recv_chans)))
        shift = self.turn % len(order)
        order = order[shift:] + order[:shift]
        s = p.select()
        for k in order:
            if self.recv_chans[k] in self.open:
                s.recv(self.recv_chans[k]).to(targets[k])
        timeout = self.idle_timeout if self.idx % 4 == 1 else self.long_timeout
        s.after(timedelta(seconds=timeout)).to(self.Receiver_Idle)

    def _got(self, p: Process, k: int, value) -> None:
        self.turn += 1
        if p.closed:
            self.open.remove(self.recv_chans[k])
        else:
            self.received.append(value)
        self._receive(p)

    @instrumented
    def Receiver_Start(self, p: Process):
        self._receive(p)

    @instrumented
    def Receiver_Got0(self, p: Process, value):
        self._got(p, 0, value)

    @instrumented
    def Receiver_Got1(self, p: Process, value):
        self._got(p, 1, value)

    @instrumented
    def Receiver_Got2(self, p: Process, value):
        self._got(p, 2, value)

    @instrumented
    def Receiver_Idle(self, p: Process):
        self.idles += 1
        self._receive(p)


@register("rel-coordinator")
@dataclass
class Coordinator(Instrumented):
    """Counts the nodes' "done" reports; when all `n` have reported, closes every data channel
    (the receivers drain the buffers, then see `closed`) and finishes."""

    n: int = 0
    done_chan: str = ""
    chans: list = field(default_factory=list)
    done: list = field(default_factory=list)
    linger: float = 0.0

    @instrumented
    def Main_Start(self, p: Process, input):
        self._instrument(input)
        self.n, self.done_chan, self.chans = input["n"], input["done_chan"], input["chans"]
        self.linger = input.get("linger", 0.0)
        p.select().recv(self.done_chan).to(self.Main_Done)

    @instrumented
    def Main_Done(self, p: Process, value):
        self.done.append(value)
        if len(self.done) < self.n:
            p.select().recv(self.done_chan).to(self.Main_Done)
        elif self.linger:
            # Wait a while before closing: the receivers sit idle, so their idle timers fire.
            p.select().after(timedelta(seconds=self.linger)).to(self.Main_Close)
        else:
            self._close(p)

    @instrumented
    def Main_Close(self, p: Process):
        self._close(p)

    def _close(self, p: Process) -> None:
        for c in self.chans:
            p.close(c)
        p.finish({"done": sorted(self.done)})


# -- rendezvous races ---------------------------------------------------------------------------

@register("rel-rendezvous")
@dataclass
class Rendezvous(Instrumented):
    """Waits on its gate channel; when the test closes the gate (waking both sides of a pair in one
    commit, so two workers pick them up at the same moment), sends or receives once on `chan`."""

    role: str = ""
    chan: str = ""
    value: int = 0

    @instrumented
    def Main_Start(self, p: Process, input):
        self._instrument(input)
        self.role, self.chan, self.value = input["role"], input["chan"], input.get("value", 0)
        p.select().recv(input["gate"]).to(self.Main_Go)

    @instrumented
    def Main_Go(self, p: Process, _gate):
        if self.role == "send":
            p.select().send(self.chan, self.value).to(self.Main_Sent)
        else:
            p.select().recv(self.chan).to(self.Main_Got)

    @instrumented
    def Main_Sent(self, p: Process):
        p.finish({"sent": self.value, "closed": p.closed})

    @instrumented
    def Main_Got(self, p: Process, value):
        p.finish({"got": value, "closed": p.closed})


@register("rel-either")
@dataclass
class Either(Instrumented):
    """Blocks on one select over two channels, twice: two senders arriving at the same moment on
    the two channels must fire the first select once; the other value comes with the second."""

    chans: list = field(default_factory=list)
    got: list = field(default_factory=list)

    @instrumented
    def Main_Start(self, p: Process, input):
        self._instrument(input)
        self.chans = input["chans"]
        self._wait(p)

    def _wait(self, p: Process) -> None:
        p.select().recv(self.chans[0]).to(self.Main_Got).recv(self.chans[1]).to(self.Main_Got)

    @instrumented
    def Main_Got(self, p: Process, value):
        self.got.append(value)
        if len(self.got) == 2:
            p.finish({"got": self.got})
        else:
            self._wait(p)


# -- waiting on timers and channels (Redis faults) ---------------------------------------------

@register("rel-waiter")
@dataclass
class Waiter(Instrumented):
    """kind=timer: `ticks` timer steps of `delay` seconds; kind=recv / send: one receive / send on
    `chan` (with a long timer as the alternative, which must not be what fires)."""

    kind: str = ""
    chan: str = ""
    value: int = 0
    delay: float = 1.0
    ticks: int = 0
    want: int = 0

    @instrumented
    def Main_Start(self, p: Process, input):
        self._instrument(input)
        self.kind, self.chan, self.value = input["kind"], input.get("chan", ""), input.get("value", 0)
        self.delay, self.want = input.get("delay", 1.0), input.get("ticks", 0)
        self._wait(p)

    def _wait(self, p: Process) -> None:
        if self.kind == "timer":
            p.select().after(timedelta(seconds=self.delay)).to(self.Main_Tick)
        elif self.kind == "recv":
            p.select().recv(self.chan).to(self.Main_Got).after(timedelta(hours=1)).to(self.Main_Late)
        else:
            p.select().send(self.chan, self.value).to(self.Main_Sent).after(timedelta(hours=1)).to(self.Main_Late)

    @instrumented
    def Main_Tick(self, p: Process):
        self.ticks += 1
        if self.ticks >= self.want:
            p.finish({"ticks": self.ticks})
        else:
            self._wait(p)

    @instrumented
    def Main_Got(self, p: Process, value):
        p.finish({"got": value})

    @instrumented
    def Main_Sent(self, p: Process):
        p.finish({"sent": self.value})

    @instrumented
    def Main_Late(self, p: Process):
        p.finish({"late": True})


# -- external sends ------------------------------------------------------------------------------

@register("rel-sink")
@dataclass
class Sink(Instrumented):
    """Receives from one channel until it is closed, recording every value."""

    chan: str = ""
    received: list = field(default_factory=list)

    @instrumented
    def Main_Start(self, p: Process, input):
        self._instrument(input)
        self.chan = input["chan"]
        p.select().recv(self.chan).to(self.Main_Got)

    @instrumented
    def Main_Got(self, p: Process, value):
        if p.closed:
            p.finish({"received": len(self.received)})
            return
        self.received.append(value)
        p.select().recv(self.chan).to(self.Main_Got)
