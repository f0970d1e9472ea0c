"""SLCT for Django: durable processes, goroutines, channels and select.

The author's API. Everything else (engine, models, jobs) may change behind it.
"""
from .definitions import register
from .errors import (
    ChannelClosed, Conflict, DeclarationError, Forbidden, InvalidInput, NoReceiver, NotFound, SlctError,
)
from .policy import ChannelPolicy
from .process import Process, Select

__all__ = [
    "Process",
    "Select",
    "register",
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
