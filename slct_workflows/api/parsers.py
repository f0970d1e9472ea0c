"""The one request parser of the API: strict JSON, bounded in size and depth, storable in any
database (no NaN/Infinity, no NUL characters, no unpaired surrogates)."""
from __future__ import annotations

import json
import math
import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from slct_workflows import conf
from slct_workflows.api.exceptions import PayloadTooLarge

MAX_DEPTH = 64
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null or a string)")


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


def limit_exceeded(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is {size} bytes or more; the limit is {limit} bytes (SLCT_MAX_REQUEST_BYTES)")


class StrictJSONParser(BaseParser):
    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        limit = conf.max_request_bytes()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise limit_exceeded(len(raw), limit)
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}: {exc}") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
            check_storable(data)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return data
