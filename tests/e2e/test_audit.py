"""Auditors against the running system: point-in-time reads, history, a verified log, rebuilt read models."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from ops.audit.rebuild import VIEWS, rebuild
from ops.audit.store import verify_database
from ops.stack import Stack
from services.handling.app import TASK_EVENTS
from services.routing.handlers import EVENT_TYPES as ROUTING_EVENTS
from services.verification.app import EVENTS as VERIFICATION_EVENTS
from shared.audit.checkpoints import load_key, public_bytes
from shared.store.db import AUDITOR_ROLE, with_credentials
from shared.web.auth import Role
from tests.conftest import AUDITOR_PASSWORD
from tests.e2e.client import Api
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
KEYS = {
    "case_view": "case_id",
    "open_alarms": "device_key",
    "routing_tasks": "task_id",
    "dispatch_queue": "case_id",
    "task_view": "task_id",
    "verification_view": "verification_id",
}
# How far, and when, a service's consumer last wrote a row: it subscribes to some event types
# only, so these depend on which later events it happened to see (they differ between two live
# runs too). Every other column must be equal, times included.
CONSUMER_PROGRESS = {
    "routing_tasks": {"case_version"},
    "dispatch_queue": {"case_version"},
    "task_view": {"case_version", "updated_at"},
    "verification_view": {"case_version", "updated_at", "requested_at"},
}


@pytest.fixture(scope="module", autouse=True)
def frequent_checkpoints() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:  # read by the stack fixture when it starts the relay
        patch.setenv("CHECKPOINT_SECONDS", "0.5")
        patch.setenv("CHECKPOINT_EVENTS", "25")
        yield


async def test_a_case_as_of_each_moment_is_what_the_live_system_showed(api: Api) -> None:
    case_id = await api.report("blocked_drain")
    seen: list[tuple[datetime, dict[str, Any]]] = []

    async def snapshot() -> None:
        seen.append(((body := await api.case(case_id)) and datetime.now(UTC), body))

    [task] = await api.open_tasks(case_id, 1)
    await snapshot()
    status, body = await api.task_command(task, "return", {"reason": "不是我们的管道"})
    assert status == 200, body
    [replacement] = await api.open_tasks(case_id, 1)
    assert replacement["id"] != task["id"]
    await snapshot()
    await api.work(replacement)
    await api.verification(case_id)
    await snapshot()
    status, body = await api.verify(case_id, passed=False)
    assert status == 200, body
    [second] = await api.open_tasks(case_id, 1)
    await snapshot()
    await api.work(second)
    status, body = await api.verify(case_id, passed=True)
    assert status == 200, body
    await api.wait_status(case_id, "closed")
    await snapshot()
    status, body = await api.call(
        "POST", "intake", f"/v1/cases/{case_id}/rating", token=api.backend(), json={"score": 4}
    )
    assert status == 200, body
    await eventually(lambda: _rated(api, case_id))
    await snapshot()

    assert [b["status"] for _, b in seen] == ["dispatched", "dispatched", "verifying", "dispatched", "closed", "closed"]
    auditor = api.token(Role.AUDITOR, "auditor-1")
    for moment, live in seen:
        status, then = await api.call(
            "GET", "intake", f"/v1/cases/{case_id}?as_of={quote(moment.isoformat())}", token=auditor
        )
        assert status == 200 and then == live, (moment, then, live)
        status, then = await api.call("GET", "intake", f"/v1/cases/{case_id}?version={live['version']}", token=auditor)
        assert then == live
    assert seen[-1][1]["rating"] == 4 and seen[-2][1]["rating"] is None


async def _rated(api: Api, case_id: str) -> bool:
    return (await api.case(case_id))["rating"] == 4


async def drive_more_cases(api: Api) -> None:
    """A 6+X case, a hand dispatch from the queue, one left in progress, one left in the queue."""
    gas = await api.report("gas_alarm")
    for task in await api.open_tasks(gas, 3):
        await api.work(task)
    status, _ = await api.verify(gas, passed=True)
    assert status == 200
    queued = await api.report("bees_in_the_town_hall")
    await api.wait_status(queued, "awaiting_dispatch")
    status, body = await api.call(
        "POST", "routing", f"/v1/cases/{queued}/dispatch", token=api.dispatcher(), json={"departments": ["parks"]}
    )
    assert status == 200, body
    [task] = await api.open_tasks(queued, 1)
    status, _ = await api.task_command(task, "accept")
    assert status == 200
    waiting = await api.report("lost_pet_report")
    await api.wait_status(waiting, "awaiting_dispatch")
    await api.wait_status(gas, "closed")


async def caught_up(conn: asyncpg.Connection) -> bool:
    for consumer, types in (
        ("intake", None),
        ("routing", ROUTING_EVENTS),
        ("handling", TASK_EVENTS),
        ("verification", VERIFICATION_EVENTS),
    ):
        behind = await conn.fetchval(
            """SELECT count(*) FROM events e WHERE ($2::text[] IS NULL OR e.type = ANY($2))
               AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = $1 AND i.event_id = e.event_id)""",
            consumer,
            list(types) if types else None,
        )
        if behind:
            return False
    return True


async def dump(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    views = {}
    for table in VIEWS:
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY {KEYS[table]}")
        skip = CONSUMER_PROGRESS.get(table, set())
        views[table] = [{k: v for k, v in dict(r).items() if k not in skip} for r in rows]
    return views


async def test_rebuilt_read_models_equal_the_live_ones_and_the_log_verifies(api: Api, stack: Stack) -> None:
    await drive_more_cases(api)
    admin_url = stack.env["ADMIN_DATABASE_URL"]
    conn = await asyncpg.connect(admin_url)
    try:
        await eventually(lambda: caught_up(conn), timeout=30)
        live = await dump(conn)
        counts = await rebuild(admin_url)
        rebuilt = await dump(conn)
        events = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()
    assert all(live[t] for t in ("case_view", "routing_tasks", "dispatch_queue", "task_view", "verification_view"))
    for table in VIEWS:
        assert rebuilt[table] == live[table], table
        assert counts[table] == len(live[table])

    auditor_url = with_credentials(admin_url, AUDITOR_ROLE, AUDITOR_PASSWORD)
    public = public_bytes(load_key(Path(stack.env["CHECKPOINT_KEY_FILE"])).public_key())

    async def covered() -> Any:
        report = await verify_database(auditor_url, public, None, None)
        return report if report.covered == events else None

    report = await eventually(covered, timeout=20)
    assert report.ok, report.findings
    assert report.checkpoints >= 2 and report.signatures_checked
