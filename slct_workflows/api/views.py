"""REST views: validate the request, call one service (or selector), shape the answer.

All rules live in slct_workflows.services / selectors / values; errors map to JSON in exceptions.py.
"""
from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from slct_workflows import conf, services

from slct_workflows.read import selectors
from slct_workflows.access import Sender
from slct_workflows.api import permissions as perms
from slct_workflows.api import serializers as s
from slct_workflows.api.exceptions import BadRequest, exception_handler
from slct_workflows.api.parsers import UNSTORABLE, StrictJSONParser, limit_exceeded
from slct_workflows.api.schema import SlctAutoSchema
from slct_workflows.definitions import registry
from slct_workflows.models import SendStatus
from slct_workflows.runtime import consistent_read
from slct_workflows.values import KEY_PATTERN, KEY_RULE, NAME_PATTERN, NAME_RULE, is_key

IDEMPOTENCY_HEADER = "Idempotency-Key"
BODY_METHODS = ("POST", "PUT", "PATCH")

ERROR_WORDS = {
    400: "invalid input (`invalid`, `parse_error`)", 401: "not authenticated", 403: "no permission "
    "(`permission_denied`) or the channel's send policy refuses you (`forbidden`)", 404: "not found",
    406: "the Accept header allows no JSON", 409: "conflict with the current state", 413: "request body too large",
    415: "the body is not application/json",
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    # 400 (a query parameter with NUL), 401, 403 and 406 can answer any operation.
    codes = tuple(sorted({400, 401, 403, 406, *codes}))
    return {c: OpenApiResponse(s.ErrorSerializer, description=ERROR_WORDS[c]) for c in codes}


def _path(name: str, example: str, description: str, pattern: str = NAME_PATTERN) -> OpenApiParameter:
    return OpenApiParameter(
        name, {"type": "string", "pattern": f"^{pattern}$"}, OpenApiParameter.PATH, description=description,
        examples=[OpenApiExample(example, value=example)],
    )


def _location(code: int, what: str) -> OpenApiParameter:
    return OpenApiParameter(
        "Location", OpenApiTypes.URI_REF, OpenApiParameter.HEADER, response=[code], required=True,
        description=f"the {what}'s URL, percent-encoded",
    )


PROCESS_ID = _path("id", "demo-1", f"the process id: {NAME_RULE}")
CHANNEL_NAME = _path("name", "demo", f"the channel name: {NAME_RULE}")
DEFINITION_NAME = _path("name", "counter", "the definition name")
SEND_KEY = _path("key", "demo-key", f"the send's idempotency key: {KEY_RULE}; percent-encode "
                                    "`?`, `#`, `%` and spaces", pattern=KEY_PATTERN)

WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 415)  # a POST on a resource: unknown, conflicting, body refused
CREATE_ERRORS = (400, 401, 403, 409, 413, 415)  # a POST on a collection


def location(route: str, **kwargs: str) -> str:
    """A resource's URL for a `Location` header: reverse() percent-encodes what needs it."""
    return reverse(route, kwargs=kwargs)


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    last_page_strings = ()  # `?page=last` is not an integer: the schema does not offer it

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return []  # page and page_size come from the views' query serializers (validated there)


class SlctAPIView(GenericAPIView):
    # Base: token or session auth, per-method model permissions, strict bounded JSON, JSON errors.
    # (A comment, not a docstring: drf-spectacular would show it on every operation.)

    permission_classes = [perms.SlctPermission]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]  # interactive docs: /api/docs/ (Swagger UI)
    pagination_class = Pagination
    schema = SlctAutoSchema()
    required_permissions: dict[str, list[str]] = {}

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method in BODY_METHODS:
            self._check_body_headers(request)
        for key, values in request.query_params.lists():
            if any(UNSTORABLE.search(v) for v in values) or UNSTORABLE.search(key):
                raise BadRequest(f"query parameter {key!r} contains a NUL character or an unpaired surrogate")

    def _check_body_headers(self, request: Request) -> None:
        limit = conf.max_request_bytes()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BadRequest("the Content-Length header is not a number") from None
        if length > limit:
            raise limit_exceeded(length, limit)
        # DRF would ignore a body without a Content-Type and act on defaults instead.
        if length and not request.META.get("CONTENT_TYPE"):
            raise UnsupportedMediaType("", "the request has a body but no Content-Type; send application/json")

    def body(self, serializer_class: type, **kwargs: Any) -> dict[str, Any]:
        """The request body validated by `serializer_class` (no body is `{}`; JSON `null` is refused)."""
        data = self.request.data
        if data is None:
            raise drf_serializers.ValidationError(
                {"non_field_errors": ["Invalid data. Expected a dictionary, but got null."]})
        if hasattr(data, "dict") and not data:  # an empty form-typed body
            data = {}
        serializer = serializer_class(data=data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def query(self, serializer_class: type[s.QuerySerializer]) -> dict[str, Any]:
        return serializer_class.from_query(self.request.query_params)

    def idempotency_key(self) -> str:
        key = self.request.headers.get(IDEMPOTENCY_HEADER, "")
        if not is_key(key):
            raise BadRequest(f"the {IDEMPOTENCY_HEADER} header is required: {KEY_RULE}, unique per send")
        return key

    def paginated(self, queryset, serializer_class: type) -> Response:
        page = self.paginate_queryset(queryset)
        data = serializer_class(page, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)


# -- definitions ------------------------------------------------------------------------------

class DefinitionListView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_PROCESS]}
    serializer_class = s.DefinitionSerializer
    pagination_class = None

    @extend_schema(
        operation_id="definitions_list", tags=["definitions"],
        summary="Registered process definitions with their goroutines and statuses",
        responses={200: s.DefinitionSerializer(many=True), **_errors()},
    )
    def get(self, request: Request) -> Response:
        return Response(s.DefinitionSerializer(registry.latest(), many=True).data)


class DefinitionDetailView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_PROCESS]}
    serializer_class = s.DefinitionSerializer

    @extend_schema(
        operation_id="definitions_retrieve", parameters=[DEFINITION_NAME], tags=["definitions"],
        summary="One process definition",
        responses={200: s.DefinitionSerializer, **_errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(s.DefinitionSerializer(registry.get(name)).data)


# -- processes --------------------------------------------------------------------------------

class ProcessListView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_PROCESS], "POST": [perms.START_PROCESS]}
    serializer_class = s.ProcessSerializer

    @extend_schema(
        operation_id="processes_list", tags=["processes"],
        summary="Processes, newest first: filter by definition, status, created range; search by id",
        parameters=[s.ProcessFilterSerializer],
        responses={200: s.ProcessSerializer(many=True), **_errors(404)},
    )
    def get(self, request: Request) -> Response:
        f = self.query(s.ProcessFilterSerializer)
        qs = selectors.processes(
            definition=f.get("definition"), statuses=sorted(f.get("status") or []),
            created_after=f.get("created_after"), created_before=f.get("created_before"), search=f.get("search"),
        )
        return self.paginated(qs, s.ProcessSerializer)

    @extend_schema(
        operation_id="processes_start", tags=["processes"],
        summary="Start a process (idempotent when an id is given)",
        description="201 with the new process. The same `id` with the same definition and input again "
                    "returns 200 with the existing process; with another input (or definition) 409.",
        request=s.StartProcessSerializer,
        parameters=[_location(201, "process"), _location(200, "process")],
        examples=[OpenApiExample(
            "counter", request_only=True,
            value={"definition": "counter", "id": "demo-1", "input": {"channel": "demo", "idle_seconds": 3600}},
        )],
        responses={
            201: OpenApiResponse(s.ProcessDetailSerializer, description="started"),
            200: OpenApiResponse(s.ProcessDetailSerializer, description="already started with this id and input"),
            **_errors(*CREATE_ERRORS),
        },
    )
    def post(self, request: Request) -> Response:
        body = self.body(s.StartProcessSerializer)
        started = services.start_process(body["definition"], body.get("input"), body.get("id"))
        data = s.ProcessDetailSerializer(started.process).data
        code = status.HTTP_201_CREATED if started.created else status.HTTP_200_OK
        return Response(data, status=code, headers={"Location": location("slct-api-process", pk=started.process.id)})


class ProcessDetailView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_PROCESS]}
    serializer_class = s.ProcessDetailSerializer

    @extend_schema(
        operation_id="processes_retrieve", parameters=[PROCESS_ID], tags=["processes"],
        summary="A process: status, state, input, output, error, goroutines and what each waits for",
        responses={200: s.ProcessDetailSerializer, **_errors(404)},
    )
    def get(self, request: Request, pk: str) -> Response:
        with consistent_read():  # the state and the goroutines' waits from one snapshot
            return Response(s.ProcessDetailSerializer(services.get_process(pk)).data)


class ProcessHistoryView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_PROCESS]}
    serializer_class = s.EventSerializer

    @extend_schema(
        operation_id="processes_history", parameters=[PROCESS_ID, s.PageQuerySerializer], tags=["processes"],
        summary="The process's step events, in order",
        responses={200: s.EventSerializer(many=True), **_errors(404)},
    )
    def get(self, request: Request, pk: str) -> Response:
        self.query(s.PageQuerySerializer)
        proc = services.get_process(pk)
        return self.paginated(selectors.history_events(proc), s.EventSerializer)


class ProcessCancelView(SlctAPIView):
    required_permissions = {"POST": [perms.CHANGE_PROCESS]}
    serializer_class = s.CancelSerializer

    @extend_schema(
        operation_id="processes_cancel", parameters=[PROCESS_ID], tags=["processes"],
        summary="Cancel a running or failed process: every goroutine ends",
        request=s.CancelSerializer,
        responses={200: s.ProcessDetailSerializer, **_errors(*WRITE_ERRORS)},
    )
    def post(self, request: Request, pk: str) -> Response:
        body = self.body(s.CancelSerializer)
        proc = services.cancel_process(pk, body.get("reason", ""))
        return Response(s.ProcessDetailSerializer(proc).data)


class ProcessRetryView(SlctAPIView):
    required_permissions = {"POST": [perms.CHANGE_PROCESS]}
    serializer_class = s.EmptySerializer

    @extend_schema(
        operation_id="processes_retry", parameters=[PROCESS_ID], tags=["processes"],
        summary="Retry a failed process: its failed goroutines run their step again",
        request=s.EmptySerializer,
        responses={200: s.ProcessDetailSerializer, **_errors(*WRITE_ERRORS)},
    )
    def post(self, request: Request, pk: str) -> Response:
        self.body(s.EmptySerializer)
        proc = services.retry_process(pk)
        return Response(s.ProcessDetailSerializer(proc).data)


# -- channels ---------------------------------------------------------------------------------

class ChannelListView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_CHANNEL], "POST": [perms.ADD_CHANNEL]}
    serializer_class = s.ChannelSerializer

    @extend_schema(
        operation_id="channels_list", tags=["channels"], summary="Channels by name",
        parameters=[s.ChannelFilterSerializer],
        responses={200: s.ChannelSerializer(many=True), **_errors(404)},
    )
    def get(self, request: Request) -> Response:
        f = self.query(s.ChannelFilterSerializer)
        return self.paginated(selectors.channels(closed=f.get("closed"), search=f.get("search")), s.ChannelSerializer)

    @extend_schema(
        operation_id="channels_create", tags=["channels"], summary="Make a channel (buffered when capacity > 0)",
        request=s.CreateChannelSerializer,
        parameters=[_location(201, "channel")],
        examples=[OpenApiExample("buffered", request_only=True, value={"name": "approvals", "capacity": 10})],
        responses={201: s.ChannelDetailSerializer, **_errors(*CREATE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        body = self.body(s.CreateChannelSerializer)
        chan = services.create_channel(body.get("name"), body["capacity"])
        return Response(
            s.ChannelDetailSerializer(chan).data, status=status.HTTP_201_CREATED,
            headers={"Location": location("slct-api-channel", name=chan.name)},
        )


class ChannelDetailView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_CHANNEL]}
    serializer_class = s.ChannelDetailSerializer

    @extend_schema(
        operation_id="channels_retrieve", parameters=[CHANNEL_NAME], tags=["channels"],
        summary="A channel: capacity, closed, buffered values, goroutines blocked receiving and sending",
        responses={200: s.ChannelDetailSerializer, **_errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(s.ChannelDetailSerializer(services.get_channel(name)).data)


class ChannelSendView(SlctAPIView):
    required_permissions = {"POST": [perms.ADD_SEND]}
    serializer_class = s.SendSerializer

    @extend_schema(
        operation_id="channels_send", tags=["channels"],
        summary="Send a value into a channel from outside, at most once per Idempotency-Key",
        description=(
            "`delivered` (200): a blocked receiver took it. `buffered` (200). `waiting` (202): no receiver "
            "yet; the send is held until one comes (read it at the `Location`, GET /api/sends/{key}/). With "
            "`wait: false` and nobody ready: 409 `no_receiver`, nothing is held. A closed channel: 409 "
            "`channel_closed`. A channel whose send policy refuses you (a private channel a process made, "
            "a restricted one): 403 `forbidden`. The same key again returns the send as recorded "
            "(`repeated: true`) with the first answer's status code and sends nothing new; the same key "
            "with another channel or value is 409 `conflict`."
        ),
        parameters=[
            CHANNEL_NAME,
            OpenApiParameter(
                IDEMPOTENCY_HEADER, {"type": "string", "pattern": f"^{KEY_PATTERN}$"}, OpenApiParameter.HEADER,
                required=True, description=f"a unique key per intended send ({KEY_RULE}), e.g. a UUID",
                examples=[OpenApiExample("a key", value="2b7e1516-28ae-4d2a-a6f7-15882c1d0e3c")],
            ),
            _location(202, "send"),
        ],
        request=s.SendSerializer,
        examples=[OpenApiExample("a value", request_only=True, value={"value": {"approved": True}, "wait": True})],
        responses={
            200: OpenApiResponse(s.SendResultSerializer, description="delivered or buffered"),
            202: OpenApiResponse(s.SendResultSerializer, description="waiting for a receiver"),
            **_errors(*WRITE_ERRORS),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        key = self.idempotency_key()
        body = self.body(s.SendSerializer)
        result = services.send(name, body["value"], key, wait=body["wait"], create=False,
                               sender=Sender.rest(request.user))
        first_waited = result.status in (SendStatus.WAITING, SendStatus.RECEIVED, SendStatus.CLOSED)
        data = s.SendResultSerializer(result.send, context={"repeated": result.repeated}).data
        headers = {"Location": location("slct-api-send", key=key)} if first_waited else {}
        return Response(data, status=status.HTTP_202_ACCEPTED if first_waited else status.HTTP_200_OK,
                        headers=headers)


class ChannelCloseView(SlctAPIView):
    required_permissions = {"POST": [perms.CHANGE_CHANNEL]}
    serializer_class = s.EmptySerializer

    @extend_schema(
        operation_id="channels_close", parameters=[CHANNEL_NAME], tags=["channels"],
        summary="Close a channel: blocked receivers and senders fire with `closed`; closing twice is a no-op",
        description="A channel whose send policy refuses you (a private channel a process made, a restricted "
                    "one): 403 `forbidden`.",
        request=s.EmptySerializer,
        responses={200: s.CloseResultSerializer, **_errors(404, 413, 415)},
    )
    def post(self, request: Request, name: str) -> Response:
        self.body(s.EmptySerializer)
        changed = services.close_channel(name, sender=Sender.rest(request.user))
        return Response(s.CloseResultSerializer(services.get_channel(name), context={"changed": changed}).data)


class SendDetailView(SlctAPIView):
    required_permissions = {"GET": [perms.VIEW_SEND]}
    serializer_class = s.SendRecordSerializer

    @extend_schema(
        operation_id="sends_retrieve", parameters=[SEND_KEY], tags=["channels"],
        summary="An external send by its idempotency key: waiting, received, closed, delivered, ...",
        responses={200: s.SendRecordSerializer, **_errors(404)},
    )
    def get(self, request: Request, key: str) -> Response:
        return Response(s.SendRecordSerializer(services.get_send(key)).data)


class ProcessResumeView(SlctAPIView):
    required_permissions = {"POST": [perms.CHANGE_PROCESS]}
    serializer_class = s.EmptySerializer  # for OPTIONS
    lookup_names = {"pk": "process"}

    @extend_schema(
        operation_id="processes_resume", parameters=[PROCESS_ID], tags=["processes"],
        summary="Resume the goroutines the runaway guard paused: they run again, counted afresh "
                "(409 if none is paused)",
        request=None,
        responses={200: s.ProcessDetailSerializer, **_errors(*WRITE_ERRORS)},
    )
    def post(self, request: Request, pk: str) -> Response:
        proc = services.resume_process(pk)
        return Response(s.ProcessDetailSerializer(proc).data)
