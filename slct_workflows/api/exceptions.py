"""Every error the API returns is one JSON shape:

    {"code": "not_found", "detail": "unknown process 'x'"}
    {"code": "invalid", "detail": "capacity: Ensure this value is greater than or equal to 0.",
     "fields": {"capacity": ["Ensure this value is greater than or equal to 0."]}}

Service errors (slct_workflows.errors) map to status codes here, so views only call services.
"""
from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.utils.encoding import escape_uri_path
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from slct_workflows.errors import (
    ChannelClosed,
    Conflict,
    Forbidden,
    InvalidInput,
    NoReceiver,
    NotFound,
    QueueUnavailable,
    SlctError,
)
from slct_workflows.values import NAME_RULE

SERVICE_STATUS: list[tuple[type[SlctError], int]] = [
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Forbidden, status.HTTP_403_FORBIDDEN),
    (ChannelClosed, status.HTTP_409_CONFLICT),
    (NoReceiver, status.HTTP_409_CONFLICT),
    (Conflict, status.HTTP_409_CONFLICT),
    (InvalidInput, status.HTTP_400_BAD_REQUEST),
    (QueueUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (SlctError, status.HTTP_400_BAD_REQUEST),
]


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class BadRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad request."
    default_code = "invalid"


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    """Field errors as "field: message" lines, nested fields joined with dots."""
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            out += _flatten(value, f"{prefix}.{name}" if prefix and name else (prefix or name))
        return out
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, prefix)]
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def error_body(code: str, detail: str, fields: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if fields is not None:
        body["fields"] = fields
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, SlctError):
        code = next(c for cls, c in SERVICE_STATUS if isinstance(exc, cls))
        set_rollback()
        return Response(error_body(exc.code, str(exc)), status=code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django report it
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body("invalid", "; ".join(_flatten(fields)) or "Invalid input.", fields)
    else:
        detail = exc.detail
        code = getattr(detail, "code", None) or exc.default_code
        body = error_body(str(code), str(detail))
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


# A URL below a collection that matched no route: most likely an id or name outside the name rule.
_NAMED = re.compile(r"/(?:processes|channels|definitions)/.+/\Z", re.S)


@csrf_exempt  # it changes nothing; a CSRF failure would answer a POST with Django's HTML 403 page
def not_found_view(request, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown URLs under /api/ answer in JSON too (with a hint when only the slash is missing)."""
    from django.urls import Resolver404, resolve

    detail = f"no API endpoint at {escape_uri_path(request.path)}"  # NUL or newlines stay escaped
    if _NAMED.search(request.path):
        detail += f" (process ids and channel names are {NAME_RULE})"
    elif not request.path.endswith("/"):
        try:
            if resolve(request.path + "/").func is not not_found_view:
                detail += f" (did you mean {request.path}/ ?)"
        except Resolver404:
            pass
    return JsonResponse(error_body("not_found", detail), status=404)
