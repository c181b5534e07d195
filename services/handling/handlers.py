"""handling's I/O shell: the task views and commands, and the consumer that keeps task_view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import structlog
from aiohttp import web

from services.handling import api
from services.handling.decide import AcceptTask, Command, CompleteTask, NoteTask, ReturnTask, decide
from shared.domain.case import Case
from shared.domain.events import CaseEvent
from shared.messaging.bus import Delivered
from shared.runtime.service import POOL, STORE
from shared.store.commands import case_of, run_command
from shared.store.eventstore import Metadata, Transaction
from shared.web.access import can_act_for_department
from shared.web.auth import Principal, Role, forbidden, principal_of
from shared.web.http import ProblemError, decode_body, json_response, parse_query, uuid_param
from shared.web.paging import Page

log = structlog.get_logger()
CONSUMER = "handling"
T = TypeVar("T")


def not_found() -> ProblemError:
    return ProblemError(404, "Not found", "no such task", kind="not-found")


def check_department(principal: Principal, department: str) -> None:
    # Staff who read every task pass; a handler sees and acts on its own department's tasks only.
    # Another department's task is absent to it, not forbidden: no existence leak (as intake's cases).
    if principal.role is not Role.HANDLER or can_act_for_department(principal, department):
        return
    raise not_found()


async def _case_of_task(request: web.Request, task_id: UUID) -> UUID:
    # The log's own index (written with the TaskDispatched event), not task_view: a task the log
    # holds is found at once, before this service's consumer has heard of it.
    case_id = await case_of(request.app[STORE], task_id, "task")
    if case_id is None:
        raise not_found()
    return case_id


# --- reading tasks --------------------------------------------------------------------


async def get_task(request: web.Request) -> web.Response:
    task_id = uuid_param(request)
    case_id = await _case_of_task(request, task_id)
    case, version = await request.app[STORE].load(case_id)
    task = case.task(task_id)
    if task is None:
        raise not_found()
    check_department(principal_of(request), task.department)
    return json_response(api.task_out(case, task, version))


async def list_tasks(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = parse_query(request, api.TasksQuery)
    department = query.department
    if principal.role is Role.HANDLER:
        if department is not None and department != principal.department:
            raise forbidden("a handler lists its own department's tasks only")
        department = principal.department
    # Most urgent first: complete_by never changes for a task, so the cursor is stable.
    page = Page("task_view", "complete_by", "task_id")
    if department is not None:
        page.where("department = {}", department)
    if query.status is not None:
        page.where("status = {}", str(query.status))
    rows, next_cursor = await page.fetch(request.app[POOL], query.cursor, query.page_size)
    items = [_summary(r) for r in rows]
    return json_response(api.TaskPage(items=items, next_cursor=next_cursor))


def _summary(row: Any) -> api.TaskSummary:
    return api.TaskSummary(
        id=row["task_id"],
        case_id=row["case_id"],
        department=row["department"],
        round=row["round"],
        lead=row["lead"],
        status=row["status"],
        accept_by=row["accept_by"],
        complete_by=row["complete_by"],
        category=row["category"],
        grid=row["grid"],
        case_version=row["case_version"],
        updated_at=row["updated_at"],
    )


# --- commands on a task ---------------------------------------------------------------


async def accept_task(request: web.Request) -> web.Response:
    if (await request.read()).strip():  # an empty body, or {}
        await decode_body(request, api.AcceptIn)
    return await _command(request, lambda case_id, task_id, by: AcceptTask(case_id=case_id, task_id=task_id, by=by))


async def note_task(request: web.Request) -> web.Response:
    body = await decode_body(request, api.NoteIn)
    return await _command(
        request, lambda case_id, task_id, by: NoteTask(case_id=case_id, task_id=task_id, by=by, note=body.note)
    )


async def complete_task(request: web.Request) -> web.Response:
    body = await decode_body(request, api.CompleteIn)
    evidence = body.attachments()
    return await _command(
        request,
        lambda case_id, task_id, by: CompleteTask(
            case_id=case_id, task_id=task_id, by=by, result=body.result, evidence=evidence
        ),
    )


async def return_task(request: web.Request) -> web.Response:
    body = await decode_body(request, api.ReturnIn)
    return await _command(
        request, lambda case_id, task_id, by: ReturnTask(case_id=case_id, task_id=task_id, by=by, reason=body.reason)
    )


async def _command(request: web.Request, make: Callable[[UUID, UUID, str], Command]) -> web.Response:
    principal = principal_of(request)
    task_id = uuid_param(request)
    case_id = await _case_of_task(request, task_id)
    command = make(case_id, task_id, principal.actor)

    def decided(case: Case) -> list[CaseEvent]:
        task = case.task(task_id)
        if task is None:
            raise not_found()
        check_department(principal, task.department)
        return decide(case, command)

    metadata = Metadata(correlation_id=uuid4(), actor=principal.actor)
    outcome = await run_command(request.app[STORE], case_id, decided, metadata=metadata)
    after = outcome.case.task(task_id)
    assert after is not None
    log.info(
        "task_command_decided",
        command=type(command).__name__,
        case_id=str(case_id),
        task_id=str(task_id),
        department=after.department,
        new_events=[type(e).__name__ for e in outcome.events],
    )
    body = api.CommandResult(
        task_id=task_id,
        case_id=case_id,
        version=outcome.version,
        status=str(after.status),
        changed=bool(outcome.events),
    )
    return json_response(body)


# --- task_view, kept from the log -------------------------------------------------------


async def on_task_event(tx: Transaction, msg: Delivered) -> None:
    """An event that changes a task or its case: fold the case from the log, write every task row."""
    case, version = await tx.load(msg.case_id)
    if not case.exists:
        return
    await project_tasks(tx.conn, case, version, msg.recorded_at)


async def project_tasks(conn: Any, case: Case, version: int, at: datetime) -> None:
    """Upsert a row per task of the case; a fold older than the row's never overwrites it."""
    if not case.tasks:
        return
    assert case.id is not None
    await conn.execute(
        """INSERT INTO task_view (task_id, case_id, department, round, lead, status, accept_by, complete_by,
                                  category, grid, case_version, updated_at)
           SELECT t.task_id, $8, t.department, t.round, t.lead, t.status, t.accept_by, t.complete_by,
                  $9, $10, $11, $12
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bool[], $5::text[],
                       $6::timestamptz[], $7::timestamptz[])
                AS t(task_id, department, round, lead, status, accept_by, complete_by)
           ON CONFLICT (task_id) DO UPDATE SET
               status = excluded.status, case_version = excluded.case_version, updated_at = excluded.updated_at
           WHERE task_view.case_version < excluded.case_version""",
        [t.id for t in case.tasks],
        [t.department for t in case.tasks],
        [t.round for t in case.tasks],
        [t.lead for t in case.tasks],
        [str(t.status) for t in case.tasks],
        [t.accept_by for t in case.tasks],
        [t.complete_by for t in case.tasks],
        case.id,
        case.category,
        case.location.grid,
        version,
        at,
    )
