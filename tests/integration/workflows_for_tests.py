"""Definitions the engine tests drive."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from slct_workflows import Process, register


@register("t-flaky")
@dataclass
class Flaky:
    """Main_Start raises `fail_times` times, then finishes."""

    calls: int = 0
    fail_times: int = 0

    def Main_Start(self, p: Process, input):
        from django.db import connection

        self.fail_times = input["fail_times"]
        seen = int(connection.cursor().execute("select count(*) from slct_workflows_event where kind in ('error', 'failed')").fetchone()[0])
        if seen < self.fail_times:
            raise RuntimeError(f"boom {seen + 1}")
        p.finish({"ok": True})


@register("t-bad")
@dataclass
class BadDeclarations:
    mode: str = ""

    def Main_Start(self, p: Process, input):
        self.mode = input
        if input == "default-not-last":
            p.select().default().to(self.Main_Start).recv("x").to(self.Main_Start)
        elif input == "other-goroutine":
            p.select().recv("x").to(self.Helper_Run)
        elif input == "bad-name":
            p.select().recv("x").to(self.notastep)
        elif input == "not-json":
            p.select().send("x", object()).to(self.Main_Start)
        elif input == "state-not-json":
            self.mode = {1, 2}  # a set
        elif input == "other-object":
            p.select().recv("x").to(Flaky().Main_Start)
        elif input == "no-to":
            p.select().recv("x")
        elif input == "empty-select":
            p.select()

    def Helper_Run(self, p: Process):
        pass

    def notastep(self, p: Process):
        pass


@register("t-parent")
@dataclass
class Parent:
    result: object = None
    closed: bool = False

    def Main_Start(self, p: Process, input):
        p.call("t-child", {"n": input["n"]}).to(self.Main_Done)

    def Main_Done(self, p: Process, value):
        self.result, self.closed = value, p.closed
        p.finish({"child": value, "closed": p.closed})


@register("t-child")
@dataclass
class Child:
    def Main_Start(self, p: Process, input):
        if input["n"] < 0:
            p.select().recv("never").to(self.Main_Start)
            return
        p.finish({"double": input["n"] * 2})


@register("t-closer")
@dataclass
class Closer:
    got: list = field(default_factory=list)

    def Main_Start(self, p: Process, input):
        p.select().recv(input).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        self.got.append([value, p.closed])
        if p.closed:
            p.finish(self.got)
        else:
            p.select().recv(p.goroutine and self._chan(p)).to(self.Main_Got)

    def _chan(self, p):
        return "closer-c"


@register("t-two")
@dataclass
class TwoGoroutines:
    """Main and Worker talk over a process-private channel made with make_chan."""

    chan: str = ""
    got: list = field(default_factory=list)

    def Main_Start(self, p: Process, input=None):
        self.chan = p.make_chan(0)
        p.go(self.Worker_Start, 3)
        p.select().recv(self.chan).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        self.got.append(value)
        if p.closed:
            p.finish(self.got)
        else:
            p.select().recv(self.chan).to(self.Main_Got)

    def Worker_Start(self, p: Process, n):
        self._send(p, n)

    def Worker_Sent(self, p: Process):
        self._send(p, None)

    def _send(self, p: Process, n):
        remaining = n if n is not None else self.remaining
        self.remaining = remaining - 1
        if remaining <= 0:
            p.close(self.chan)
            return
        p.select().send(self.chan, remaining).to(self.Worker_Sent)

    remaining: int = 0


@register("t-sleeper")
@dataclass
class Sleeper:
    def Main_Start(self, p: Process, input=None):
        p.select().after(timedelta(hours=1)).to(self.Main_Woke)

    def Main_Woke(self, p: Process):
        p.finish("woke")


@register("t-sender")
@dataclass
class Sender:
    """Sends input["value"] into input["chan"] once, then finishes with "sent" (or "closed")."""

    chan: str = ""

    def Main_Start(self, p: Process, input):
        self.chan = input["chan"]
        p.select().send(self.chan, input["value"]).to(self.Main_Sent)

    def Main_Sent(self, p: Process):
        p.finish("closed" if p.closed else "sent")


@register("t-receiver")
@dataclass
class Receiver:
    """Receives input["n"] values from input["chan"], then finishes with them in order."""

    chan: str = ""
    n: int = 0
    got: list = field(default_factory=list)

    def Main_Start(self, p: Process, input):
        self.chan, self.n = input["chan"], input["n"]
        p.select().recv(self.chan).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        self.got.append(value)
        if len(self.got) == self.n:
            p.finish(self.got)
        else:
            p.select().recv(self.chan).to(self.Main_Got)
