"""routing's composition root: policy data, routes, the access table, consumer and watcher."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.routing import api, handlers, views
from services.routing.rules import load_calendar, load_policy
from shared.base.config import Settings
from shared.runtime.leader import DEADLINE_WATCHER_LOCK, led
from shared.runtime.service import SETTINGS, ServiceSpec, consumer_spec
from shared.web.auth import Role
from shared.web.openapi import op, serve

COMMAND_CENTRE = frozenset({Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR})
ACCESS: dict[str, frozenset[Role]] = {
    "get_queue": COMMAND_CENTRE,
    "dispatch_case": frozenset({Role.DISPATCHER}),
    "reassign_task": frozenset({Role.DISPATCHER, Role.SUPERVISOR}),
    "reject_case": frozenset({Role.DISPATCHER}),
    "merge_case": frozenset({Role.DISPATCHER}),
}

# fmt: off
COMMAND = {"responses": {200: api.Decided}, "errors": (409, 503)}
OPERATIONS = [
    op("GET", "/v1/dispatch/queue", "get_queue", "Cases waiting for a dispatcher", query=views.QueueQuery,
       responses={200: api.QueuePage}),
    op("POST", "/v1/cases/{id}/dispatch", "dispatch_case", "Dispatch a case by hand", body=views.DispatchIn, **COMMAND),
    op("POST", "/v1/tasks/{id}/reassign", "reassign_task", "Give a task to another department", body=views.ReassignIn,
       **COMMAND),
    op("POST", "/v1/cases/{id}/reject", "reject_case", "Reject a case", body=views.ReasonIn, **COMMAND),
    op("POST", "/v1/cases/{id}/merge", "merge_case", "Merge a case into another", body=views.MergeIn, **COMMAND),
]
# fmt: on


def routes(app: web.Application) -> None:
    serve(app, "routing", OPERATIONS)
    app.router.add_get("/v1/dispatch/queue", views.get_queue, name="get_queue")
    app.router.add_post("/v1/cases/{id}/dispatch", views.dispatch_case, name="dispatch_case")
    app.router.add_post("/v1/tasks/{id}/reassign", views.reassign_task, name="reassign_task")
    app.router.add_post("/v1/cases/{id}/reject", views.reject_case, name="reject_case")
    app.router.add_post("/v1/cases/{id}/merge", views.merge_case, name="merge_case")
    app.cleanup_ctx.insert(0, _policy)


async def _policy(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[handlers.POLICY] = load_policy(settings.rules_path or None)
    app[handlers.CALENDAR] = load_calendar(None)
    yield


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="routing",
        access=ACCESS,
        routes=routes,
        consumers=[(consumer_spec(settings, handlers.CONSUMER, *handlers.EVENT_TYPES), handlers.consumer)],
        # One replica fires deadlines at a time (ids are deterministic anyway: this saves work).
        loops=[led(handlers.deadline_watcher, DEADLINE_WATCHER_LOCK, "deadline_watcher")],
    )
