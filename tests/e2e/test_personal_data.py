"""A reporter's phone number never appears in plaintext: not in the log, the logs, or on NATS."""

from __future__ import annotations

import asyncpg
import pytest

from shared.auth import Role
from shared.stack import Stack
from tests.e2e.client import Api
from tests.e2e.plaintext import places_holding

pytestmark = pytest.mark.e2e
PHONE = "13912345678"
NAME = "李小明"


async def test_a_phone_number_stays_sealed_everywhere_and_is_masked_for_handlers(api: Api, stack: Stack) -> None:
    case_id = await api.report("pothole", reporter={"name": NAME, "phone": PHONE})
    [task] = await api.open_tasks(case_id, 1)
    await api.work(task)
    await api.verify(case_id, passed=True)
    await api.wait_status(case_id, "closed")

    handler_view = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.handler(task["department"]))
    assert handler_view[1]["reporter"] == {"name": "李**", "phone": "139****5678"}
    _, backend_view = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.backend())
    assert backend_view["reporter"] == {"name": NAME, "phone": PHONE}
    _, auditor_view = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.token(Role.AUDITOR))
    assert auditor_view["reporter"]["phone"] == "139****5678"

    conn = await asyncpg.connect(stack.env["ADMIN_DATABASE_URL"])
    try:
        sealed = await conn.fetchval("SELECT count(*) FROM events WHERE data::text LIKE '%ciphertext%'")
    finally:
        await conn.close()
    assert sealed  # the reporter is in the log, sealed
    assert await places_holding(stack, [PHONE, NAME]) == []  # no table, log or NATS message holds it plain
