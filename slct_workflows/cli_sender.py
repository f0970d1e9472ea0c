"""Who sends when an operator runs `manage.py slct send|close` (docs/OPERATIONS.md, Operator CLI).

The CLI runs with the database's own credentials: whoever can run it could change any row from a
Django shell, so it is trusted like an operator holding every permission (open and restricted
channels accept it). It is still a door from the outside, so `access.check` refuses it a private
channel exactly as it refuses REST, Slack and the admin: those are a process's own plumbing.
Each send or close records `{"via": "cli", "os_user": ...}` as its provenance.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from slct_workflows.access import Sender


@dataclass(frozen=True)
class CliSender(Sender):
    os_user: str = ""

    def provenance(self) -> dict:
        return {"via": self.via, "os_user": self.os_user}

    def has_perm(self, perm: str) -> bool:
        return True

    def in_group(self, group: str) -> bool:
        return True


def os_user() -> str:
    """The operator's login name; under sudo, who ran sudo (the account it runs as is shared)."""
    sudo = os.environ.get("SUDO_USER", "")
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (a bare container)
        name = f"uid {os.getuid()}"
    return f"{sudo} (as {name})" if sudo and sudo != name else name


def cli_sender() -> CliSender:
    return CliSender(via="cli", os_user=os_user())
