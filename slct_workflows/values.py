"""Channel values, inputs, outputs and state are JSON; dates, decimals and UUIDs encoded the Django way."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class ValueError_(ValueError):
    """A value that cannot be stored as JSON (or is too large)."""


# Channel names, process ids: one rule everywhere (steps, services, REST, Slack), so a name a
# step can make is a name an operator can send to.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@#/+-]{0,199}$")
NAME_RULE = "1-200 characters of letters, digits and _.:@#/+- starting with a letter or digit"
MAX_CAPACITY = 1_000_000


def is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME_RE.match(value) is not None


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
    plain = json.loads(text, parse_constant=_reject_nan)
    if "\\u0000" in text and _has_nul(plain):  # cheap test first; PostgreSQL cannot store NUL
        raise ValueError_("strings may not contain NUL characters (\\u0000)")
    try:
        if "\\ud" in text:  # surrogates are escaped as \udXXX; pairs (emoji) are fine
            json.dumps(plain, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError_("strings may not contain unpaired surrogates (not valid Unicode)") from None
    return plain


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    return False


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(dumps(list(parts)).encode()).hexdigest()



