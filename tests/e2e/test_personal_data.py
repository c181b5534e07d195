"""A reporter's phone number never appears in plaintext: not in the log, the logs, or on NATS."""

from __future__ import annotations

import asyncpg
import nats
import pytest

from shared.auth import Role
from shared.stack import Stack
from tests.e2e.client import Api

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
        rows = await conn.fetch("SELECT data::text AS data FROM events")
        views = await conn.fetch("SELECT row_to_json(v)::text AS row FROM case_view v")
    finally:
        await conn.close()
    assert rows and not [r for r in rows if PHONE in r["data"] or NAME in r["data"]]
    assert not [v for v in views if PHONE in v["row"]]

    for log in (stack.root / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert PHONE not in text and NAME not in text, log.name

    nc = await nats.connect(stack.env["NATS_URL"], **stack.nats_admin)
    try:
        js = nc.jetstream()
        stream = stack.env["NATS_STREAM"]
        info = await js.stream_info(stream)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            assert PHONE.encode() not in msg.data and NAME.encode() not in msg.data
            assert PHONE not in str(msg.headers)
    finally:
        await nc.close()
