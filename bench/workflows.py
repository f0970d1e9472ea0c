"""Process definitions used only by the bench (loaded through SLCT_WORKFLOW_MODULES=bench.workflows).

Ping-pong uses the project's own demo definition "pingpong" (slct_project/workflows.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slct_workflows import Process, register


@register("bench-sender")
@dataclass
class BenchSender:
    """Sends 0, 1, 2, ... into `input["chan"]` forever (each send one step)."""

    chan: str = ""
    n: int = 0

    def Main_Start(self, p: Process, input):
        self.chan = input["chan"]
        p.select().send(self.chan, self.n).to(self.Main_Sent)

    def Main_Sent(self, p: Process):
        self.n += 1
        p.select().send(self.chan, self.n).to(self.Main_Sent)


@register("bench-sink")
@dataclass
class BenchSink:
    """Receives from `input["chan"]` forever, counting (each receive one step)."""

    chan: str = ""
    count: int = 0

    def Main_Start(self, p: Process, input):
        self.chan = input["chan"]
        p.select().recv(self.chan).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        self.count += 1
        p.select().recv(self.chan).to(self.Main_Got)


@register("bench-timer")
@dataclass
class BenchTimer:
    """Waits for an absolute deadline (`input["due"]`, ISO 8601), then finishes."""

    due: str = ""

    def Main_Start(self, p: Process, input):
        self.due = input["due"]
        p.select().at(datetime.fromisoformat(self.due)).to(self.Main_Fired)

    def Main_Fired(self, p: Process):
        p.finish({"due": self.due})
