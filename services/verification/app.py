"""verification's composition root: routes, the access table, the consumer, the default-close timer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

from aiohttp import web

from services.verification import api, handlers
from shared.base.config import Settings
from shared.messaging.consumer import Handler
from shared.runtime.leader import DEFAULT_CLOSE_LOCK, led
from shared.runtime.service import CLOCK, SETTINGS, ServiceSpec, consumer_spec
from shared.web.auth import Role
from shared.web.openapi import op, serve

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

# fmt: off
RECORDED = {"responses": {200: api.Recorded}, "errors": (409, 503)}
OPERATIONS = [
    op("GET", "/v1/verifications", "list_verifications", "Verifications the caller may see",
       query=api.VerificationsQuery, responses={200: api.VerificationPage}),
    op("GET", "/v1/verifications/{id}", "get_verification", "A verification", responses={200: api.VerificationOut}),
    op("POST", "/v1/verifications/{id}/pass", "pass_verification", "The work is done", body=api.PassIn, **RECORDED),
    op("POST", "/v1/verifications/{id}/fail", "fail_verification", "The work is not done: reopen",
       body=api.FailIn, **RECORDED),
]
# fmt: on


def routes(app: web.Application) -> None:
    serve(app, "verification", OPERATIONS)
    app.router.add_get("/v1/verifications", handlers.list_verifications, name="list_verifications")
    app.router.add_get("/v1/verifications/{id}", handlers.get_verification, name="get_verification")
    app.router.add_post("/v1/verifications/{id}/pass", handlers.pass_verification, name="pass_verification")
    app.router.add_post("/v1/verifications/{id}/fail", handlers.fail_verification, name="fail_verification")
    app.cleanup_ctx.append(_rules)


async def _rules(app: web.Application) -> AsyncIterator[None]:
    app[handlers.RESPOND_WITHIN] = timedelta(hours=app[SETTINGS].reporter_confirm_hours)
    yield


def _on_case_event(app: web.Application) -> Handler:
    return partial(
        handlers.on_case_event,
        respond_within=app[handlers.RESPOND_WITHIN],
        clock=app[CLOCK],
    )


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="verification",
        access=ACCESS,
        routes=routes,
        consumers=[(consumer_spec(settings, handlers.CONSUMER, *EVENTS), _on_case_event)],
        loops=[led(handlers.default_close_loop, DEFAULT_CLOSE_LOCK, "default_close")],
    )
