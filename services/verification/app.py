"""verification's composition root: routes, the access table, the consumer, the default-close timer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from functools import partial

from aiohttp import web

from services.verification import handlers
from services.verification.rules import load_kind_of
from shared.auth import Role
from shared.config import Settings
from shared.consumer import Handler
from shared.service import CLOCK, SETTINGS, ServiceSpec, consumer_spec

DEFAULT_REPORTER_CONFIRM_HOURS = 72.0
READ = frozenset({Role.GRID_WORKER, Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR, Role.REPORTER_BACKEND})
RECORD = frozenset({Role.GRID_WORKER, Role.REPORTER_BACKEND, Role.DISPATCHER})

# Route name -> the roles that may call it. Absent: nobody. Object rules are in handlers.
ACCESS: dict[str, frozenset[Role]] = {
    "list_verifications": READ,
    "get_verification": READ,
    "pass_verification": RECORD,
    "fail_verification": RECORD,
}
EVENTS = ("CaseHandled", "CaseClosed", "CaseCancelled", "CaseReopened", "CaseRejected", "CaseMerged")


def reporter_confirm_window(env: Mapping[str, str] = os.environ) -> timedelta:
    """REPORTER_CONFIRM_HOURS: how long a reporter has to answer before the case closes by default."""
    raw = env.get("REPORTER_CONFIRM_HOURS", "")
    try:
        hours = float(raw) if raw.strip() else DEFAULT_REPORTER_CONFIRM_HOURS
    except ValueError:
        raise ValueError(f"REPORTER_CONFIRM_HOURS must be a number of hours, got {raw!r}") from None
    if not 0 < hours < 24 * 365:
        raise ValueError(f"REPORTER_CONFIRM_HOURS must lie between 0 and a year, got {raw!r}")
    return timedelta(hours=hours)


def routes(app: web.Application) -> None:
    app.router.add_get("/v1/verifications", handlers.list_verifications, name="list_verifications")
    app.router.add_get("/v1/verifications/{id}", handlers.get_verification, name="get_verification")
    app.router.add_post("/v1/verifications/{id}/pass", handlers.pass_verification, name="pass_verification")
    app.router.add_post("/v1/verifications/{id}/fail", handlers.fail_verification, name="fail_verification")
    app.cleanup_ctx.append(_rules)


async def _rules(app: web.Application) -> AsyncIterator[None]:
    app[handlers.KIND_OF] = load_kind_of(app[SETTINGS].rules_path)
    app[handlers.RESPOND_WITHIN] = reporter_confirm_window()
    yield


def _on_case_event(app: web.Application) -> Handler:
    return partial(
        handlers.on_case_event,
        kind_of=app[handlers.KIND_OF],
        respond_within=app[handlers.RESPOND_WITHIN],
        clock=app[CLOCK],
    )


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="verification",
        access=ACCESS,
        routes=routes,
        consumers=[(consumer_spec(settings, handlers.CONSUMER, *EVENTS), _on_case_event)],
        loops=[handlers.default_close_loop],
    )
