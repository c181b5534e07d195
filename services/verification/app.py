"""verification's composition root: the routes with who may call them, the consumer, the default-close timer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from services.verification import api, handlers
from shared.base.config import Settings
from shared.runtime.leader import DEFAULT_CLOSE_LOCK, led
from shared.runtime.service import CLOCK, SETTINGS, ServiceSpec, Subscription, consumer_spec, from_app
from shared.web.auth import Role
from shared.web.openapi import op

READ = frozenset({Role.GRID_WORKER, Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR, Role.REPORTER_BACKEND})
RECORD = frozenset({Role.GRID_WORKER, Role.REPORTER_BACKEND, Role.DISPATCHER})
EVENTS = ("CaseHandled", "CaseClosed", "CaseCancelled", "CaseReopened", "CaseRejected", "CaseMerged")

# Each route once: method, path, route name, handler, what the document says, and `allow`, the
# roles that may call it (the auth middleware's table). Object rules are in handlers.
# fmt: off
RECORDED = {"responses": {200: api.Recorded}, "errors": (409, 503), "allow": RECORD}
OPERATIONS = [
    op("GET", "/v1/verifications", "list_verifications", handlers.list_verifications,
       "Verifications the caller may see", query=api.VerificationsQuery, responses={200: api.VerificationPage},
       allow=READ),
    op("GET", "/v1/verifications/{id}", "get_verification", handlers.get_verification, "A verification",
       responses={200: api.VerificationOut}, allow=READ),
    op("POST", "/v1/verifications/{id}/pass", "pass_verification", handlers.pass_verification, "The work is done",
       body=api.PassIn, **RECORDED),
    op("POST", "/v1/verifications/{id}/fail", "fail_verification", handlers.fail_verification,
       "The work is not done: reopen", body=api.FailIn, **RECORDED),
]
# fmt: on


async def _respond_within(app: web.Application) -> AsyncIterator[None]:
    app[handlers.RESPOND_WITHIN] = timedelta(hours=app[SETTINGS].reporter_confirm_hours)
    yield


def spec(settings: Settings) -> ServiceSpec:
    on_case_event = from_app(handlers.on_case_event, respond_within=handlers.RESPOND_WITHIN, clock=CLOCK)
    return ServiceSpec(
        name="verification",
        operations=OPERATIONS,
        contexts=[_respond_within],
        consumers=[Subscription(consumer_spec(settings, handlers.CONSUMER, *EVENTS), on_case_event)],
        loops=[led(handlers.default_close_loop, DEFAULT_CLOSE_LOCK, "default_close")],
    )
