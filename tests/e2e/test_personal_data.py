"""A reporter's phone number never appears in plaintext: not in the log, the logs, or on NATS; and
every response that shows a reporter follows one rule for unmasking and recording."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from ops.stack import Stack
from shared.web.auth import Role
from shared.web.signing import BackendKey
from tests.e2e.client import Api
from tests.e2e.plaintext import places_holding

pytestmark = pytest.mark.e2e
PHONE = "13912345678"
NAME = "李小明"
GRID = "wenfeng-tianehu-01"
# Who GET /v1/cases/{id} shows the reporter unmasked when a purpose is stated (and records it).
UNMASK_WITH_A_PURPOSE = {"own backend", "dispatcher", "supervisor", "auditor with the pii grant"}


async def test_a_phone_number_stays_sealed_everywhere_and_is_masked_for_handlers(api: Api, stack: Stack) -> None:
    case_id = await api.report("pothole", reporter={"name": NAME, "phone": PHONE})
    [task] = await api.open_tasks(case_id, 1)
    await api.work(task)
    await api.verify(case_id, passed=True)
    await api.wait_status(case_id, "closed")

    handler_view = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.handler(task["department"]))
    assert handler_view[1]["reporter"] == {"name": "李**", "phone": "139****5678"}
    _, backend_view = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.backend())
    assert backend_view["reporter"] == {"name": "李**", "phone": "139****5678"}  # no purpose stated
    headers = {"X-Purpose": "通知报告人"}
    _, backend_view = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.backend(), headers=headers)
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


async def pii_reads(api: Api, case_id: str) -> list[tuple[str, str]]:
    status, page = await api.call("GET", "intake", f"/v1/pii-reads?case_id={case_id}", token=api.token(Role.AUDITOR))
    assert status == 200, page
    return [(r["actor"], r["purpose"]) for r in reversed(page["items"])]


async def test_history_shows_the_reporter_exactly_as_the_case_does_and_records_the_same_reads(api: Api) -> None:
    case_id = await api.report("pothole", grid=GRID, reporter={"name": NAME, "phone": PHONE})
    [task] = await api.open_tasks(case_id, 1)
    callers: dict[str, str | BackendKey] = {
        "own backend": api.backend(),
        "handler": api.handler(task["department"]),
        "grid worker": api.grid_worker(GRID),
        "dispatcher": api.dispatcher(),
        "supervisor": api.token(Role.SUPERVISOR),
        "auditor": api.token(Role.AUDITOR),
        "auditor with the pii grant": api.token(Role.AUDITOR, "auditor-pii", pii=True),
        "handler with the pii grant": api.token(Role.HANDLER, "h-pii", department=task["department"], pii=True),
    }
    for who, caller in callers.items():
        for purpose in (None, "回访核实"):
            headers = {"X-Purpose": purpose} if purpose else {}
            where = f"{who}, purpose {purpose!r}"
            before = await pii_reads(api, case_id)
            status, case = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=caller, headers=headers)
            assert status == 200, (where, case)
            after_case = await pii_reads(api, case_id)
            status, history = await api.call(
                "GET", "intake", f"/v1/cases/{case_id}/history", token=caller, headers=headers
            )
            assert status == 200, (where, history)
            after_history = await pii_reads(api, case_id)

            reported = history["events"][0]
            assert reported["type"] == "CaseReported" and len(reported["hash"]) == 64, where
            shown: dict[str, Any] = reported["data"]["reporter"]
            unmasked = case["reporter"] == {"name": NAME, "phone": PHONE}
            assert {"name": shown["name"], "phone": shown["phone"]} == case["reporter"], where
            assert shown["masked"] is not unmasked, where
            if not unmasked:
                assert case["reporter"] == {"name": "李**", "phone": "139****5678"}, where
            # Without a purpose nobody unmasks, the reporting backend included; with one, exactly
            # the roles the case itself allows; the pii grant alone adds nothing.
            expected = purpose is not None and who in UNMASK_WITH_A_PURPOSE
            assert unmasked is expected, where
            # Each unmasked response leaves one record, the history's as well as the case's.
            assert len(after_case) - len(before) == len(after_history) - len(after_case) == int(unmasked), where
            if unmasked:
                actor, recorded = after_history[-1]
                assert recorded == purpose and actor == after_case[-1][0], where
