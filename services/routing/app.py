"""routing's composition root: policy data, the routes with who may call them, consumer and watcher."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.routing import api, handlers, views
from shared.base.config import Settings
from shared.domain.rules import load_calendar, load_policy
from shared.runtime.leader import DEADLINE_WATCHER_LOCK, led
from shared.runtime.service import SETTINGS, ServiceSpec, Subscription, consumer_spec
from shared.web.auth import Role
from shared.web.openapi import op

COMMAND_CENTRE = frozenset({Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR})
DISPATCHERS = frozenset({Role.DISPATCHER})

# Each route once: method, path, route name, handler, what the document says, and `allow`, the
# roles that may call it (the auth middleware's table).
# fmt: off
COMMAND = {"responses": {200: api.Decided}, "errors": (409, 503)}
OPERATIONS = [
    op("GET", "/v1/dispatch/queue", "get_queue", views.get_queue, "Cases waiting for a dispatcher",
       query=views.QueueQuery, responses={200: api.QueuePage}, allow=COMMAND_CENTRE),
    op("POST", "/v1/cases/{id}/dispatch", "dispatch_case", views.dispatch_case, "Dispatch a case by hand",
       body=views.DispatchIn, allow=DISPATCHERS, **COMMAND),
    op("POST", "/v1/tasks/{id}/reassign", "reassign_task", views.reassign_task, "Give a task to another department",
       body=views.ReassignIn, allow=frozenset({Role.DISPATCHER, Role.SUPERVISOR}), **COMMAND),
    op("POST", "/v1/cases/{id}/reject", "reject_case", views.reject_case, "Reject a case", body=views.ReasonIn,
       allow=DISPATCHERS, **COMMAND),
    op("POST", "/v1/cases/{id}/merge", "merge_case", views.merge_case, "Merge a case into another",
       body=views.MergeIn, allow=DISPATCHERS, **COMMAND),
]
# fmt: on


async def _policy(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[handlers.POLICY] = load_policy(settings.rules_path or None)
    app[handlers.CALENDAR] = load_calendar(None)
    yield


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="routing",
        operations=OPERATIONS,
        contexts=[_policy],
        consumers=[Subscription(consumer_spec(settings, handlers.CONSUMER, *handlers.EVENT_TYPES), handlers.consumer)],
        # One replica fires deadlines at a time (ids are deterministic anyway: this saves work).
        loops=[led(handlers.deadline_watcher, DEADLINE_WATCHER_LOCK, "deadline_watcher")],
    )
