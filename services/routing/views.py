"""routing's HTTP views: the dispatcher's queue, dispatch by hand, reassign, reject, merge."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

import msgspec
import structlog
from aiohttp import web
from msgspec import Meta

from services.routing.decide import Command, Dispatch, MergeCase, Reassign, RejectCase, decide
from services.routing.handlers import CALENDAR, POLICY, project
from services.routing.planning import assignments, rule_for, verifier_for
from shared.domain.case import NO_CASE, Case, Refused
from shared.domain.events import CaseEvent, TaskDispatched
from shared.runtime.service import CLOCK, POOL, SETTINGS, STORE
from shared.store.commands import case_of, run_command
from shared.store.eventstore import Metadata, Transaction
from shared.web.auth import principal_of
from shared.web.http import ProblemError, decode_body, invalid, json_response, parse_query, uuid_param

log = structlog.get_logger()
Department = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class DispatchIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    departments: Annotated[tuple[Department, ...], Meta(min_length=1, max_length=12)]
    priority: Annotated[str, Meta(pattern=r"^(urgent|high|normal|low)$")] | None = None


class ReassignIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    department: Department


class ReasonIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class MergeIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    into: UUID


class QueueQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    page_size: Annotated[int, Meta(ge=1, le=100)] = 50


class QueuedCase(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    category: str
    grid: str | None
    street: str | None
    reason: str
    queued_at: datetime


def _unknown_departments(request: web.Request, departments: tuple[str, ...]) -> None:
    known = request.app[POLICY].departments
    unknown = [d for d in departments if d not in known]
    if unknown:
        raise invalid(
            f"unknown department {unknown[0]!r}", at="/departments" if len(departments) > 1 else "/department"
        )


async def get_queue(request: web.Request) -> web.Response:
    query = parse_query(request, QueueQuery)
    rows = await request.app[POOL].fetch(
        "SELECT * FROM dispatch_queue ORDER BY queued_at, case_id LIMIT $1", query.page_size
    )
    items = [
        QueuedCase(
            case_id=r["case_id"],
            category=r["category"],
            grid=r["grid"],
            street=r["street"],
            reason=r["reason"],
            queued_at=r["queued_at"],
        )
        for r in rows
    ]
    return json_response({"items": items})


async def dispatch_case(request: web.Request) -> web.Response:
    body = await decode_body(request, DispatchIn)
    _unknown_departments(request, body.departments)
    app = request.app

    def command(case: Case) -> Command:
        rule = rule_for(app[POLICY], case)
        tasks = assignments(
            app[POLICY],
            app[CALENDAR],
            rule,
            body.departments,
            app[CLOCK](),
            lambda _: uuid4(),
            app[SETTINGS].warn_share,
        )
        priority = body.priority or (rule.priority if rule else "normal")
        assert case.id is not None
        return Dispatch(
            case_id=case.id,
            tasks=tasks,
            priority=priority,
            policy_version=app[POLICY].version,
            verifier=verifier_for(rule, case.category),
            by=principal_of(request).actor,
        )

    return await _run(
        request, uuid_param(request), lambda case, _: command(case), refuse_noop="the case is not waiting for dispatch"
    )


async def reassign_task(request: web.Request) -> web.Response:
    body = await decode_body(request, ReassignIn)
    _unknown_departments(request, (body.department,))
    task_id = uuid_param(request)
    # The log's own index, not routing_tasks: a task the log holds is found before the view has it.
    case_id = await case_of(request.app[STORE], task_id, "task")
    if case_id is None:
        raise ProblemError(404, "Not found", "no such task", kind="not-found")
    app = request.app

    def command(case: Case) -> Command:
        rule = rule_for(app[POLICY], case)
        [assignment] = assignments(
            app[POLICY],
            app[CALENDAR],
            rule,
            [body.department],
            app[CLOCK](),
            lambda _: uuid4(),
            app[SETTINGS].warn_share,
        )
        return Reassign(case_id=case_id, task_id=task_id, assignment=assignment)

    return await _run(request, case_id, lambda case, _: command(case))


async def reject_case(request: web.Request) -> web.Response:
    body = await decode_body(request, ReasonIn)
    case_id = uuid_param(request)
    by = principal_of(request).actor
    return await _run(request, case_id, lambda case, _: RejectCase(case_id=case_id, reason=body.reason, by=by))


async def merge_case(request: web.Request) -> web.Response:
    body = await decode_body(request, MergeIn)
    case_id = uuid_param(request)
    target, _ = await request.app[STORE].load(body.into)
    if not target.exists:
        raise invalid("no such case to merge into", at="/into")
    by = principal_of(request).actor
    return await _run(
        request,
        case_id,
        lambda case, target: MergeCase(case_id=case_id, into=body.into, by=by, target=target),
        related=body.into,
    )


async def _run(
    request: web.Request,
    case_id: UUID,
    make: Callable[[Case, Case], Command],
    refuse_noop: str = "",
    related: UUID | None = None,
) -> web.Response:
    """Load, decide, append and project in one transaction. `related`: another case the decision
    reads (a merge's target), loaded in the same transaction and passed to `make` beside the case."""
    other = NO_CASE

    async def lock_and_load_related(tx: Transaction) -> None:
        nonlocal other
        if related is not None:
            await _lock_cases(tx, case_id, related)
            other = (await tx.load(related))[0]

    def decided(case: Case) -> list[CaseEvent]:
        if not case.exists:
            raise ProblemError(404, "Not found", "no such case", kind="not-found")
        events = decide(case, make(case, other))
        if not events and refuse_noop:
            raise Refused(refuse_noop)
        return events

    clock = request.app[CLOCK]
    outcome = await run_command(
        request.app[STORE],
        case_id,
        decided,
        metadata=Metadata(correlation_id=uuid4(), actor=principal_of(request).actor),
        before=lock_and_load_related,
        after=lambda tx, case, version: project(tx.conn, case, version, clock()),
    )
    events = outcome.events
    log.info("dispatcher_decided", case_id=str(case_id), events=[type(e).__name__ for e in events])
    return json_response(
        {
            "case_id": str(case_id),
            "version": outcome.version,
            "status": str(outcome.case.status),
            "changed": bool(events),
            "tasks": [str(e.task.task_id) for e in events if isinstance(e, TaskDispatched)],
        }
    )


async def _lock_cases(tx: Transaction, *case_ids: UUID) -> None:
    """Serialise decisions that read two cases, per case and in id order (no deadlock).

    Two merges of A into B and of B into A at once would each see the other open and make a
    cycle; holding both cases' locks, the second one reads the first one's result. Advisory
    locks take no transaction id, so the events INSERT stays the transaction's first write.
    """
    for case_id in sorted(set(case_ids)):
        await tx.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"case-lock:{case_id}")
