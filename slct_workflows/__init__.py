"""SLCT for Django: durable processes, goroutines, channels and select.

The author's API. Everything else (engine, models, jobs) may change behind it.
"""
from slct_workflows._version import __version__  # noqa: F401 (one place: pyproject.toml reads _version.py)
from slct_workflows.definitions import register
from slct_workflows.errors import (
    ChannelClosed, Conflict, DeclarationError, Forbidden, InvalidInput, NoReceiver, NotFound, SlctError,
)
from slct_workflows.policy import ChannelPolicy
from slct_workflows.process import Process, Select
from slct_workflows.slots import Schedule

__all__ = [
    "Process",
    "Select",
    "register",
    "Schedule",
    "ChannelPolicy",
    "SlctError",
    "NotFound",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "ChannelClosed",
    "NoReceiver",
    "DeclarationError",
]
