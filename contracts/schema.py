"""JSON Schema of the wire contract, generated from the pydantic models."""

from __future__ import annotations

from typing import Any

from contracts.events import SCHEMA_VERSION, OrderCancelled

SCHEMA_ID = f"urn:cancel-bridge:schema:order.cancelled:v{SCHEMA_VERSION}"


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of `OrderCancelled` as serialised on the wire."""
    schema = OrderCancelled.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }
