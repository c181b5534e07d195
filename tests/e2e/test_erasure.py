"""Personal data over the running system: purpose-bound unmasked reads recorded for auditors,
erasure that leaves history intact, and a per-reporter daily limit found by blind index.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import pytest

from ops.stack import Stack
from shared.audit.chain import stream_findings
from shared.personal.erasure import erase_reporter
from shared.personal.pii import Vault
from shared.store.eventstore import EventStore, case_stream
from shared.web.auth import Role
from tests.e2e.client import Api
from tests.e2e.plaintext import places_holding
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
PHONE, NAME = "13700001111", "王小红"


async def reporter_ref(stack: Stack, case_id: str) -> UUID:
    store_pool = await asyncpg.create_pool(stack.env["DATABASE_URL"], min_size=1, max_size=2)
    assert store_pool is not None
    try:
        [row] = await EventStore(store_pool).read_stream(case_stream(UUID(case_id)), to_version=1)
        case_event = row.event()
        assert case_event.reporter is not None  # type: ignore[union-attr]
        return case_event.reporter.ref  # type: ignore[union-attr]
    finally:
        await store_pool.close()


async def test_staff_read_unmasked_only_with_a_purpose_and_auditors_see_who_did(api: Api) -> None:
    case_id = await api.report("pothole", reporter={"name": NAME, "phone": PHONE})
    path = f"/v1/cases/{case_id}"
    _, masked = await api.call("GET", "intake", path, token=api.dispatcher())
    assert masked["reporter"] == {"name": "王**", "phone": "137****1111"}
    _, plain = await api.call("GET", "intake", path, token=api.dispatcher(), headers={"X-Purpose": "回访核实"})
    assert plain["reporter"] == {"name": NAME, "phone": PHONE}
    _, own = await api.call("GET", "intake", path, token=api.backend(), headers={"X-Purpose": "通知报告人"})
    assert own["reporter"]["phone"] == PHONE
    _, auditor = await api.call("GET", "intake", path, token=api.token(Role.AUDITOR), headers={"X-Purpose": "x"})
    assert auditor["reporter"]["phone"] == "137****1111"  # auditors read, never unmasked

    status, reads = await api.call("GET", "intake", f"/v1/pii-reads?case_id={case_id}", token=api.token(Role.AUDITOR))
    assert status == 200
    assert [(r["actor"], r["purpose"]) for r in reads["items"]] == [
        ("reporter_backend:wechat-miniprogram", "通知报告人"),
        ("dispatcher:dispatcher-1", "回访核实"),
    ]
    denied, _ = await api.call("GET", "intake", "/v1/pii-reads", token=api.dispatcher())
    assert denied == 403


async def test_erasing_a_reporter_makes_their_data_unreadable_and_keeps_every_chain(api: Api, stack: Stack) -> None:
    phone = "13811112222"
    first = await api.report("pothole", reporter={"name": "赵六", "phone": phone})
    second = await api.report("blocked_drain", reporter={"name": "赵六", "phone": phone})
    ref = await reporter_ref(stack, first)
    assert ref == await reporter_ref(stack, second)  # the same reporter, found by blind index

    pool = await asyncpg.create_pool(stack.env["DATABASE_URL"], min_size=1, max_size=2)
    assert pool is not None
    try:
        erased, cases = await erase_reporter(pool, ref, actor="operator:test")
        assert erased and sorted(map(str, cases)) == sorted([first, second])
        assert await erase_reporter(pool, ref, actor="operator:test") == (False, [])  # idempotent
        store = EventStore(pool)
        vault = Vault(stack.env["PII_KEY"], stack.env["BLIND_INDEX_KEY"])
        for case_id in (first, second):
            rows = await store.read_stream(case_stream(UUID(case_id)))
            assert rows[-1].type == "ReporterErased" or "ReporterErased" in [r.type for r in rows]
            assert stream_findings(rows) == []  # history untouched, the chain still verifies
            sealed = rows[0].event().reporter  # type: ignore[union-attr]
            async with pool.acquire() as conn:
                assert await vault.unseal(conn, sealed) is None  # no key: decryption is impossible
    finally:
        await pool.close()

    for case_id in (first, second):
        headers = {"X-Purpose": "通知报告人"}
        _, view = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.backend(), headers=headers)
        assert view["reporter"] is None and view["reporter_erased"] is True

    async def projected() -> bool:
        _, page = await api.call("GET", "intake", "/v1/cases?page_size=100", token=api.dispatcher())
        versions = {i["id"]: i["version"] for i in page["items"]}
        return all(versions.get(c, 0) >= 2 for c in (first, second))

    await eventually(projected, timeout=15)
    assert await places_holding(stack, [phone, "赵六"]) == []


async def test_the_same_phone_is_limited_per_day_by_blind_index(api: Api) -> None:
    phone = "13999990000"
    body = {
        "source": "citizen",
        "category": "pothole",
        "location": {"grid": "wenfeng-tianehu-01"},
        "reporter": {"phone": phone},
    }
    statuses = []
    for _ in range(21):
        status, answer = await api.call("POST", "intake", "/v1/reports", token=api.backend(), json=body)
        statuses.append(status)
    assert statuses == [201] * 20 + [429]
    assert answer["status"] == 429 and answer["type"].endswith("rate-limited")
