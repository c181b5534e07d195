"""intake's composition root: routes, the access table, the consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.intake import handlers
from shared.auth import READERS, Role
from shared.config import Settings
from shared.pii import Vault
from shared.service import SETTINGS, ServiceSpec, consumer_spec

# Route name -> the roles that may call it. Absent: nobody. Object rules live in shared/access.py.
ACCESS: dict[str, frozenset[Role]] = {
    "post_report": frozenset({Role.REPORTER_BACKEND, Role.GRID_WORKER, Role.DISPATCHER}),
    "get_case": READERS,
    "get_history": READERS,
    "list_cases": READERS,
    "cancel_case": frozenset({Role.REPORTER_BACKEND, Role.DISPATCHER}),
    "rate_case": frozenset({Role.REPORTER_BACKEND}),
}


def routes(app: web.Application) -> None:
    app.router.add_post("/v1/reports", handlers.post_report, name="post_report")
    app.router.add_get("/v1/cases", handlers.list_cases, name="list_cases")
    app.router.add_get("/v1/cases/{id}", handlers.get_case, name="get_case")
    app.router.add_get("/v1/cases/{id}/history", handlers.get_history, name="get_history")
    app.router.add_post("/v1/cases/{id}/cancel", handlers.cancel_case, name="cancel_case")
    app.router.add_post("/v1/cases/{id}/rating", handlers.rate_case, name="rate_case")
    app.cleanup_ctx.append(_vault)


async def _vault(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[handlers.VAULT] = Vault(settings.pii_key, settings.blind_index_key)
    yield


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="intake",
        access=ACCESS,
        routes=routes,
        consumers=[(consumer_spec(settings, handlers.CONSUMER, "*"), lambda app: handlers.on_case_event)],
    )
