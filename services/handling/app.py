"""handling's composition root: routes, the access table, the consumer that keeps task_view."""

from __future__ import annotations

from aiohttp import web

from services.handling import api, handlers
from shared.base.config import Settings
from shared.runtime.service import ServiceSpec, consumer_spec
from shared.web.auth import Role
from shared.web.openapi import op, serve

TASK_READERS = frozenset({Role.HANDLER, Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR})
DEPARTMENTS = frozenset({Role.HANDLER})

# Route name -> the roles that may call it. Absent: nobody. Object rules live in shared/access.py.
ACCESS: dict[str, frozenset[Role]] = {
    "list_tasks": TASK_READERS,
    "get_task": TASK_READERS,
    "accept_task": DEPARTMENTS,
    "note_task": DEPARTMENTS,
    "complete_task": DEPARTMENTS,
    "return_task": DEPARTMENTS,
}

# The events that change a task, or end or restart its case.
TASK_EVENTS = (
    "TaskDispatched",
    "TaskAccepted",
    "TaskCompleted",
    "TaskReturned",
    "CaseCancelled",
    "CaseRejected",
    "CaseMerged",
    "CaseDispatched",
    "CaseReopened",
)

# fmt: off
COMMAND = {"responses": {200: api.CommandResult}, "errors": (409, 503)}
OPERATIONS = [
    op("GET", "/v1/tasks", "list_tasks", "Tasks, most urgent first", query=api.TasksQuery,
       responses={200: api.TaskPage}),
    op("GET", "/v1/tasks/{id}", "get_task", "A task and what its department needs of the case",
       responses={200: api.TaskOut}),
    op("POST", "/v1/tasks/{id}/accept", "accept_task", "Accept a task", body=api.AcceptIn, optional_body=True,
       **COMMAND),
    op("POST", "/v1/tasks/{id}/notes", "note_task", "Note progress on a task", body=api.NoteIn, **COMMAND),
    op("POST", "/v1/tasks/{id}/complete", "complete_task", "Complete a task with evidence", body=api.CompleteIn,
       **COMMAND),
    op("POST", "/v1/tasks/{id}/return", "return_task", "Return a task: not ours", body=api.ReturnIn, **COMMAND),
]
# fmt: on


def routes(app: web.Application) -> None:
    serve(app, "handling", OPERATIONS)
    app.router.add_get("/v1/tasks", handlers.list_tasks, name="list_tasks")
    app.router.add_get("/v1/tasks/{id}", handlers.get_task, name="get_task")
    app.router.add_post("/v1/tasks/{id}/accept", handlers.accept_task, name="accept_task")
    app.router.add_post("/v1/tasks/{id}/notes", handlers.note_task, name="note_task")
    app.router.add_post("/v1/tasks/{id}/complete", handlers.complete_task, name="complete_task")
    app.router.add_post("/v1/tasks/{id}/return", handlers.return_task, name="return_task")


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="handling",
        access=ACCESS,
        routes=routes,
        consumers=[(consumer_spec(settings, handlers.CONSUMER, *TASK_EVENTS), lambda app: handlers.on_task_event)],
    )
