"""Demo workflows from the seed: the counter, and a process with a second goroutine."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from slct_workflows import Process, register


@register("counter")
@dataclass
class CounterProcess:
    """Counts values sent on channel `counter` (or `input["channel"]`); finishes after an hour
    (or `input["idle_seconds"]`) of silence, or when the channel is closed (a receive on a
    closed channel is always ready: waiting on it again would loop)."""

    counter: int = 0
    channel: str = "counter"
    idle_seconds: float = 3600.0
    values: list = field(default_factory=list)

    def Main_Start(self, p: Process, input=None):
        input = input or {}
        self.channel = input.get("channel", self.channel)
        self.idle_seconds = float(input.get("idle_seconds", self.idle_seconds))
        self._wait(p)

    def Main_Count(self, p: Process, value=None):
        if p.closed:  # the channel was closed: nothing more will come
            self.Main_Done(p)
            return
        self.counter += 1
        self.values.append(value)
        self._wait(p)

    def _wait(self, p: Process) -> None:
        (p.select()
           .recv(self.channel).to(self.Main_Count)
           .after(timedelta(seconds=self.idle_seconds)).to(self.Main_Done))

    def Main_Done(self, p: Process):
        p.finish({"count": self.counter})


@register("pingpong")
@dataclass
class PingPongProcess:
    """Two processes bounce a counter over an unbuffered channel pair until it reaches `rounds`.

    input: {"role": "ping"|"pong", "inbox": name, "outbox": name, "rounds": n}
    """

    role: str = "ping"
    inbox: str = ""
    outbox: str = ""
    rounds: int = 10
    last: int = -1

    def Main_Start(self, p: Process, input):
        self.role, self.inbox, self.outbox = input["role"], input["inbox"], input["outbox"]
        self.rounds = int(input.get("rounds", 10))
        if self.role == "ping":
            p.select().send(self.outbox, 0).to(self.Main_Sent)
        else:
            p.select().recv(self.inbox).to(self.Main_Received)

    def Main_Sent(self, p: Process):
        sent = self.last + 1
        if sent + 1 >= self.rounds:  # the peer finishes on this value; so do we
            p.finish({"last": sent})
            return
        p.select().recv(self.inbox).to(self.Main_Received)

    def Main_Received(self, p: Process, value):
        self.last = value
        if value + 1 >= self.rounds:
            p.finish({"last": value})
            return
        p.select().send(self.outbox, value + 1).to(self.Main_Sent)


@register("reminder")
@dataclass
class ReminderProcess:
    """A process with a second goroutine: Main waits for an answer on `answers` while the
    Reminder goroutine nudges on channel `nudges` every `every` seconds (at least MIN_EVERY: a
    timer of 0 is due at once, and the reminder would nudge without ever waiting)."""

    MIN_EVERY: ClassVar[float] = 1.0

    answer: str | None = None
    reminders: int = 0
    every: float = 1800.0
    answers: str = "answers"
    nudges: str = "nudges"

    def Main_Start(self, p: Process, input=None):
        input = input or {}
        every = float(input.get("every", self.every))
        self.every = every if math.isfinite(every) and every >= self.MIN_EVERY else self.MIN_EVERY
        self.answers = input.get("answers", self.answers)
        self.nudges = input.get("nudges", self.nudges)
        p.go(self.Reminder_Start)
        p.select().recv(self.answers).to(self.Main_Answered)

    def Main_Answered(self, p: Process, value):
        self.answer = value
        p.finish({"answer": value, "reminders": self.reminders})

    def Reminder_Start(self, p: Process):
        p.select().after(timedelta(seconds=self.every)).to(self.Reminder_Nudge)

    def Reminder_Nudge(self, p: Process):
        self.reminders += 1
        p.select().send(self.nudges, {"reminder": self.reminders}).to(self.Reminder_Start).default().to(self.Reminder_Start)
