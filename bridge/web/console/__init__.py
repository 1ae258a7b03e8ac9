"""The web console at `/console`: see cancellations flow, find stuck ones, replay or drop them.

Also what waits in the spool (held in the store while the broker is away): a tile on the
overview, the list at `/console/spool`.

Server-rendered pages (jinja2, autoescaped) behind the API token; a little plain JavaScript
refreshes the overview. Nothing is fetched from elsewhere.
"""

from __future__ import annotations

from aiohttp import web

from bridge.web.console import actions, auth, views
from bridge.web.console.render import CONSOLE, HERE, PATH, Console, environment
from bridge.web.console.session import SESSION_TTL

__all__ = ["CONSOLE", "Console", "add_routes"]


def add_routes(app: web.Application, *, session_ttl: int = SESSION_TTL) -> None:
    """Mount the console on the receiver app (it reads the app's CONFIG and STORE)."""
    app[CONSOLE] = Console(templates=environment(), session_ttl=session_ttl)
    router = app.router
    router.add_get(PATH, views.overview)
    router.add_get(f"{PATH}/", views.slash)
    router.add_get(f"{PATH}/overview.json", views.overview_json)
    router.add_get(f"{PATH}/login", auth.login_page)
    router.add_post(f"{PATH}/login", auth.login)
    router.add_post(f"{PATH}/logout", auth.logout)
    router.add_get(f"{PATH}/events", views.events)
    router.add_get(f"{PATH}/events/{{event_id}}", views.event)
    router.add_get(f"{PATH}/spool", views.spool)
    action = f"{PATH}/events/{{event_id}}/{{target}}/{{action}}"
    router.add_get(action, actions.confirm)
    router.add_post(action, actions.act)
    router.add_static(f"{PATH}/static", HERE / "static", append_version=False)
    router.add_route("*", f"{PATH}/{{tail:.*}}", views.elsewhere)
