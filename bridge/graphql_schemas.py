"""The platforms' published GraphQL schemas, and one way to judge a request against them.

The SDL files live in `contracts/schemas/` (each says where it was transcribed from: URL, API
version, date read). The fakes judge every request with `check_request`, so a field, argument,
variable type or enum value the platform does not publish is refused as the real endpoint
refuses it; `check-config --online` judges our documents against a live schema the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

SCHEMA_PACKAGE = "contracts.schemas"


@functools.cache
def load_schema(name: str) -> GraphQLSchema:
    """The schema in `contracts/schemas/<name>.graphql` (e.g. `cj-tracking`), built once."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(f"{name}.graphql").read_text("utf-8")
    return build_schema(text)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not a valid GraphQL request for the schema.

    `kind` is graphql-java's classification word: `InvalidSyntax` (the document does not
    parse), `ValidationError` (unknown field or argument, wrong variable type, bad enum value),
    or `BadRequest` (the HTTP body is not `{"query": ..., "variables": {...}}`).
    """

    kind: str
    messages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid request: its operation and its variables as the schema coerced them."""

    operation: OperationDefinitionNode
    variables: Mapping[str, Any] = field(default_factory=dict)

    @property
    def field_name(self) -> str:
        """The first root field the operation selects (`cancelOrders`, `order`, ...)."""
        first = self.operation.selection_set.selections[0]
        return first.name.value if isinstance(first, FieldNode) else ""


def _messages(errors: list[GraphQLError]) -> tuple[str, ...]:
    return tuple(error.message for error in errors)


def check_request(schema: GraphQLSchema, request: object) -> Accepted | Refusal:
    """Judge one decoded GraphQL-over-HTTP request body against `schema`."""
    body: dict[str, Any] = request if isinstance(request, dict) else {}
    query, variables = body.get("query"), body.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        return Refusal(
            "BadRequest", ("the body must be a JSON object: a query string, variables an object",)
        )
    try:
        document: DocumentNode = parse(query)
    except GraphQLError as exc:
        return Refusal("InvalidSyntax", (exc.message,))
    if errors := validate(schema, document):
        return Refusal("ValidationError", _messages(errors))
    operation = get_operation_ast(document, body.get("operationName"))
    if operation is None:
        return Refusal("ValidationError", ("no single operation to run",))
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
    if isinstance(coerced, list):
        return Refusal("ValidationError", _messages(coerced))
    return Accepted(operation, coerced.coerced)


def check_document(schema: GraphQLSchema, query: str, variables: object = None) -> Refusal | None:
    """None when `query` (with `variables`, if given) is valid for `schema`, else why not."""
    request: dict[str, object] = {"query": query}
    if variables is not None:
        request["variables"] = variables
    found = check_request(schema, request)
    return found if isinstance(found, Refusal) else None
