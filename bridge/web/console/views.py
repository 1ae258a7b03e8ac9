"""The console's pages: overview (and its JSON), the events list, one event, the spool."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from aiohttp import web

from bridge.store.engine import StoreUnavailable
from bridge.store.lifecycle import DeliveryState
from bridge.web.console import queries
from bridge.web.console.auth import STORE_RETRY_AFTER, Viewer, guarded
from bridge.web.console.chart import bars
from bridge.web.console.filters import STATES, SearchError, parse_search, query_string
from bridge.web.console.render import PATH, error_page, html, json_page, redirect
from bridge.web.console.timeline import ATTEMPTS, timeline
from bridge.web.keys import CONFIG, STORE

log = structlog.get_logger(__name__)

MAX_ID = 64  # event ids are 36 characters
REFRESH_SECONDS = 10


def store_down(request: web.Request, viewer: Viewer, exc: StoreUnavailable) -> web.Response:
    """503: the store did not answer, so the page cannot say anything true."""
    log.warning("console.store_unavailable", path=request.path, detail=str(exc))
    return error_page(
        request,
        503,
        "Store unavailable",
        f"The state store did not answer ({exc}). Nothing was changed; try again shortly.",
        {"Retry-After": STORE_RETRY_AFTER},
        viewer=viewer,
    )


def not_found(request: web.Request, viewer: Viewer, what: str) -> web.Response:
    """404 with a way back."""
    return error_page(request, 404, "Not found", what, viewer=viewer)


def targets_of(request: web.Request) -> tuple[str, ...]:
    """The targets this bridge delivers to (the routed ones)."""
    return request.app[CONFIG].settings.targets_in_use()


def _shape(found: queries.Overview) -> str:
    # What the page's layout depends on: the script reloads the page when it changes.
    return ",".join(sorted(found.per_minute)) + "|" + ",".join(sorted(found.states))


async def _overview(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    try:
        found = await queries.overview(request.app[STORE], datetime.now(UTC), targets_of(request))
    except StoreUnavailable as exc:
        return store_down(request, viewer, exc)
    data = found.as_json()
    return html(
        request,
        "overview.html",
        viewer=viewer,
        nav="overview",
        data=data,
        charts=bars(found.per_minute, found.start),
        states=STATES,
        outcomes=tuple(ATTEMPTS),
        shape=_shape(found),
        refresh=REFRESH_SECONDS,
    )


async def _overview_json(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    del viewer
    try:
        found = await queries.overview(request.app[STORE], datetime.now(UTC), targets_of(request))
    except StoreUnavailable as exc:
        log.warning("console.store_unavailable", path=request.path, detail=str(exc))
        return json_page(
            503,
            {"error": "store_unavailable", "detail": str(exc)},
            {"Retry-After": STORE_RETRY_AFTER},
        )
    data = found.as_json()
    data["shape"] = _shape(found)
    return json_page(200, data)


async def _events(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    try:
        wanted = parse_search(request.query)
    except SearchError as exc:
        return error_page(request, 400, "Bad search", str(exc), viewer=viewer)
    try:
        page = await queries.search(request.app[STORE], wanted)
    except StoreUnavailable as exc:
        return store_down(request, viewer, exc)
    return html(
        request,
        "events.html",
        viewer=viewer,
        nav="parked" if wanted.state == DeliveryState.PARKED and not wanted.text else "events",
        search=wanted,
        page=page,
        states=STATES,
        targets=targets_of(request),
        newer=query_string(wanted, wanted.page - 1) if wanted.page > 1 else None,
        older=query_string(wanted, wanted.page + 1) if page.more else None,
    )


def plausible_id(event_id: str) -> bool:
    """Could be an event id: short, printable (a NUL would be a driver error on PostgreSQL)."""
    return 0 < len(event_id) <= MAX_ID and event_id.isprintable()


async def recorded_event(
    request: web.Request, viewer: Viewer, event_id: str
) -> queries.Json | web.Response:
    """The event as the store records it; or the page that says why not (404, 503)."""
    try:
        event = await queries.event_detail(request.app[STORE], event_id)
    except StoreUnavailable as exc:
        return store_down(request, viewer, exc)
    if event is None:
        return not_found(request, viewer, f"No event {event_id} is recorded.")
    return event


async def _event(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    event_id = request.match_info["event_id"]
    if not plausible_id(event_id):
        return not_found(request, viewer, "No such event.")
    event = await recorded_event(request, viewer, event_id)
    if isinstance(event, web.Response):
        return event
    return html(
        request,
        "event.html",
        viewer=viewer,
        nav="events",
        event=event,
        steps=timeline(event),
        actionable=targets_of(request),
    )


async def _spool(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    try:
        found = await queries.spool(request.app[STORE], datetime.now(UTC))
    except StoreUnavailable as exc:
        return store_down(request, viewer, exc)
    return html(request, "spool.html", viewer=viewer, nav="spool", spool=found)


async def _elsewhere(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return not_found(request, viewer, f"The console has no page at {request.path}.")


async def slash(request: web.Request) -> web.StreamResponse:
    """`/console/`: the overview lives at `/console`."""
    return redirect(request, PATH)


overview = guarded(_overview)
overview_json = guarded(_overview_json)
events = guarded(_events)
event = guarded(_event)
spool = guarded(_spool)
elsewhere = guarded(_elsewhere)
