"""Definitions used by the end-to-end tests; worker processes load them via SLCT_WORKFLOW_MODULES."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from slct_workflows import Process, register


@register("e2e-slow-counter")
@dataclass
class SlowCounter:
    """Counts `target` values from `channel`; each step leaves a marker file, then sleeps `delay`
    seconds inside its transaction, so a test can kill a worker in the middle of a step."""

    counter: int = 0
    target: int = 0
    channel: str = ""
    marker_dir: str = ""
    delay: float = 0.0

    def Main_Start(self, p: Process, input):
        self.target, self.channel = input["target"], input["channel"]
        self.marker_dir, self.delay = input["marker_dir"], input["delay"]
        p.select().recv(self.channel).to(self.Main_Count)

    def Main_Count(self, p: Process, value):
        Path(self.marker_dir, f"step-{value}-{time.time_ns()}").touch()
        time.sleep(self.delay)
        self.counter += 1
        if self.counter >= self.target:
            p.finish({"count": self.counter})
        else:
            p.select().recv(self.channel).to(self.Main_Count)


@register("e2e-hopper")
@dataclass
class Hopper:
    """Main waits on a new channel at every hop and names it in the state (`waiting_on`), while
    Feeder sends into whatever Main waits on: a read that mixes two snapshots sees the state
    name one channel and the pending case another."""

    hops: int = 0
    hop: int = 0
    fed: int = 0  # the Feeder's own count: it must not depend on whether Main has run yet
    waiting_on: str = ""

    def Main_Start(self, p: Process, input):
        self.hops = input["hops"]
        p.go(self.Feeder_Start)
        self._wait(p)

    def Main_Hop(self, p: Process, value):
        self.hop += 1
        if self.hop >= self.hops:
            p.finish({"hops": self.hop})
        else:
            self._wait(p)

    def _wait(self, p: Process) -> None:
        self.waiting_on = f"hop-{p.process_id}-{self.hop}"
        p.select().recv(self.waiting_on).to(self.Main_Hop)

    def Feeder_Start(self, p: Process):
        p.select().send(f"hop-{p.process_id}-{self.fed}", self.fed).to(self.Feeder_Sent)

    def Feeder_Sent(self, p: Process):
        # A pause between hops keeps Main blocked most of the time, where a read can catch it.
        self.fed += 1
        p.select().after(0.02).to(self.Feeder_Start)
