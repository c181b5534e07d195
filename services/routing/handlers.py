"""routing's consumer and deadline watcher: the I/O shell around decide()."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

import structlog
from aiohttp import web

from services.routing.decide import CheckDeadlines, Dispatch, Redispatch, decide, next_check
from services.routing.planning import assignments, rule_for, tried_departments, verifier_for
from shared.domain.case import Case, Status, replay
from shared.domain.events import (
    CaseEscalated,
    CaseEvent,
    CaseReopened,
    CaseReported,
    DeadlineWarned,
    TaskOverdue,
    TaskReturned,
)
from shared.domain.rules import Policy, WorkingCalendar
from shared.messaging.bus import Delivered
from shared.runtime.service import CLOCK, POOL, SETTINGS, STORE
from shared.store.commands import Busy, run_command
from shared.store.eventstore import Metadata, Transaction, case_stream

log = structlog.get_logger()
CONSUMER = "routing"
ACTOR = "service:routing"
POLICY = web.AppKey("policy", Policy)
CALENDAR = web.AppKey("calendar", WorkingCalendar)
# What routing reacts to, and what changes its views (tasks, deadlines, the queue).
EVENT_TYPES = (
    "CaseReported",
    "CaseReopened",
    "TaskReturned",
    "CaseQueued",
    "CaseDispatched",
    "TaskDispatched",
    "TaskAccepted",
    "TaskCompleted",
    "DeadlineWarned",
    "TaskOverdue",
    "CaseEscalated",
    "CaseHandled",
    "CaseClosed",
    "CaseCancelled",
    "CaseRejected",
    "CaseMerged",
)


def react(
    case: Case, msg: Delivered, policy: Policy, calendar: WorkingCalendar, now: datetime, warn_share: float = 0.8
) -> list[CaseEvent]:
    """What routing does about one event, given the case as the log has it now."""
    event = msg.event

    def task_id(department: str) -> UUID:
        return uuid5(msg.event_id, f"task:{department}")

    match event:
        case CaseReported() if case.status is Status.REPORTED:
            rule = rule_for(policy, case)
            tasks = assignments(policy, calendar, rule, rule.departments, now, task_id, warn_share) if rule else ()
            reason = f"no rule for category {case.category!r} here"
            return decide(case, _dispatch(case, tasks, policy, rule.priority if rule else "normal", reason))
        case CaseReopened(round=round_) if case.status is Status.REOPENED and round_ == case.round:
            rule = rule_for(policy, case)
            tasks = assignments(policy, calendar, rule, case.departments, now, task_id, warn_share)
            return decide(case, _dispatch(case, tasks, policy, case.priority or "normal", "reopened"))
        case TaskReturned(task_id=returned):
            street = case.location.street or policy.street_of(case.location.grid)
            department = policy.next_department(case.category, street, tried_departments(case))
            assignment = None
            if department is not None:
                rule = rule_for(policy, case)
                [assignment] = assignments(policy, calendar, rule, [department], now, task_id, warn_share)
            return decide(case, Redispatch(case_id=event.case_id, returned_task=returned, assignment=assignment))
        case _:
            return []


def _dispatch(case: Case, tasks: Any, policy: Policy, priority: str, reason: str) -> Dispatch:
    assert case.id is not None
    return Dispatch(
        case_id=case.id,
        tasks=tasks,
        priority=priority,
        policy_version=policy.version,
        verifier=verifier_for(rule_for(policy, case), case.category),
        by="rules",
        reason_if_none=reason,
    )


def consumer(app: web.Application) -> Any:
    policy, calendar, clock = app[POLICY], app[CALENDAR], app[CLOCK]
    warn_share = app[SETTINGS].warn_share

    async def on_case_event(tx: Transaction, msg: Delivered) -> None:
        case, version = await tx.load(msg.case_id)
        if not case.exists:
            return
        events = react(case, msg, policy, calendar, clock(), warn_share)
        if events:
            ids = [uuid5(msg.event_id, f"routing:{i}") for i in range(len(events))]
            meta = Metadata(correlation_id=msg.metadata.correlation_id, causation_id=msg.event_id, actor=ACTOR)
            result = await tx.append(
                case_stream(msg.case_id), events, expected_version=version, metadata=meta, event_ids=ids
            )
            case, version = replay(events, case), result.version
            log.info("routing_decided", events=[type(e).__name__ for e in events], version=version)
        await project(tx.conn, case, version, msg.recorded_at)

    return on_case_event


_PROJECT = """
    WITH tasks AS (
        INSERT INTO routing_tasks (task_id, case_id, department, status, case_version, next_check)
        SELECT t.id, $1, t.department, t.status, $2, $3
        FROM unnest($4::uuid[], $5::text[], $6::text[]) AS t(id, department, status)
        ON CONFLICT (task_id) DO UPDATE SET department = excluded.department, status = excluded.status,
            case_version = excluded.case_version, next_check = excluded.next_check
        WHERE routing_tasks.case_version < excluded.case_version
    ), queued AS (
        INSERT INTO dispatch_queue (case_id, category, grid, street, reason, queued_at, case_version)
        SELECT $1, $7, $8, $9, $10, $11, $2 WHERE $12
        ON CONFLICT (case_id) DO UPDATE SET reason = excluded.reason, case_version = excluded.case_version
        WHERE dispatch_queue.case_version < excluded.case_version
    )
    DELETE FROM dispatch_queue WHERE case_id = $1 AND case_version < $2 AND NOT $12"""


async def project(conn: Any, case: Case, version: int, at: datetime) -> None:
    """routing's views of one case, in one statement: its tasks with their next deadline check, and the queue."""
    assert case.id is not None
    check = None if case.is_terminal else next_check(case)
    await conn.execute(
        _PROJECT,
        case.id,
        version,
        check,
        [t.id for t in case.tasks],
        [t.department for t in case.tasks],
        [str(t.status) for t in case.tasks],
        case.category,
        case.location.grid,
        case.location.street,
        case.queued_reason,
        at,
        case.status is Status.AWAITING_DISPATCH,
    )


def _deadline_event_id(event: CaseEvent) -> UUID:
    # One id per task, kind and step: however often or wherever the watcher runs, once.
    assert isinstance(event, DeadlineWarned | TaskOverdue | CaseEscalated)
    return uuid5(event.task_id, f"{type(event).__name__}:{event.kind}")


async def check_case_deadlines(app: web.Application, case_id: UUID) -> list[CaseEvent]:
    store, now = app[STORE], app[CLOCK]()

    async def projected(tx: Transaction, case: Case, version: int) -> None:
        if case.exists:
            await project(tx.conn, case, version, now)

    outcome = await run_command(
        store,
        case_id,
        lambda case: decide(case, CheckDeadlines(case_id=case_id, now=now)) if case.exists else [],
        metadata=Metadata(correlation_id=case_id, actor=ACTOR),
        event_ids=lambda events: [_deadline_event_id(e) for e in events],
        after=projected,
    )
    for event in outcome.events:
        log.info(
            "deadline_fired",
            case_id=str(case_id),
            step=type(event).__name__,
            task_id=str(getattr(event, "task_id", "")),
            kind=getattr(event, "kind", ""),
        )
    return outcome.events


async def deadline_watcher(app: web.Application, stop: asyncio.Event) -> None:
    """Fires warnings, overdues and escalations whose moment has come, also ones missed while down."""
    interval = app[SETTINGS].deadline_interval
    while not stop.is_set():
        now = app[CLOCK]()
        due = await app[POOL].fetch("SELECT DISTINCT case_id FROM routing_tasks WHERE next_check <= $1 LIMIT 500", now)
        for row in due:
            try:
                await check_case_deadlines(app, row["case_id"])
            except Busy:  # still due: the next round checks it again
                log.warning("deadline_check_busy", case_id=str(row["case_id"]))
        if len(due) < 500:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
