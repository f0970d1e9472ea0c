"""A definition for the admin tests: fails while FLAKY["fail"] is set (for error display and retry)."""
from __future__ import annotations

from dataclasses import dataclass

from slct_workflows import Process, register

FLAKY = {"fail": True}


@register("admin-test-flaky")
@dataclass
class FlakyProcess:
    runs: int = 0

    def Main_Start(self, p: Process, input=None):
        self.runs += 1
        if FLAKY["fail"]:
            raise RuntimeError("boom: the approval service is down")
        p.finish({"ok": True})
