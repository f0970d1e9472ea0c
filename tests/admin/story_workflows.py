"""Definitions for the admin story tests (issue 16): a parent waiting on its child, a child whose
second goroutine waits on a make_chan channel held in its state. Also loaded by the browser
tests' worker (SLCT_WORKFLOW_MODULES=tests.admin.story_workflows)."""
from __future__ import annotations

from dataclasses import dataclass

from slct_workflows import Process, register


@register("story-parent", version="3")
@dataclass
class StoryParent:
    child: str = ""

    def Main_Start(self, p: Process, input=None):
        input = input or {}
        self.child = input.get("child_id") or ""
        p.call("story-child", {"go": input.get("go", "story-go")}, id=self.child or None).to(self.Main_Child)

    def Main_Child(self, p: Process, output=None):
        p.finish({"child": output})


@register("story-child")
@dataclass
class StoryChild:
    go: str = ""
    reply_to: str = ""

    def Main_Start(self, p: Process, input=None):
        self.go = (input or {}).get("go", "story-go")
        self.reply_to = p.make_chan(1)
        p.go(self.Side_Start)
        p.select().recv(self.go).to(self.Main_Go)

    def Main_Go(self, p: Process, value=None):
        p.finish({"got": value})

    def Side_Start(self, p: Process):
        p.select().recv(self.reply_to).to(self.Side_Got)

    def Side_Got(self, p: Process, value=None):
        pass
