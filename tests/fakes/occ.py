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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from bridge.demo.fake_platform import FakePlatform

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


@dataclass
class FakeOCC(FakePlatform):
    """Orders by (site, id) with their state; every cancel and login recorded."""

    app_key: str
    orders: dict[tuple[str, str], str] = field(default_factory=dict)
    cancels: list[tuple[str, str, str]] = field(default_factory=list)
    logins: int = 0
    login_expires_in: int | None = None  # undocumented: omitted unless set
    inactive_reasons: set[str] = field(default_factory=set)  # listed, `active: false`
    _tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        FakePlatform.__init__(self)

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

    def routes(self, app: web.Application) -> None:
        """Login, cancel, order read and the reasons list of the admin API."""
        app.router.add_post("/ccadmin/v1/login", self._login)
        app.router.add_post("/ccadmin/v1/orders/cancel", self._cancel)
        app.router.add_get("/ccadmin/v1/orders/{order_id}", self._read)
        app.router.add_get("/ccadmin/v1/reasons", self._reasons)
