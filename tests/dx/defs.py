"""Process classes for the developer-experience tests. Not registered on import: each test
registers what it needs inside `workflow_registry` (an isolated registry), so that "deploying new
code" (forgetting a class, registering another) stays inside the test."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from slct_workflows import Process

NAME = "dx-expense"


def answers(process_id: str) -> str:
    return f"answers-{process_id}"


@dataclass
class ExpenseV1:
    """Main waits for an answer (or an hour); Reminder nudges after 30 minutes."""

    amount: int = 0
    note: str = ""
    reminded: int = 0

    def Main_Start(self, p: Process, input):
        self.amount = input["amount"]
        self.note = input.get("note", "")
        p.go(self.Reminder_Start)
        (p.select()
           .recv(answers(p.process_id)).to(self.Main_Answer)
           .after(timedelta(hours=1)).to(self.Main_Timeout))

    def Main_Answer(self, p: Process, value):
        p.finish({"by": "v1", "approved": bool(value)})

    def Main_Timeout(self, p: Process):
        p.finish({"by": "v1", "approved": False})

    def Reminder_Start(self, p: Process):
        p.select().after(timedelta(minutes=30)).to(self.Reminder_Nudge)

    def Reminder_Nudge(self, p: Process):
        self.reminded += 1


# -- "new code" variants -------------------------------------------------------------------------

@dataclass
class ExpenseRenamed:
    """Main_Answer was renamed Main_Decide."""

    amount: int = 0
    note: str = ""
    reminded: int = 0

    def Main_Start(self, p: Process, input):
        self.amount = input["amount"]
        p.go(self.Reminder_Start)
        (p.select()
           .recv(answers(p.process_id)).to(self.Main_Decide)
           .after(timedelta(hours=1)).to(self.Main_Timeout))

    def Main_Decide(self, p: Process, value):
        p.finish({"by": "renamed", "approved": bool(value)})

    def Main_DecideNoValue(self, p: Process):
        p.finish({"by": "renamed"})

    def Main_Timeout(self, p: Process):
        p.finish({"by": "renamed", "approved": False})

    def Reminder_Start(self, p: Process):
        p.select().after(timedelta(minutes=30)).to(self.Reminder_Nudge)

    def Reminder_Nudge(self, p: Process):
        self.reminded += 1

    def Reminder_Later(self, p: Process):
        self.reminded += 10


@dataclass
class ExpenseBadSignatures:
    """Main_Answer lost its value parameter; Main_Timeout now requires one."""

    amount: int = 0
    note: str = ""
    reminded: int = 0

    def Main_Start(self, p: Process, input):
        pass

    def Main_Answer(self, p: Process):
        p.finish(None)

    def Main_Timeout(self, p: Process, value):
        p.finish(None)

    def Reminder_Start(self, p: Process):
        pass

    def Reminder_Nudge(self, p: Process):
        pass


@dataclass
class ExpenseDefaults:
    """Main_Timeout takes an optional value, Main_Answer takes *args: both fit."""

    amount: int = 0
    note: str = ""
    reminded: int = 0

    def Main_Start(self, p: Process, input):
        pass

    def Main_Answer(self, p: Process, *values):
        p.finish({"values": list(values)})

    def Main_Timeout(self, p: Process, value=None):
        p.finish(None)

    def Reminder_Start(self, p: Process):
        pass

    def Reminder_Nudge(self, p: Process):
        pass


@dataclass
class ExpenseFieldsChanged:
    """`note` was removed; `currency` was added (with a default: fine)."""

    amount: int = 0
    reminded: int = 0
    currency: str = "EUR"

    def Main_Start(self, p: Process, input):
        pass

    def Main_Answer(self, p: Process, value):
        pass

    def Main_Timeout(self, p: Process):
        pass

    def Reminder_Start(self, p: Process):
        pass

    def Reminder_Nudge(self, p: Process):
        pass


@dataclass
class ExpenseV2:
    """Version 2 of the expense process: same shape, says which code ran."""

    amount: int = 0
    note: str = ""
    reminded: int = 0

    def Main_Start(self, p: Process, input):
        ExpenseV1.Main_Start(self, p, input)

    def Main_Answer(self, p: Process, value):
        p.finish({"by": "v2", "approved": bool(value), "amount": self.amount})

    def Main_Timeout(self, p: Process):
        p.finish({"by": "v2", "approved": False})

    def Reminder_Start(self, p: Process):
        p.select().after(timedelta(minutes=30)).to(self.Reminder_Nudge)

    def Reminder_Nudge(self, p: Process):
        self.reminded += 1


@dataclass
class Flaky:
    """Main_Work raises while `fail` says so (to test failed goroutines and retries)."""

    fail: bool = True
    done: bool = False

    def Main_Start(self, p: Process, input=None):
        p.select().recv("flaky-in").to(self.Main_Work)

    def Main_Work(self, p: Process, value):
        if value == "boom":
            raise RuntimeError("the step blew up")
        self.done = True
        p.finish({"got": value})

    def Main_Fixed(self, p: Process, value):
        self.done = True
        p.finish({"fixed": value})
