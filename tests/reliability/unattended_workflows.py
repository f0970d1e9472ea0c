"""Process definitions for the unattended-recovery tests (test_unattended_recovery.py); worker
processes load them through SLCT_WORKFLOW_MODULES=tests.reliability.unattended_workflows.

`rel-pair`: processes work in pairs. Each has a Main goroutine that sends `rounds` unique values
to its partner over an unbuffered channel, waiting on a short timer before each send, and a Recv
goroutine that receives the partner's `rounds` values. So every process keeps timers, rendezvous
and runnable goroutines in flight for a while, and every value must arrive exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from slct_workflows import Process, register

from .workflows import Instrumented, instrumented


@register("rel-pair")
@dataclass
class Pair(Instrumented):
    idx: int = 0
    inbox: str = ""
    outbox: str = ""
    rounds: int = 0
    tick: float = 0.2
    n_sent: int = 0
    sent: list = field(default_factory=list)
    received: list = field(default_factory=list)

    @instrumented
    def Main_Start(self, p: Process, input):
        self._instrument(input)
        self.idx, self.inbox, self.outbox = input["idx"], input["inbox"], input["outbox"]
        self.rounds, self.tick = input["rounds"], input.get("tick", 0.2)
        p.go(self.Recv_Start)
        self._next(p)

    def _next(self, p: Process) -> None:
        if self.n_sent < self.rounds:
            p.select().after(timedelta(seconds=self.tick)).to(self.Main_Send)
        # else: no select, Main ends

    @instrumented
    def Main_Send(self, p: Process):
        p.select().send(self.outbox, f"{self.idx}-{self.n_sent}").to(self.Main_Sent)

    @instrumented
    def Main_Sent(self, p: Process):
        self.sent.append(f"{self.idx}-{self.n_sent}")
        self.n_sent += 1
        self._next(p)

    @instrumented
    def Recv_Start(self, p: Process):
        self._receive(p)

    def _receive(self, p: Process) -> None:
        if len(self.received) < self.rounds:
            p.select().recv(self.inbox).to(self.Recv_Got)

    @instrumented
    def Recv_Got(self, p: Process, value):
        self.received.append(value)
        self._receive(p)
