"""What the OpenAPI schema says beyond what drf-spectacular infers by itself, so that it describes
exactly what the server accepts (schemathesis checks it: tests/api/test_schema.py)."""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from slct_workflows.api.serializers import STORABLE_TEXT, StorableJSONField
from slct_workflows.definitions import registry
from slct_workflows.values import NAME_PATTERN


class SlctAutoSchema(AutoSchema):
    def _get_serializer_field_meta(self, field: Any, direction: str) -> dict[str, Any]:
        meta = super()._get_serializer_field_meta(field, direction)
        if isinstance(field, StorableJSONField):
            meta.pop("nullable", None)  # JSONValue takes null already (no wrapper around the $ref)
        return meta

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (direction == "request" and isinstance(field, serializers.CharField) and schema.get("type") == "string"
                and "pattern" not in schema and "enum" not in schema):
            schema["pattern"] = STORABLE_TEXT  # the parser refuses NUL in any string
        return schema

    def _map_serializer(self, serializer: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction == "request" and getattr(serializer, "rejects_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema


class DefinitionNameFieldExtension(OpenApiSerializerFieldExtension):
    """The definitions a process can be started with, as registered when the schema is served."""

    target_class = "slct_workflows.api.serializers.DefinitionNameField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        names = sorted(d.name for d in registry.latest())
        if not names:  # an empty enum is not a schema; nothing can be started anyway
            return {"type": "string", "pattern": f"^{NAME_PATTERN}$"}
        return {"type": "string", "enum": names}
