"""Request and response shapes. Requests are validated here; the services validate again."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import selectors
from ..definitions import Definition, registry
from ..errors import NotFound
from ..models import Channel, Event, ExternalSend, ProcessInstance, ProcessStatus, SendStatus

MAX_NAME = 200
MAX_CAPACITY = 2_147_483_647  # a PositiveIntegerField on every database


class StrictCharField(serializers.CharField):
    """A CharField that takes only strings (no silent `12` -> "12")."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class EmptySerializer(serializers.Serializer):
    """No body."""


# -- errors -----------------------------------------------------------------------------------

class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable: invalid, not_found, conflict, channel_closed, "
                                           "no_receiver, not_authenticated, permission_denied, ...")
    detail = serializers.CharField(help_text="what went wrong, in words")
    fields = serializers.DictField(
        required=False, child=serializers.ListField(child=serializers.JSONField()),
        help_text="validation errors by field (only for `invalid`)",
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

class ProcessSerializer(serializers.ModelSerializer):
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
    value = serializers.JSONField(required=False, help_text="the value offered (send cases only)")


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
    state = serializers.JSONField(read_only=True)
    goroutines = serializers.SerializerMethodField()

    class Meta(ProcessSerializer.Meta):
        fields = [*ProcessSerializer.Meta.fields, "state", "result_channel", "goroutines"]
        read_only_fields = fields

    @extend_schema_field(GoroutineSerializer(many=True))
    def get_goroutines(self, proc: ProcessInstance) -> list[dict[str, Any]]:
        return [g.as_dict() for g in selectors.goroutines(proc)]


class StartProcessSerializer(serializers.Serializer):
    definition = StrictCharField(max_length=MAX_NAME, help_text="a name from GET /api/definitions/")
    id = StrictCharField(
        required=False, allow_null=True, max_length=MAX_NAME,
        help_text="optional process id; starting again with the same id and input returns the same process",
    )
    input = serializers.JSONField(required=False, allow_null=True, default=None)

    def validate_definition(self, value: str) -> str:
        try:
            registry.get(value)
        except NotFound as exc:
            known = ", ".join(d.name for d in registry.latest()) or "none"
            raise serializers.ValidationError(f"{exc}; known definitions: {known}") from None
        return value


class ProcessFilterSerializer(serializers.Serializer):
    definition = serializers.CharField(required=False, max_length=MAX_NAME, help_text="exact definition name")
    status = serializers.MultipleChoiceField(
        choices=ProcessStatus.choices, required=False, help_text="one or more statuses (repeat the parameter)",
    )
    created_after = serializers.DateTimeField(required=False, help_text="created at or after (ISO 8601)")
    created_before = serializers.DateTimeField(required=False, help_text="created before (ISO 8601)")
    search = serializers.CharField(required=False, max_length=MAX_NAME, help_text="part of the process id")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        after, before = attrs.get("created_after"), attrs.get("created_before")
        if after and before and after > before:
            raise serializers.ValidationError({"created_before": ["must not be earlier than created_after"]})
        return attrs


class CancelSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=1000, default="")


class EventSerializer(serializers.ModelSerializer):
    duration_ms = serializers.FloatField(read_only=True)

    class Meta:
        model = Event
        fields = [
            "seq", "kind", "goroutine", "method", "case", "channel", "value", "source", "detail", "error",
            "traceback", "started_at", "finished_at", "duration_ms",
        ]
        read_only_fields = fields


# -- channels ---------------------------------------------------------------------------------

class ChannelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Channel
        fields = ["name", "capacity", "closed", "created_at", "closed_at"]
        read_only_fields = fields


class BlockedReceiverSerializer(serializers.Serializer):
    process = serializers.CharField(required=False)
    goroutine = serializers.CharField(required=False)
    target = serializers.CharField(required=False)
    external_send = serializers.CharField(required=False, help_text="idempotency key of a waiting external send")


class BlockedSenderSerializer(BlockedReceiverSerializer):
    value = serializers.JSONField()


class ChannelDetailSerializer(serializers.ModelSerializer):
    """A channel with its buffer and the goroutines (and external sends) blocked on it."""

    buffer = serializers.SerializerMethodField()
    receivers = serializers.SerializerMethodField()
    senders = serializers.SerializerMethodField()

    class Meta:
        model = Channel
        fields = ["name", "capacity", "closed", "created_at", "closed_at", "buffer", "receivers", "senders"]
        read_only_fields = fields

    def _view(self, chan: Channel) -> selectors.ChannelView:
        cache = self.context.setdefault("_channel_views", {})
        if chan.name not in cache:
            cache[chan.name] = selectors.channel(chan)
        return cache[chan.name]

    @extend_schema_field(
        serializers.ListField(child=serializers.JSONField(), help_text="buffered values, oldest first"),
    )
    def get_buffer(self, chan: Channel) -> list[Any]:
        return self._view(chan).buffer

    @extend_schema_field(BlockedReceiverSerializer(many=True))
    def get_receivers(self, chan: Channel) -> list[dict[str, Any]]:
        return self._view(chan).receivers

    @extend_schema_field(BlockedSenderSerializer(many=True))
    def get_senders(self, chan: Channel) -> list[dict[str, Any]]:
        return self._view(chan).senders


class CreateChannelSerializer(serializers.Serializer):
    name = StrictCharField(
        required=False, allow_null=True, max_length=MAX_NAME, help_text="optional; generated when missing",
    )
    capacity = serializers.IntegerField(
        min_value=0, max_value=MAX_CAPACITY, default=0, help_text="buffer size; 0 = unbuffered (rendezvous)",
    )


class ChannelFilterSerializer(serializers.Serializer):
    closed = serializers.BooleanField(required=False, allow_null=True, default=None)
    search = serializers.CharField(required=False, max_length=MAX_NAME, help_text="part of the channel name")


class SendSerializer(serializers.Serializer):
    value = serializers.JSONField(allow_null=True, help_text="any JSON value (null included)")
    wait = serializers.BooleanField(
        default=True,
        help_text="true: with no receiver ready (and no buffer room) the send waits (202); "
                  "false: it is refused with 409 no_receiver",
    )


class SendRecordSerializer(serializers.ModelSerializer):
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
