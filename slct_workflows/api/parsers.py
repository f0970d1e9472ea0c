"""The one request parser of the API: strict JSON, bounded in size and depth, storable in any
database (no NaN/Infinity, no NUL characters, no unpaired surrogates)."""
from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from slct_workflows import conf
from slct_workflows.api.exceptions import PayloadTooLarge
from slct_workflows.values import MAX_DEPTH, UNSTORABLE, check_storable  # noqa: F401 - the API's limits are the values' rules


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null or a string)")


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
