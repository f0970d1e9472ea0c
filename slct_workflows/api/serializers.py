"""Request and response shapes. Requests are validated here, strictly (no coercion of `"5"` or
`true` to a number, no unknown fields), so that the OpenAPI schema drf-spectacular derives from
these classes describes exactly what the server accepts. The services validate again."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from django.db import models as dj_models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from slct_workflows.read import selectors
from slct_workflows.access import effective_policy
from slct_workflows.definitions import Definition, registry
from slct_workflows.errors import NotFound
from slct_workflows.models import Channel, Event, ExternalSend, ProcessInstance, ProcessStatus, SendPolicy, SendStatus
from slct_workflows.values import MAX_CAPACITY, NAME_CHARS, NAME_MAX, NAME_PATTERN, NAME_RULE, is_name

# JSON values (inputs, channel values, state): any JSON the databases can store. Strings and
# object keys may not contain NUL (PostgreSQL cannot store it) or unpaired surrogates (not
# Unicode; a UTF-8 client cannot even send them). The schema is OpenAPI 3.0, whose JSON Schema
# (draft 4) reads `5.0` as no integer, as the server does; it has no `propertyNames`, so the rule
# for keys is in the description only.
STORABLE_TEXT = r"^[^\x00]*$"
JSON_VALUE_REF = {"$ref": "#/components/schemas/JSONValue"}
JSON_VALUE_SCHEMA = {
    "description": "Any JSON value, null too. Strings and object keys may not contain NUL (`\\u0000`) or "
                   "unpaired surrogates; nesting is limited to 64 levels; numbers must be finite.",
    "pattern": STORABLE_TEXT,  # JSON Schema applies each keyword to its own type only
    "items": JSON_VALUE_REF,
    "additionalProperties": JSON_VALUE_REF,
}
SEARCH_PATTERN = rf"^[{NAME_CHARS}]{{1,{NAME_MAX}}}$"  # a part of a name: only name characters
RFC3339 = re.compile(r"\A\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z")
QUERY_INT = re.compile(r"\A-?[0-9]{1,18}\Z")


class StrictCharField(serializers.CharField):
    """A CharField that takes only strings (no silent `12` -> "12")."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": f"^{NAME_PATTERN}$"})
class NameField(StrictCharField):
    """A process id or channel name (values.NAME_RE: the one rule for steps, services, REST, Slack)."""

    default_error_messages = {"name": f"must be {NAME_RULE}."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)  # " a" is not the name "a"
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not is_name(value):
            self.fail("name")
        return value


class DefinitionNameField(StrictCharField):
    """A registered definition's name; the schema lists them (schema.DefinitionNameFieldExtension)."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            registry.get(value)
        except NotFound as exc:
            known = ", ".join(d.name for d in registry.latest()) or "none"
            raise serializers.ValidationError(f"{exc}; known definitions: {known}") from None
        return value


@extend_schema_field({"type": "string", "pattern": SEARCH_PATTERN})
class SearchField(StrictCharField):
    default_error_messages = {"search": f"may only contain the characters of names ({NAME_CHARS})."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=NAME_MAX, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not re.fullmatch(SEARCH_PATTERN[1:-1], value):
            self.fail("search")
        return value


class StrictIntegerField(serializers.IntegerField):
    """JSON integers only: not `"5"`, `5.0` or `true` (DRF's IntegerField takes all three)."""

    def to_internal_value(self, data: Any) -> int:
        if type(data) is not int:
            self.fail("invalid")
        return data


class QueryIntegerField(serializers.IntegerField):
    """An integer in a query string: digits with an optional minus, nothing else (not `5.0`, ` 5`)."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, str) or not QUERY_INT.match(data):
            self.fail("invalid")
        return int(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON `true` or `false` only (DRF's BooleanField also takes 0, 1, "yes", "on", ...)."""

    def to_internal_value(self, data: Any) -> bool:
        if type(data) is not bool:
            self.fail("invalid")
        return data


class QueryBooleanField(serializers.BooleanField):
    """`true` or `false` in a query string, as OpenAPI serializes booleans."""

    def to_internal_value(self, data: Any) -> bool:
        if data not in ("true", "false"):
            self.fail("invalid")
        return data == "true"


class QueryDateTimeField(serializers.DateTimeField):
    """An RFC 3339 date-time with its offset (what OpenAPI's `date-time` means); Django's parser
    would also take dates without a time zone or with a space for `T`."""

    default_error_messages = {
        "invalid": "Not an RFC 3339 date-time with an offset, e.g. 2026-01-01T10:00:00Z.",
        "range": "Out of the supported range of dates.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str) or not RFC3339.match(data):
            self.fail("invalid")
        text = data.upper().replace("Z", "+00:00")
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Python keeps microseconds
        try:
            value = datetime.fromisoformat(text)
            # Comparing needs UTC: 0001-01-01T00:00:00+01:00 is before the first representable UTC time.
            return value.astimezone(timezone.utc)
        except ValueError:
            self.fail("invalid")
        except OverflowError:
            self.fail("range")


@extend_schema_field(JSON_VALUE_SCHEMA, component_name="JSONValue")
class StorableJSONField(serializers.JSONField):
    """Any JSON value; the parser has already refused what the databases cannot store."""


class StrictSerializer(serializers.Serializer):
    # Refuses fields it does not know (the schema says `additionalProperties: false`). A comment,
    # not a docstring: drf-spectacular would show it as every request body's description.

    rejects_unknown_fields = True  # read by schema.SlctAutoSchema

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        errors: dict[str, Any] = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not unknown or not isinstance(exc.detail, dict):
                raise
            errors.update(exc.detail)
        errors.update({str(key): ["Unknown field."] for key in unknown})
        if errors:
            raise serializers.ValidationError(errors)
        return value


class QuerySerializer(serializers.Serializer):
    """Query parameters: each given at most once (lists repeat the name), none empty. Other
    parameters are ignored."""

    @classmethod
    def from_query(cls, query: Any) -> dict[str, Any]:
        fields = cls().fields
        data: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for key in fields:
            if key not in query:
                continue
            values = query.getlist(key)
            if isinstance(fields[key], (serializers.ListField, serializers.MultipleChoiceField)):
                data[key] = values
            elif len(values) > 1:
                errors[key] = ["Given more than once."]
            else:
                data[key] = values[0]
        serializer = cls(data=data)
        valid = serializer.is_valid()
        errors.update(serializer.errors if not valid else {})
        if errors:
            raise serializers.ValidationError(errors)
        return serializer.validated_data


class PageQuerySerializer(QuerySerializer):
    page = QueryIntegerField(required=False, min_value=1, max_value=2**31 - 1, help_text="a page number (1 = first)")
    page_size = QueryIntegerField(required=False, min_value=1, max_value=500,
                                  help_text="results per page (default 50)")


class EmptySerializer(StrictSerializer):
    """No fields: an empty body, or `{}`."""


class SlctModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping,
                                dj_models.JSONField: StorableJSONField}


# -- errors -----------------------------------------------------------------------------------

class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable: invalid, parse_error, not_authenticated, "
                                           "authentication_failed, permission_denied, forbidden, not_found, "
                                           "not_acceptable, conflict, channel_closed, no_receiver, "
                                           "payload_too_large, unsupported_media_type")
    detail = serializers.CharField(help_text="what went wrong, in words")
    fields = serializers.DictField(
        required=False, child=serializers.ListField(child=serializers.CharField()),
        help_text="validation errors by field (only for `invalid`); `non_field_errors` for the body as a whole",
    )


# -- definitions ------------------------------------------------------------------------------

class DefinitionGoroutineSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the goroutine (the part of a method name before the first `_`)")
    statuses = serializers.ListField(child=serializers.CharField(), help_text="the statuses it can be in")
    methods = serializers.ListField(child=serializers.CharField(), help_text="`{Goroutine}_{Status}` methods")


class DefinitionSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    state_fields = serializers.ListField(child=serializers.CharField())
    goroutines = DefinitionGoroutineSerializer(many=True)

    def to_representation(self, d: Definition) -> dict[str, Any]:
        import inspect

        order = sorted(d.goroutines, key=lambda g: (g != "Main", g))
        return {
            "name": d.name,
            "version": d.version,
            "description": inspect.getdoc(d.cls) or "",
            "state_fields": list(d.state_fields()),
            "goroutines": [
                {"name": g, "statuses": list(d.goroutines[g]), "methods": [f"{g}_{s}" for s in d.goroutines[g]]}
                for g in order
            ],
        }


# -- processes --------------------------------------------------------------------------------

class ProcessSerializer(SlctModelSerializer):
    parent = serializers.CharField(source="parent_id", allow_null=True, read_only=True)

    class Meta:
        model = ProcessInstance
        fields = [
            "id", "definition", "version", "status", "input", "output", "error", "parent",
            "step_count", "created_at", "updated_at", "finished_at",
        ]
        read_only_fields = fields


class PendingCaseSerializer(serializers.Serializer):
    operation = serializers.ChoiceField(choices=["recv", "send", "timer"])
    channel = serializers.CharField(allow_null=True)
    deadline = serializers.DateTimeField(allow_null=True)
    target = serializers.CharField(help_text="the method that runs when this case fires")
    value = StorableJSONField(required=False, help_text="the value offered (send cases only)")


class GoroutineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    next_method = serializers.CharField(allow_null=True, help_text="runnable: the method it runs next")
    waits_for = serializers.CharField(help_text="what it waits for, in words")
    pending_cases = PendingCaseSerializer(many=True, help_text="its blocked select, in case order")
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(allow_null=True)
    retry_at = serializers.DateTimeField(allow_null=True)
    paused_reason = serializers.CharField(
        allow_null=True, help_text="status paused: why the runaway guard paused it (POST .../resume/ to go on)"
    )


class ProcessDetailSerializer(ProcessSerializer):
    state = StorableJSONField(read_only=True)
    goroutines = serializers.SerializerMethodField()

    class Meta(ProcessSerializer.Meta):
        fields = [*ProcessSerializer.Meta.fields, "state", "result_channel", "goroutines"]
        read_only_fields = fields

    @extend_schema_field(GoroutineSerializer(many=True))
    def get_goroutines(self, proc: ProcessInstance) -> list[dict[str, Any]]:
        return [g.as_dict() for g in selectors.goroutines(proc)]


class StartProcessSerializer(StrictSerializer):
    definition = DefinitionNameField(help_text="a name from GET /api/definitions/")
    id = NameField(
        required=False, allow_null=True,
        help_text="optional process id; starting again with the same id and input returns the same process",
    )
    input = StorableJSONField(required=False, allow_null=True, default=None)


class ProcessFilterSerializer(PageQuerySerializer):
    definition = NameField(required=False, help_text="exact definition name")
    status = serializers.MultipleChoiceField(
        choices=ProcessStatus.choices, required=False, help_text="one or more statuses (repeat the parameter)",
    )
    created_after = QueryDateTimeField(required=False, help_text="created at or after (RFC 3339)")
    created_before = QueryDateTimeField(required=False, help_text="created before (RFC 3339)")
    # created_before earlier than created_after is an empty range, not an error: JSON Schema cannot
    # relate two parameters, and the schema must say exactly what is refused.
    search = SearchField(required=False, help_text="part of the process id (any case)")


class CancelSerializer(StrictSerializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=1000, default="")


class EventSerializer(SlctModelSerializer):
    duration_ms = serializers.FloatField(read_only=True)

    class Meta:
        model = Event
        fields = [
            "seq", "kind", "goroutine", "method", "case", "channel", "value", "source", "detail", "error",
            "traceback", "started_at", "finished_at", "duration_ms",
        ]
        read_only_fields = fields


# -- channels ---------------------------------------------------------------------------------

class ChannelPolicyMixin(serializers.Serializer):
    owner = serializers.CharField(read_only=True, help_text="the process whose step made the channel ('' for named ones)")
    policy = serializers.SerializerMethodField(help_text="who may send into it from outside (docs/API.md, Who may send)")

    @extend_schema_field(serializers.ChoiceField(choices=SendPolicy.choices))
    def get_policy(self, chan: Channel) -> str:
        return effective_policy(chan).policy  # a workflow's declaration wins over the row


class ChannelSerializer(ChannelPolicyMixin, SlctModelSerializer):
    class Meta:
        model = Channel
        fields = ["name", "capacity", "closed", "owner", "policy", "created_at", "closed_at"]
        read_only_fields = fields


class BlockedReceiverSerializer(serializers.Serializer):
    process = serializers.CharField(required=False)
    goroutine = serializers.CharField(required=False)
    target = serializers.CharField(required=False)
    external_send = serializers.CharField(required=False, help_text="idempotency key of a waiting external send")


class BlockedSenderSerializer(BlockedReceiverSerializer):
    value = StorableJSONField()


class ChannelDetailSerializer(ChannelPolicyMixin, SlctModelSerializer):
    """A channel with its buffer and the goroutines (and external sends) blocked on it."""

    buffer = serializers.SerializerMethodField()
    receivers = serializers.SerializerMethodField()
    senders = serializers.SerializerMethodField()

    class Meta:
        model = Channel
        fields = ["name", "capacity", "closed", "owner", "policy", "created_at", "closed_at", "buffer", "receivers",
                  "senders"]
        read_only_fields = fields

    def _view(self, chan: Channel) -> selectors.ChannelView:
        cache = self.context.setdefault("_channel_views", {})
        if chan.name not in cache:
            cache[chan.name] = selectors.channel(chan)
        return cache[chan.name]

    @extend_schema_field(
        serializers.ListField(child=StorableJSONField(), help_text="buffered values, oldest first"),
    )
    def get_buffer(self, chan: Channel) -> list[Any]:
        return self._view(chan).buffer

    @extend_schema_field(BlockedReceiverSerializer(many=True))
    def get_receivers(self, chan: Channel) -> list[dict[str, Any]]:
        return self._view(chan).receivers

    @extend_schema_field(BlockedSenderSerializer(many=True))
    def get_senders(self, chan: Channel) -> list[dict[str, Any]]:
        return self._view(chan).senders


class CreateChannelSerializer(StrictSerializer):
    name = NameField(required=False, allow_null=True, help_text="optional; a `chan-…` name is generated when missing")
    capacity = StrictIntegerField(
        min_value=0, max_value=MAX_CAPACITY, default=0, help_text="buffer size; 0 = unbuffered (rendezvous)",
    )


class ChannelFilterSerializer(PageQuerySerializer):
    closed = QueryBooleanField(required=False, help_text="only closed (true) or open (false) channels")
    search = SearchField(required=False, help_text="part of the channel name (any case)")


class SendSerializer(StrictSerializer):
    value = StorableJSONField(allow_null=True, help_text="any JSON value (null included)")
    wait = StrictBooleanField(
        default=True,
        help_text="true: with no receiver ready (and no buffer room) the send waits (202); "
                  "false: it is refused with 409 no_receiver",
    )


class SendRecordSerializer(SlctModelSerializer):
    status = serializers.ChoiceField(
        choices=SendStatus.choices,
        help_text="delivered (a waiting receiver took it), buffered, waiting (held until a receiver comes), "
                  "received (taken after waiting), closed (the channel closed while it waited), "
                  "no_receiver (refused)",
    )

    class Meta:
        model = ExternalSend
        fields = ["key", "channel", "value", "status", "created_at", "delivered_at", "delivered_to"]
        read_only_fields = fields


class SendResultSerializer(SendRecordSerializer):
    repeated = serializers.SerializerMethodField(
        help_text="true when the idempotency key was seen before: nothing new was sent",
    )

    class Meta(SendRecordSerializer.Meta):
        fields = [*SendRecordSerializer.Meta.fields, "repeated"]
        read_only_fields = fields

    def get_repeated(self, record: ExternalSend) -> bool:
        return bool(self.context.get("repeated"))


class CloseResultSerializer(ChannelDetailSerializer):
    changed = serializers.SerializerMethodField(help_text="false when the channel was already closed")

    class Meta(ChannelDetailSerializer.Meta):
        fields = [*ChannelDetailSerializer.Meta.fields, "changed"]
        read_only_fields = fields

    def get_changed(self, chan: Channel) -> bool:
        return bool(self.context.get("changed"))
