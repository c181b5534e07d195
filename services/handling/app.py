"""handling's composition root: the routes with who may call them, the consumer that keeps task_view."""

from __future__ import annotations

from services.handling import api, handlers
from shared.base.config import Settings
from shared.runtime.service import ServiceSpec, Subscription, consumer_spec, from_app
from shared.web.auth import Role
from shared.web.openapi import op

TASK_READERS = frozenset({Role.HANDLER, Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR})
DEPARTMENTS = frozenset({Role.HANDLER})

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

# Each route once: method, path, route name, handler, what the document says, and `allow`, the
# roles that may call it (the auth middleware's table). Object rules live in shared/web/access.py.
# fmt: off
COMMAND = {"responses": {200: api.CommandResult}, "errors": (409, 503), "allow": DEPARTMENTS}
OPERATIONS = [
    op("GET", "/v1/tasks", "list_tasks", handlers.list_tasks, "Tasks, most urgent first", query=api.TasksQuery,
       responses={200: api.TaskPage}, allow=TASK_READERS),
    op("GET", "/v1/tasks/{id}", "get_task", handlers.get_task, "A task and what its department needs of the case",
       responses={200: api.TaskOut}, allow=TASK_READERS),
    op("POST", "/v1/tasks/{id}/accept", "accept_task", handlers.accept_task, "Accept a task", body=api.AcceptIn,
       optional_body=True, **COMMAND),
    op("POST", "/v1/tasks/{id}/notes", "note_task", handlers.note_task, "Note progress on a task", body=api.NoteIn,
       **COMMAND),
    op("POST", "/v1/tasks/{id}/complete", "complete_task", handlers.complete_task, "Complete a task with evidence",
       body=api.CompleteIn, **COMMAND),
    op("POST", "/v1/tasks/{id}/return", "return_task", handlers.return_task, "Return a task: not ours",
       body=api.ReturnIn, **COMMAND),
]
# fmt: on


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="handling",
        operations=OPERATIONS,
        consumers=[
            Subscription(consumer_spec(settings, handlers.CONSUMER, *TASK_EVENTS), from_app(handlers.on_task_event))
        ],
    )
