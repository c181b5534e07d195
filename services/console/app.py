"""The console's composition root: pages, sign-in, the forwarded API calls, the live stream.

A client of the other services' HTTP APIs and of the event stream; no database of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from services.console import forward, live, sessions, views
from shared.base.config import Settings
from shared.runtime.service import SETTINGS, ServiceSpec
from shared.web.ratelimit import FailedAuthentications


def routes(app: web.Application) -> None:
    app.router.add_get("/", views.root, name="root")
    app.router.add_get("/signin", views.signin_page, name="signin_page")
    app.router.add_post("/signin", views.sign_in, name="sign_in")
    app.router.add_post("/signout", views.sign_out, name="sign_out")
    for path in views.PAGES:
        app.router.add_get(path, views.page, name=f"page{path.replace('/', '_')}")
    app.router.add_get("/api/me", views.me, name="me")
    app.router.add_get("/api/catalog", views.catalog, name="catalog")
    app.router.add_get("/api/board", forward.board, name="board")
    app.router.add_get("/api/events", live.events, name="events")
    forward.add_routes(app)
    app.router.add_static("/static", views.STATIC, name="static", append_version=False)
    app.on_response_prepare.append(views.security_headers)
    app.cleanup_ctx.append(_state)
    app.cleanup_ctx.append(forward.client)


async def _state(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[sessions.SESSIONS] = sessions.Sessions(settings)
    app[views.SIGN_IN_FAILURES] = FailedAuthentications(settings.auth_failure_rate, settings.auth_failure_burst)
    app[views.CATALOG] = msgspec.json.encode(views.catalog_of(settings.rules_path))
    app[live.HUB] = live.Hub()
    yield


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="console",
        pages=routes,  # pages, files and forwarded calls: every one but sign-in and the files needs a session
        loops=[live.live_loop],
        requires=("jwt_secret", "console_session_key"),
        postgres=False,
        authentication=sessions.authentication,
    )
