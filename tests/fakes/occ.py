"""A fake Oracle Commerce Cloud admin API: login, cancel and order read (PLATFORMS.md section 3).

It answers only what Oracle documents, and where Oracle is silent the most conservative reading:

- Login (`POST /ccadmin/v1/login`, the application key as a bearer, form
  `grant_type=client_credentials`) answers `{"access_token", "token_type": "bearer"}` and no
  `expires_in`, as documented
  (https://docs.oracle.com/cd/E78936_01/Cloud.16-5/ExtendingCC/html/s0203usetheapplicationkeyforauthentic01.html);
  tokens last 300 s (https://docs.oracle.com/cd/E90963_01/Cloud.10-17/ExtendingCC/html/s0203refreshanaccesstoken01.html).
  `login_expires_in` makes it send `expires_in` too, for tenants that do. `expire_all` ends the
  tokens early: the next call gets 401.
- Cancel (`POST /ccadmin/v1/orders/cancel`, `x-ccsite` and both body properties required,
  https://docs.oracle.com/en/cloud/saas/cx-commerce/cxocc/op-ccadmin-v1-orders-cancel-post.html)
  answers 200 `{"result": "success"}`; a `REMOVED` or shipped order `200101`, an unknown one
  `210105`, a reason outside `reasons` `200218`, a missing `x-ccsite` or property `200126` (the
  documented codes of that page).
- Errors are the errorModel, every field a string
  (https://docs.oracle.com/en/cloud/saas/cx-commerce/ccdev/error-messages.html). The HTTP status
  of each code is undocumented: all answer 400, the status of Oracle's only example. Auth
  failures (401) carry no `errorCode`: their codes are undocumented, so the bridge must not need
  one.
- The reasons list (`GET /ccadmin/v1/reasons?type=cancelReasons`) is a JSON list of
  `{id, description, readableDescription, active}` as the page's example shows (its schema names
  an object; the bridge reads both), `200213` for an unknown type
  (https://docs.oracle.com/en/cloud/saas/cx-commerce/cxocc/op-ccadmin-v1-reasons-get.html).
  `inactive_reasons` are listed inactive, and a cancel with one answers `200219`.
- The order read (`GET /ccadmin/v1/orders/{id}`) uses `x-ccsite` when sent; without it the admin
  API applies to the instance as a whole
  (https://docs.oracle.com/en/cloud/saas/cx-commerce/ccdev/use-apis-instances-running-multiple-sites.html).
- The order list (`GET /ccadmin/v1/orders`, https://docs.oracle.com/en/cloud/saas/cx-commerce/
  cxocc/op-ccadmin-v1-orders-get.html; paging and `fields` as
  https://docs.oracle.com/en/cloud/saas/cx-commerce/cxocc/RESTQueryParams.html describes) takes
  `limit` (default 250), `offset`, `totalResults`, `fields` and `q` with `queryFormat=SCIM` (RQL,
  the default format, is not modelled: refused), and answers `{items, limit, offset,
  totalResults}`, the orders of every site in the order they were planted. `q` is a small SCIM
  subset: `eq gt ge lt le`, `and` (binding first), `or`, parentheses, over `state`, `siteId`,
  `submittedDate` and `lastModifiedDate`; times compare as times. Whether OCC lets
  `lastModifiedDate` be queried is unconfirmed: `last_modified_queryable = False` refuses it as
  an unknown attribute, like any other attribute, with a 400 errorModel and no `errorCode`
  (the code for a bad query is not published, so the bridge must not need one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from bridge.demo.fake_platform import FakePlatform
from contracts.timestamps import utc_z

CANCEL_REASONS = frozenset(
    {"changeOfMind", "cannotProcessOrder", "paymentNotReceived", "noLongerNeeded"}
)
NOT_CANCELLABLE_STATES = frozenset({"REMOVED", "SHIPPED"})
# https://docs.oracle.com/en/cloud/saas/cx-commerce/cxocc/op-ccadmin-v1-reasons-get.html
REASON_TYPES = frozenset(
    {
        "appeasementReason",
        "cancelReasons",
        "priceOverrideReasons",
        "returnReasons",
        "returnItemDisposition",
    }
)


def _error(code: str | None, message: str, status: int = 400) -> web.Response:
    body = {"message": message, "status": str(status)}
    if code is not None:
        body["errorCode"] = code
    return web.json_response(body, status=status)


# --- the order list's SCIM subset ------------------------------------------------------------

LIST_ATTRIBUTES = ("state", "siteId", "submittedDate", "lastModifiedDate")
DATE_ATTRIBUTES = frozenset({"submittedDate", "lastModifiedDate"})
PAGE_SIZE = 250  # "limited by default to 250" (RESTQueryParams)
_TOKEN = re.compile(
    r'\s*(?:(?P<open>\()|(?P<close>\))|"(?P<text>(?:[^"\\]|\\.)*)"'
    r"|(?P<word>[A-Za-z]\w*))"
)
_OPERATORS: dict[str, Callable[[object, object], bool]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,  # type: ignore[operator]  # dates with dates, text with text
    "ge": lambda a, b: a >= b,  # type: ignore[operator]
    "lt": lambda a, b: a < b,  # type: ignore[operator]
    "le": lambda a, b: a <= b,  # type: ignore[operator]
}

Facts = Mapping[str, str | datetime | None]
Match = Callable[[Facts], bool]


class QueryError(ValueError):
    """A `q` the fake refuses, as OCC refuses a bad query (its message says why)."""


def _scim_tokens(text: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(text.rstrip()):
        found = _TOKEN.match(text, position)
        if found is None:
            raise QueryError(f"Invalid query at position {position}.")
        kind = found.lastgroup or ""
        value = found.group(kind) or ""
        if kind == "text":
            value = re.sub(r"\\(.)", r"\1", value)
        yield kind, value
        position = found.end()


@dataclass
class _ScimParser:
    """`or` of `and`s of comparisons or parenthesised filters (RFC 7644 3.4.2.2, a subset)."""

    tokens: list[tuple[str, str]]
    queryable: frozenset[str]
    at: int = 0

    def parse(self) -> Match:
        match = self._any()
        if self.at != len(self.tokens):
            raise QueryError(f"Invalid query: unexpected {self.tokens[self.at][1]!r}.")
        return match

    def _peek_word(self) -> str:
        kind, value = self.tokens[self.at] if self.at < len(self.tokens) else ("", "")
        return value.lower() if kind == "word" else ""

    def _take(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise QueryError("Invalid query: it ends too early.")
        self.at += 1
        return self.tokens[self.at - 1]

    def _any(self) -> Match:
        terms = [self._all()]
        while self._peek_word() == "or":
            self.at += 1
            terms.append(self._all())
        return lambda facts: any(term(facts) for term in terms)

    def _all(self) -> Match:
        factors = [self._one()]
        while self._peek_word() == "and":
            self.at += 1
            factors.append(self._one())
        return lambda facts: all(factor(facts) for factor in factors)

    def _one(self) -> Match:
        kind, value = self._take()
        if kind == "open":
            inner = self._any()
            if self._take()[0] != "close":
                raise QueryError("Invalid query: a parenthesis is not closed.")
            return inner
        if kind != "word":
            raise QueryError(f"Invalid query: {value!r} where an attribute was expected.")
        if value not in self.queryable:
            raise QueryError(f"Invalid query: unknown attribute {value}.")
        operator_kind, operator = self._take()
        if operator_kind != "word" or operator.lower() not in _OPERATORS:
            raise QueryError(f"Invalid query: unsupported operator {operator!r}.")
        literal_kind, literal = self._take()
        if literal_kind != "text":
            raise QueryError(f"Invalid query: {literal!r} is not a quoted value.")
        return _compare(value, operator.lower(), literal)


def _date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"Invalid query: {text!r} is not a date.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _compare(attribute: str, operator: str, literal: str) -> Match:
    wanted: str | datetime = _date(literal) if attribute in DATE_ATTRIBUTES else literal
    test = _OPERATORS[operator]

    def match(facts: Facts) -> bool:
        value = facts.get(attribute)
        return value is not None and test(value, wanted)

    return match


def parse_scim(text: str, queryable: frozenset[str]) -> Match:
    """The filter `text` as a test of an order's facts; `QueryError` when it is refused."""
    return _ScimParser(list(_scim_tokens(text)), queryable).parse()


def _projected(body: dict[str, object], fields: str) -> dict[str, object]:
    """`fields=items.id,totalResults`: only the properties named (top level and per item)."""
    names = {name.strip() for name in fields.split(",") if name.strip()}
    per_item = {name.removeprefix("items.") for name in names if name.startswith("items.")}
    shown: dict[str, object] = {key: value for key, value in body.items() if key in names}
    if per_item or "items" in names:
        items = body["items"]
        assert isinstance(items, list)
        shown["items"] = [
            item if not per_item else {k: v for k, v in item.items() if k in per_item}
            for item in items
        ]
    return shown


@dataclass
class OrderFacts:
    """What the order list shows of an order besides its state."""

    submitted: datetime | None = None
    modified: datetime | None = None
    reason: str | None = None


@dataclass
class FakeOCC(FakePlatform):
    """Orders by (site, id) with their state; every cancel and login recorded."""

    app_key: str
    orders: dict[tuple[str, str], str] = field(default_factory=dict)
    cancels: list[tuple[str, str, str]] = field(default_factory=list)
    logins: int = 0
    login_expires_in: int | None = None  # undocumented: omitted unless set
    inactive_reasons: set[str] = field(default_factory=set)  # listed, `active: false`
    facts: dict[tuple[str, str], OrderFacts] = field(default_factory=dict)
    last_modified_queryable: bool = True  # unconfirmed: False refuses it in `q`
    lists: list[dict[str, str]] = field(default_factory=list)  # each list call's query
    _tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        FakePlatform.__init__(self)

    def plant(  # noqa: PLR0913 - an order's facts
        self,
        site: str,
        order_id: str,
        state: str,
        submitted: datetime,
        *,
        modified: datetime | None = None,
        reason: str | None = None,
    ) -> None:
        """An order as the list shows it (`modified` defaults to `submitted`)."""
        self.orders[(site, order_id)] = state
        self.facts[(site, order_id)] = OrderFacts(submitted, modified or submitted, reason)

    def expire_all(self) -> None:
        """Every token issued so far stops working."""
        self._tokens.clear()

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("Authorization") != f"Bearer {self.app_key}":
            return _error(None, "invalid application key", 401)
        if form.get("grant_type") != "client_credentials":
            return _error(None, "unsupported grant type")
        self.logins += 1
        token = f"occ-token-{self.logins}"
        self._tokens.add(token)
        answer: dict[str, object] = {"access_token": token, "token_type": "bearer"}
        if self.login_expires_in is not None:
            answer["expires_in"] = self.login_expires_in
        return web.json_response(answer)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._tokens:
            return _error(None, "token expired or invalid", 401)
        return None

    async def _cancel(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(request)) is not None:
            return refused
        site, document = request.headers.get("x-ccsite", ""), await request.json()
        if not site or not isinstance(document, dict):
            return _error("200126", "Invalid Input.")
        order_id, reason = str(document.get("orderId", "")), str(document.get("cancelReason", ""))
        if (refused := self._uncancellable(site, order_id, reason)) is not None:
            return refused
        self.orders[(site, order_id)] = "REMOVED"
        facts = self.facts.setdefault((site, order_id), OrderFacts())
        facts.modified, facts.reason = datetime.now(UTC), reason
        await self.record(self.cancels, (site, order_id, reason))
        return web.json_response({"result": "success"})

    def _uncancellable(self, site: str, order_id: str, reason: str) -> web.Response | None:
        if not order_id or not reason:
            return _error("200126", "Invalid Input.")
        state = self.orders.get((site, order_id))
        if state is None:
            return _error("210105", f"Order {order_id} not found.")
        if reason not in CANCEL_REASONS:
            return _error("200218", f"Invalid cancel reason {reason}.")
        if reason in self.inactive_reasons:
            return _error("200219", f"Inactive cancel reason {reason}.")
        if state in NOT_CANCELLABLE_STATES:
            return _error("200101", "Order is not in a state that can be cancelled.")
        return None

    async def _read(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(request)) is not None:
            return refused
        order_id, site = request.match_info["order_id"], request.headers.get("x-ccsite")
        found = [
            (at, state)
            for (at, oid), state in self.orders.items()
            if oid == order_id and site in (None, "", at)
        ]
        if not found:
            return _error("210105", f"Order {order_id} not found.")
        at, state = found[0]
        return web.json_response({"id": order_id, "state": state, "siteId": at})

    async def _reasons(self, request: web.Request) -> web.Response:
        """`GET /ccadmin/v1/reasons?type=cancelReasons`: a list, as the page's example shows."""
        if (refused := self._unauthorized(request)) is not None:
            return refused
        if request.query.get("type") not in REASON_TYPES:
            return _error("200213", "Invalid reason type passed.")
        if request.query["type"] != "cancelReasons":
            return web.json_response([])
        return web.json_response(
            [
                {
                    "id": reason,
                    "description": reason,
                    "readableDescription": reason,
                    "active": reason not in self.inactive_reasons,
                }
                for reason in sorted(CANCEL_REASONS)
            ]
        )

    def _rows(self) -> list[tuple[Facts, dict[str, object]]]:
        """Each order's facts (for `q`) and its list item, in the order planted."""
        rows: list[tuple[Facts, dict[str, object]]] = []
        for (site, order_id), state in self.orders.items():
            facts = self.facts.get((site, order_id), OrderFacts())
            known: dict[str, str | datetime | None] = {
                "state": state,
                "siteId": site,
                "submittedDate": facts.submitted,
                "lastModifiedDate": facts.modified,
            }
            item: dict[str, object] = {
                "id": order_id,
                "siteId": site,
                "creationSiteId": site,
                "state": state,
                "priceInfo": {"amount": 10.0, "currencyCode": "USD"},
            }
            for name in DATE_ATTRIBUTES:
                if isinstance(moment := known[name], datetime):
                    item[name] = utc_z(moment, "milliseconds")
            if facts.reason is not None:
                item["cancelReason"] = facts.reason
            rows.append((known, item))
        return rows

    async def _list(self, request: web.Request) -> web.Response:
        """`GET /ccadmin/v1/orders`: a page of the orders `q` selects."""
        if (refused := self._unauthorized(request)) is not None:
            return refused
        query = request.query
        await self.record(self.lists, dict(query))
        try:
            limit, offset = int(query.get("limit", PAGE_SIZE)), int(query.get("offset", 0))
        except ValueError:
            return _error(None, "Invalid limit or offset.")
        if limit < 1 or offset < 0:
            return _error(None, "Invalid limit or offset.")
        match: Match = lambda _facts: True  # noqa: E731 - no filter
        if "q" in query:
            if query.get("queryFormat") != "SCIM":
                return _error(None, "RQL queries are not modelled by this fake.")
            queryable = frozenset(LIST_ATTRIBUTES) - (
                set() if self.last_modified_queryable else {"lastModifiedDate"}
            )
            try:
                match = parse_scim(query["q"], queryable)
            except QueryError as exc:
                return _error(None, str(exc))
        rows = [item for facts, item in self._rows() if match(facts)]
        body: dict[str, object] = {
            "items": rows[offset : offset + limit],
            "limit": limit,
            "offset": offset,
        }
        if query.get("totalResults", "true").lower() != "false":
            body["totalResults"] = len(rows)
        if "fields" in query:
            body = _projected(body, query["fields"])
        return web.json_response(body)

    def routes(self, app: web.Application) -> None:
        """Login, cancel, order list and read, and the reasons list of the admin API."""
        app.router.add_post("/ccadmin/v1/login", self._login)
        app.router.add_get("/ccadmin/v1/orders", self._list)
        app.router.add_post("/ccadmin/v1/orders/cancel", self._cancel)
        app.router.add_get("/ccadmin/v1/orders/{order_id}", self._read)
        app.router.add_get("/ccadmin/v1/reasons", self._reasons)
