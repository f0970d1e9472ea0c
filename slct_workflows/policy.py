"""Channel send policies as workflows declare them (pure: no Django imports, so `register` and
`p.make_chan` can use them at import time). `access` checks them; `models.SendPolicy` stores them."""
from __future__ import annotations

from dataclasses import dataclass

OPEN, RESTRICTED, PRIVATE = "open", "restricted", "private"
LABELS = {OPEN: "open to holders of the send permission", RESTRICTED: "restricted",
          PRIVATE: "private: steps and the runtime only"}


@dataclass(frozen=True)
class ChannelPolicy:
    """A channel's send policy, as a workflow declares it (`register(channels=...)`,
    `p.make_chan(policy=...)`)."""

    policy: str = OPEN
    permission: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if self.policy not in LABELS:
            raise ValueError(f"unknown channel policy {self.policy!r}; one of {sorted(LABELS)}")
        if self.policy == RESTRICTED and not (self.permission or self.group):
            raise ValueError("a restricted channel needs a permission or a group")
        if self.permission and (not isinstance(self.permission, str) or self.permission.count(".") != 1):
            raise ValueError(f"permission must be 'app_label.codename', got {self.permission!r}")

    @classmethod
    def open(cls) -> "ChannelPolicy":
        return cls(OPEN)

    @classmethod
    def private(cls) -> "ChannelPolicy":
        return cls(PRIVATE)

    @classmethod
    def restricted(cls, *, permission: str = "", group: str = "") -> "ChannelPolicy":
        return cls(RESTRICTED, permission, group)

    def describe(self) -> str:
        if self.policy == RESTRICTED:
            needs = [f"permission {self.permission}" if self.permission else "", f"group {self.group}" if self.group else ""]
            return "restricted to " + " and ".join(n for n in needs if n)
        return LABELS[self.policy]
