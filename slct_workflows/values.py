"""Channel values, inputs, outputs and state are JSON; dates, decimals and UUIDs encoded the Django way."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class ValueError_(ValueError):
    """A value that cannot be stored as JSON (or is too large)."""


def _reject_nan(x: str) -> Any:
    raise ValueError_(f"{x} is not valid JSON")


def dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False, separators=(",", ":"), sort_keys=True)


def to_json(value: Any, max_bytes: int | None = None) -> Any:
    """Return the plain-JSON form of `value` (what a receiver will get), or raise ValueError_."""
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError_(f"{type(exc).__name__}: {exc}") from None
    if max_bytes is None:
        from . import conf

        max_bytes = conf.max_value_bytes()
    if len(text.encode()) > max_bytes:
        raise ValueError_(f"value is {len(text.encode())} bytes encoded; the limit is {max_bytes}")
    return json.loads(text, parse_constant=_reject_nan)


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(dumps(list(parts)).encode()).hexdigest()



