"""The platforms' published GraphQL schemas, and one way to judge a request against them.

The SDL files live in `contracts/schemas/` (each says where it was transcribed from: URL, API
version, date read). The fakes judge every request with `check_request`, so a field, argument,
variable type or enum value the platform does not publish is refused as the real endpoint
refuses it; `check-config --online` judges our documents against a live schema the same way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLInt,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    ValueNode,
    build_schema,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values

SCHEMA_PACKAGE = "contracts.schemas"


@functools.cache
def load_schema(name: str) -> GraphQLSchema:
    """The schema in `contracts/schemas/<name>.graphql` (e.g. `cj-tracking`), built once."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(f"{name}.graphql").read_text("utf-8")
    return with_scalar_rules(build_schema(text), SCALAR_RULES.get(name, {}))


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


@functools.lru_cache(maxsize=256)
def _valid_document(schema: GraphQLSchema, query: str) -> DocumentNode | Refusal:
    """`query` parsed and validated against `schema`, or why not.

    Cached: validation costs about 2 ms a document, and a client sends the same few documents
    (the fakes judge every request of a benchmark); variables are coerced per request.
    """
    try:
        document: DocumentNode = parse(query)
    except GraphQLError as exc:
        return Refusal("InvalidSyntax", (exc.message,))
    if errors := validate(schema, document):
        return Refusal("ValidationError", _messages(errors))
    return document


def check_request(schema: GraphQLSchema, request: object) -> Accepted | Refusal:
    """Judge one decoded GraphQL-over-HTTP request body against `schema`."""
    body: dict[str, Any] = request if isinstance(request, dict) else {}
    query, variables = body.get("query"), body.get("variables")
    variables = {} if variables is None else variables  # absent or null: none; [] or "": refused
    if not isinstance(query, str) or not isinstance(variables, dict):
        return Refusal(
            "BadRequest", ("the body must be a JSON object: a query string, variables an object",)
        )
    document = _valid_document(schema, query)
    if isinstance(document, Refusal):
        return document
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


# --- what custom scalars accept ---------------------------------------------------------------
# An SDL names a custom scalar but cannot say what it accepts: built from SDL, it takes any value.
# A rule holds the platform's published description of it; `load_schema` applies the rules of
# its schema (keyed by schema name, so two platforms' same-named scalars never mix).


@dataclass(frozen=True, slots=True)
class ScalarRule:
    """What one custom scalar accepts: from a JSON variable, and from a literal in the document."""

    value: Callable[[Any], Any]
    literal: Callable[[ValueNode], Any]


def _non_negative(number: int) -> int:
    if number < 0:
        raise GraphQLError(f"NonNegativeInt cannot represent a negative value: {number}")
    return number


def _non_negative_int_value(value: Any) -> int:  # noqa: ANN401 - any JSON value may arrive
    return _non_negative(GraphQLInt.coerce_input_value(value))


def _non_negative_int_literal(node: ValueNode) -> int:
    literal = GraphQLInt.coerce_input_literal
    assert literal is not None  # noqa: S101 - graphql-core's Int always has one
    return _non_negative(literal(node))  # type: ignore[arg-type]  # a const literal here


# A date-time with a zone (`Z` or an offset), or a bare date.
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?")


def _instant_value(value: Any) -> str:  # noqa: ANN401 - any JSON value may arrive
    """An ISO 8601 date-time with `Z` or an offset, or a date; kept as sent (a string)."""
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise GraphQLError(f"Instant cannot represent {value!r}: not an ISO 8601 date-time")
    try:
        (datetime if "T" in value else date).fromisoformat(value)  # the regex required a zone
    except ValueError as exc:
        raise GraphQLError(f"Instant cannot represent {value!r}: {exc}") from exc
    return value


def _instant_literal(node: ValueNode) -> str:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("Instant must be a string")
    return _instant_value(node.value)


NON_NEGATIVE_INT = ScalarRule(_non_negative_int_value, _non_negative_int_literal)
INSTANT = ScalarRule(_instant_value, _instant_literal)

# Schema name -> its custom scalars' rules (CJ: contracts/schemas/cj-*.graphql headers).
SCALAR_RULES: dict[str, dict[str, ScalarRule]] = {
    "cj-tracking": {"Instant": INSTANT, "NonNegativeInt": NON_NEGATIVE_INT},
    "cj-commissions": {"Instant": INSTANT},
}


def with_scalar_rules(schema: GraphQLSchema, rules: Mapping[str, ScalarRule]) -> GraphQLSchema:
    """`schema` with its custom scalars accepting what `rules` say (in place; returned)."""
    for name, rule in rules.items():
        scalar = schema.type_map.get(name)
        if not isinstance(scalar, GraphQLScalarType):
            raise TypeError(f"the schema has no scalar {name!r} to give a rule")
        scalar.coerce_input_value = rule.value
        scalar.coerce_input_literal = rule.literal
    return schema


# --- reading an accepted request ----------------------------------------------------------------

INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


def is_introspection(accepted: Accepted) -> bool:
    """Whether every root field `accepted` selects is introspection (`__schema`, `__type`)."""
    selections = accepted.operation.selection_set.selections
    return accepted.operation.operation is OperationType.QUERY and all(
        isinstance(node, FieldNode) and node.name.value in INTROSPECTION_FIELDS
        for node in selections
    )


def root_arguments(schema: GraphQLSchema, accepted: Accepted) -> list[tuple[str, dict[str, Any]]]:
    """Each root field `accepted` selects, with its arguments as the schema coerced them.

    Literals and variables alike: `cancelOrders(cancelledOrders: {...})` written inline gives
    the same list as `cancelOrders(cancelledOrders: $orders)`. Introspection fields and root
    fragments are left out.
    """
    root = schema.get_root_type(accepted.operation.operation)
    if root is None:
        return []
    variables = VariableValues({}, dict(accepted.variables))
    found: list[tuple[str, dict[str, Any]]] = []
    for node in accepted.operation.selection_set.selections:
        if isinstance(node, FieldNode) and node.name.value in root.fields:
            definition = root.fields[node.name.value]
            found.append((node.name.value, get_argument_values(definition, node, variables)))
    return found


def refusal_body(refusal: Refusal) -> dict[str, object]:
    """A refused request's answer as graphql-java writes it: errors with a classification."""
    errors = [
        {"message": message, "extensions": {"classification": refusal.kind}}
        for message in refusal.messages
    ]
    if refusal.kind == "BadRequest":
        return {"errors": errors}
    return {"errors": errors, "data": None}
