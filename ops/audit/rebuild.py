"""Read models are disposable: truncate them and fold every case stream through each service's project function.

Each view is written by the very function its service uses live (`project_case`, `project`,
`project_tasks`, `project_verification`), so a rebuilt row cannot drift from a live one. The
statements are collected per case and sent with `executemany`, one pipeline per statement.
Times passed to the projections come from the events: the last event's `recorded_at`; for the
dispatch queue, when the event that queued the case was recorded (live: the message routing
reacted to); for each verification, the case as it last stood while that verification was current.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.handling.handlers import project_tasks
from services.intake.handlers import project_case
from services.routing.handlers import project
from services.verification.handlers import project_verification
from shared.domain.case import NO_CASE, Case, evolve
from shared.store.records import COLUMNS, RecordedEvent, from_row

# View name -> the service that owns it. `open_alarms` is intake's too.
VIEWS = {
    "case_view": "intake",
    "open_alarms": "intake",
    "routing_tasks": "routing",
    "dispatch_queue": "routing",
    "task_view": "handling",
    "verification_view": "verification",
}


class Recorder:
    """Stands in for a connection inside project functions: keeps their statements for executemany."""

    def __init__(self) -> None:
        self.batches: dict[str, list[Sequence[Any]]] = {}

    async def execute(self, query: str, *args: Any) -> str:
        self.batches.setdefault(query, []).append(args)
        return ""

    async def flush(self, conn: Any) -> None:
        for query, args in self.batches.items():
            await conn.executemany(query, args)
        self.batches.clear()


def tables_for(name: str | None) -> list[str]:
    """A view's name, a service's name (all its views), or None (every view)."""
    if name is None:
        return list(VIEWS)
    if name in VIEWS:
        return [name]
    tables = [view for view, service in VIEWS.items() if service == name]
    if not tables:
        raise ValueError(f"no read model or service named {name!r}: one of {', '.join([*VIEWS, 'intake', 'routing'])}")
    return tables


async def project_stream(conn: Any, rows: list[RecordedEvent], tables: set[str]) -> None:
    """Every chosen view's rows for one case, from its events (in version order)."""
    case: Case = NO_CASE
    by_id = {r.event_id: r for r in rows}
    queued_at: datetime | None = None
    verifications: dict[Any, tuple[Case, int, datetime]] = {}
    for row in rows:
        case = evolve(case, row.event())
        if row.type == "CaseQueued":
            cause = by_id.get(row.metadata.causation_id) if row.metadata.causation_id else None
            queued_at = (cause or row).recorded_at
        if case.verification is not None:
            verifications[case.verification.id] = (case, row.version, row.recorded_at)
    if not case.exists:
        return
    version, at = rows[-1].version, rows[-1].recorded_at
    if "case_view" in tables:
        await project_case(conn, case, version, at)
    if "open_alarms" in tables and case.device is not None and not case.is_terminal:
        await conn.execute(
            "INSERT INTO open_alarms VALUES ($1, $2) ON CONFLICT DO NOTHING",
            f"{case.device.id}\x1f{case.device.alarm}",
            case.id,
        )
    if tables & {"routing_tasks", "dispatch_queue"}:
        await project(_Only(conn, tables), case, version, queued_at or at)
    if "task_view" in tables:
        await project_tasks(conn, case, version, at)
    if "verification_view" in tables:
        for then, then_version, then_at in verifications.values():
            await project_verification(conn, then, then_version, then_at)


class _Only:
    """Lets routing's `project` write only the chosen one of its two views."""

    def __init__(self, conn: Any, tables: set[str]) -> None:
        self.conn, self.tables = conn, tables

    async def execute(self, query: str, *args: Any) -> str:
        if any(t in query for t in self.tables if t in ("routing_tasks", "dispatch_queue")):
            return str(await self.conn.execute(query, *args))
        return ""


async def rebuild(
    url: str, name: str | None = None, progress: Callable[[int, int], None] | None = None, cases_per_flush: int = 500
) -> dict[str, int]:
    """Truncate the views and rebuild them from the log, in one transaction; rows per view afterwards.

    `progress(events_done, events_total)` is called as streams are folded.
    """
    tables = tables_for(name)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            total = int(await conn.fetchval("SELECT count(*) FROM events"))
            await conn.execute(f"TRUNCATE {', '.join(tables)}")
            recorder, done, pending = Recorder(), 0, 0
            stream: list[RecordedEvent] = []
            cursor = conn.cursor(f"SELECT {COLUMNS} FROM events ORDER BY stream_id, version", prefetch=5000)
            async for record in cursor:
                row = from_row(record)
                if stream and row.stream_id != stream[0].stream_id:
                    await project_stream(recorder, stream, set(tables))
                    done, pending, stream = done + len(stream), pending + 1, []
                    if pending >= cases_per_flush:
                        await recorder.flush(conn)
                        pending = 0
                        if progress:
                            progress(done, total)
                stream.append(row)
            if stream:
                await project_stream(recorder, stream, set(tables))
                done += len(stream)
            await recorder.flush(conn)
            if progress:
                progress(done, total)
            return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}
    finally:
        await conn.close()
