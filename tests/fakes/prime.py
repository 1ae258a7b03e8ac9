"""A fake Buy with Prime API: `POST /token` and the GraphQL `order` query and `cancelOrder`.

Held to the published schemas: every GraphQL request is first judged by `check_request` against
`contracts/schemas/prime-<x-api-version>.graphql` (an unknown version is refused, the most
conservative reading: Prime documents no answer for it). A refusal is answered as Prime answers
errors (`errors[{message, extensions.classification{type: "ValidationError", ...}}]`, `data`
null) with HTTP `invalid_status` (undocumented: 200 by default, 400 to check we cope) and kept
in `refused`, so tests assert none happened. Accepted requests are executed against that schema
(graphql-core), so the answer holds only what was selected, under the names (and GraphQL
aliases) the request used, and the resolvers see the schema's coerced variables.

Tokens: client credentials, the client authenticated as `token_client_auth` says (HTTP Basic or
form fields; the other way is refused with OAuth's 401 `invalid_client`), `token_lifetime`
seconds as `expires_in` (`expire_all` ends them: the next call gets 401). GraphQL requires the
bearer token and `x-api-target-id`. Orders are kept per id with their package state and aliases;
`cancelOrder` answers a PENDING cancellation while the package is PENDING,
`CancellationIneligible` otherwise (as the seed shows), and `ResourceNotFoundError` for an
unknown order. `unavailable` makes the next N calls 503.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from graphql import ExecutionResult, GraphQLError, GraphQLResolveInfo, execute, parse

from bridge.demo.fake_platform import FakePlatform
from bridge.graphql_schemas import Accepted, check_request, load_schema
from handlers.prime import API_VERSIONS


@dataclass
class PrimeOrder:
    """One order as the fake knows it."""

    state: str = "PENDING"  # package summary state
    aliases: dict[str, str] = field(default_factory=dict)  # alias type -> id
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None  # package reason once cancelled
    summary: bool = True  # False: Prime gives package details but no summary


@dataclass(frozen=True)
class FakeRefusal:
    """A GraphQL request the published schema (or the version header) refused."""

    version: str
    kind: str
    messages: tuple[str, ...]


def _classification(kind: str, code: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "code": code,
        "details": {"message": message},
        "errorType": "ValidationException",
        "errorCode": 400,
    }


def _error(kind: str, code: str, message: str) -> dict[str, Any]:
    return {
        "errors": [
            {
                "message": message,
                "path": ["cancelOrder"],
                "extensions": {"classification": _classification(kind, code, message)},
            }
        ],
        "data": {"cancelOrder": None},
    }


class _PrimeError(GraphQLError):
    """A business error, raised in a resolver: Prime's `extensions.classification`."""

    def __init__(self, kind: str, code: str, message: str) -> None:
        super().__init__(
            message, extensions={"classification": _classification(kind, code, message)}
        )


@dataclass
class FakePrime(FakePlatform):
    """The fake API; `orders` by order id, every token request and mutation recorded."""

    client_id: str
    client_secret: str
    orders: dict[str, PrimeOrder] = field(default_factory=dict)
    token_requests: int = 0
    cancels: list[dict[str, Any]] = field(default_factory=list)
    unavailable: int = 0
    token_client_auth: Literal["basic", "form"] = "basic"
    token_lifetime: int = 900
    invalid_status: int = 200  # HTTP status of a schema refusal (undocumented)
    classification_as_string: bool = False  # graphql-java style `"classification": "..."`
    refused: list[FakeRefusal] = field(default_factory=list)
    token_refusals: int = 0  # token requests refused with invalid_client
    _tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        FakePlatform.__init__(self)

    def expire_all(self) -> None:
        """Every token issued so far stops working."""
        self._tokens.clear()

    def _client_authenticated(self, request: web.Request, form: Any) -> bool:  # noqa: ANN401
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        by_header = request.headers.get("Authorization") == f"Basic {basic}"
        by_form = (form.get("client_id"), form.get("client_secret")) == (
            self.client_id,
            self.client_secret,
        )
        if self.token_client_auth == "basic":
            return by_header and "client_secret" not in form
        return by_form and "Authorization" not in request.headers

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self._client_authenticated(request, form):
            self.token_refusals += 1
            return web.json_response(
                {"error": "invalid_client"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="token"'},
            )
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        self.token_requests += 1
        token = f"prime-token-{uuid.uuid4().hex[:8]}"
        self._tokens.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime}
        )

    @staticmethod
    def _order_json(order_id: str, order: PrimeOrder) -> dict[str, Any]:
        packages = {
            "summary": {"state": order.state} if order.summary else None,
            "details": [{"id": "pkg-1", "state": order.state, "reason": order.reason}],
        }
        return {
            "id": order_id,
            "aliases": [{"aliasId": v, "aliasType": k} for k, v in order.aliases.items()],
            "packageInformation": packages,  # 2024-11-01
            "deliveryInformation": packages,  # 2024-04-01
            "cancellations": {"details": order.cancellations},
        }

    def _find(self, identifier: dict[str, Any]) -> tuple[str, PrimeOrder] | None:
        if "orderId" in identifier:
            order = self.orders.get(identifier["orderId"])
            return (identifier["orderId"], order) if order else None
        alias = identifier.get("alias") or {}
        for order_id, order in self.orders.items():
            if order.aliases.get(str(alias.get("aliasType"))) == alias.get("aliasId"):
                return order_id, order
        return None

    def _read(
        self,
        info: GraphQLResolveInfo[Any],
        orderIdentifier: dict[str, Any],  # noqa: N803 - the GraphQL argument
    ) -> dict[str, Any]:
        del info
        found = self._find(orderIdentifier)
        if found is None:
            raise _PrimeError("ResourceNotFoundError", "", "order not found")
        return self._order_json(*found)

    def _cancel(
        self,
        info: GraphQLResolveInfo[Any],
        input: dict[str, Any] | None = None,  # noqa: A002 - the GraphQL argument
        orderIdentifier: dict[str, Any] | None = None,  # noqa: N803 - the GraphQL argument
    ) -> dict[str, Any]:
        request = dict(input or {})
        identifier = orderIdentifier or request.get("orderIdentifier") or {}
        found = self._find(identifier)
        if found is None:
            raise _PrimeError("ResourceNotFoundError", "", "order not found")
        order_id, order = found
        if order.state != "PENDING":
            raise _PrimeError(
                "ValidationError",
                "CancellationIneligible",
                "The order cannot be cancelled as fulfillment is in progress.",
            )
        cancellation = {
            "id": uuid.uuid4().hex,
            "state": "PENDING",
            "reason": request.get("reason"),
            "requestedBy": "MERCHANT",
            "createdAt": "2025-04-09T12:00:00Z",
            "aliases": request.get("aliases") or [],
        }
        order.cancellations.append(cancellation)
        order.state, order.reason = "CANCELLED", "CUSTOMER_REQUESTED"
        sent = {"input": request, "order_id": order_id}
        if orderIdentifier is not None:
            sent["order"] = orderIdentifier
        info.context["cancels"].append(sent)
        return {"cancellation": cancellation}

    def _refuse(self, version: str, kind: str, messages: tuple[str, ...]) -> web.Response:
        self.refused.append(FakeRefusal(version, kind, messages))
        errors = [
            {
                "message": message,
                "extensions": {
                    "classification": "ValidationError"
                    if self.classification_as_string
                    else _classification("ValidationError", kind, message)
                },
            }
            for message in messages
        ]
        return web.json_response({"errors": errors, "data": None}, status=self.invalid_status)

    async def _judge(
        self, request: web.Request
    ) -> tuple[str, dict[str, Any], Accepted] | web.Response:
        version = request.headers.get("x-api-version", "")
        try:
            body = await request.json()
        except ValueError:
            return self._refuse(version, "BadRequest", ("the body is not JSON",))
        if version not in API_VERSIONS:
            return self._refuse(
                version, "UnsupportedApiVersion", (f"unsupported x-api-version {version!r}",)
            )
        found = check_request(load_schema(f"prime-{version}"), body)
        if not isinstance(found, Accepted):
            return self._refuse(version, found.kind, found.messages)
        return version, body, found

    async def _graphql(self, request: web.Request) -> web.Response:
        judged = await self._judge(request)  # before anything else
        if isinstance(judged, web.Response):
            return judged
        version, body, accepted = judged
        if self.unavailable > 0:
            self.unavailable -= 1
            return web.Response(status=503, text="Service Unavailable")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._tokens:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if not request.headers.get("x-api-target-id"):
            return web.json_response(_error("ValidationError", "MissingHeader", "headers"))
        cancels: list[dict[str, Any]] = []
        result = execute(
            load_schema(f"prime-{version}"),
            parse(body["query"]),  # valid: check_request parsed and validated it
            root_value={"order": self._read, "cancelOrder": self._cancel},
            context_value={"cancels": cancels},
            variable_values=dict(accepted.variables),  # as the schema coerced them
            operation_name=accepted.operation.name.value if accepted.operation.name else None,
        )
        if not isinstance(result, ExecutionResult):  # the resolvers are synchronous
            raise TypeError(result)
        if cancels:
            await self.record(self.cancels, *cancels)
        return web.json_response(result.formatted)

    def routes(self, app: web.Application) -> None:
        """The token endpoint and the GraphQL API."""
        app.router.add_post("/token", self._token)
        app.router.add_post("/graphql", self._graphql)
