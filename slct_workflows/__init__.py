"""SLCT for Django: durable processes, goroutines, channels and select.

The author's API. Everything else (engine, models, jobs) may change behind it.
"""
from .definitions import register
from .errors import (
    ChannelClosed, Conflict, DeclarationError, InvalidInput, NoReceiver, NotFound, SlctError,
)
from .process import Process, Select

__all__ = [
    "Process",
    "Select",
    "register",
    "SlctError",
    "NotFound",
    "Conflict",
    "InvalidInput",
    "ChannelClosed",
    "NoReceiver",
    "DeclarationError",
]
