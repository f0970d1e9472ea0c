"""The engine's clock. Tests replace it (slct_workflows.testing) to make hours pass instantly."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from django.utils import timezone

_now: Callable[[], datetime] = timezone.now
_offset = timedelta(0)


def now() -> datetime:
    return _now() + _offset


def advance(delta: timedelta) -> None:
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = timedelta(0)


def use(func: Callable[[], datetime]) -> Callable[[], datetime]:
    """Replace the time source (tests freeze it); returns the previous one."""
    global _now
    previous, _now = _now, func
    return previous
