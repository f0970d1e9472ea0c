"""Channel values, inputs, outputs and state are JSON; dates, decimals and UUIDs encoded the Django way."""
from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class ValueError_(ValueError):
    """A value that cannot be stored as JSON (or is too large)."""


# Channel names, process ids: one rule everywhere (steps, services, REST, Slack), so a name a
# step can make is a name an operator can send to. A name is also one URL path segment exactly as
# written: no `/` (a process `x/history` would shadow the history of `x`), no `#`, `?`, `%` or
# spaces (they end or change the path, or need escaping), and it cannot be `.` or `..`. The
# runtime's own names fit: uuid hex ids, `chan-<hex>`, `result-<id>`, `slack-<hex>`.
NAME_MAX = 200
NAME_CHARS = "A-Za-z0-9_.:@+-"
# Unanchored, in the syntax Python, JavaScript (OpenAPI `pattern`) and Django URL converters share.
NAME_PATTERN = rf"[A-Za-z0-9][{NAME_CHARS}]{{0,{NAME_MAX - 1}}}"
NAME_RE = re.compile(rf"\A{NAME_PATTERN}\Z")  # \Z: `$` would also accept a trailing newline
NAME_RULE = f"1-{NAME_MAX} characters of letters, digits and _.:@+- starting with a letter or digit"

# Idempotency keys sent in the `Idempotency-Key` header: printable ASCII, spaces only inside.
# HTTP carries header values as bytes (non-ASCII arrives garbled as Latin-1) and strips the
# spaces around them, so a key outside this set could not be sent back as it was stored.
KEY_MAX = 255
KEY_PATTERN = rf"[!-~](?:[ -~]{{0,{KEY_MAX - 2}}}[!-~])?"
KEY_RE = re.compile(rf"\A{KEY_PATTERN}\Z")
KEY_RULE = f"1-{KEY_MAX} printable ASCII characters (spaces only between others)"

MAX_CAPACITY = 1_000_000


def is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME_RE.match(value) is not None


def is_key(value: Any) -> bool:
    return isinstance(value, str) and KEY_RE.match(value) is not None


def is_capacity(value: Any) -> bool:
    """A buffer size: an int (not a bool, not 5.0, not "5") from 0 to MAX_CAPACITY."""
    return type(value) is int and 0 <= value <= MAX_CAPACITY


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
        from slct_workflows import conf

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


# What JSON allows but the databases cannot store; the one rule for every door (REST, state edits).
MAX_DEPTH = 64
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_storable(value: Any, depth: int = 0, where: str = "body") -> None:
    """Raise ValueError for what JSON allows but the databases cannot store."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if UNSTORABLE.search(value):
            raise ValueError(f"{where} contains a NUL character or an unpaired surrogate (\\u0000, \\ud800-\\udfff)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} contains a number out of range (it overflows to infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, depth + 1, where)
            check_storable(item, depth + 1, where)
    elif isinstance(value, list):
        for item in value:
            check_storable(item, depth + 1, where)
