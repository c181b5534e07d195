"""POST /v1/reports on the intake app against real PostgreSQL and NATS, down its short paths: a
plain report is one append, a reporter is counted and sealed in one statement, and a signed
call is one statement with a remembered key, none of them weaker for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from aiohttp import web
from msgspec.structs import replace

from services.intake.app import spec
from shared.base.config import Settings
from shared.personal.pii import Vault, new_key
from shared.runtime.service import CLOCK, build
from shared.store.eventstore import EventStore, case_stream
from shared.web import backends
from shared.web.auth import Role
from shared.web.ratelimit import reporter_day
from shared.web.signing import BackendKey, new_private_key, private_pem, public_pem, raw_public_key, sign_request
from tests.conftest import Database
from tests.e2e.client import bearer
from tests.eventually import eventually
from tests.integration.conftest import Client
from tests.signed import registered_backend, signed_call

SECRET = "reports-test-secret-of-32-bytes-or-more"
LIMIT = 5
GRID = "wenfeng-tianehu-01"
DISPATCHER = bearer(SECRET, Role.DISPATCHER, "d-1")


@pytest.fixture
def configured(settings: Settings) -> Settings:
    return replace(
        settings, jwt_secret=SECRET, pii_key=new_key(), blind_index_key=new_key(), reporter_daily_limit=LIMIT
    )


@pytest.fixture
def app(configured: Settings) -> web.Application:
    return build(configured, spec(configured))


@pytest.fixture
async def owner(database: Database) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database.owner_url)
    yield conn
    await conn.close()


def report(**extra: Any) -> dict[str, Any]:
    return {"source": "citizen", "category": "pothole", "location": {"grid": GRID}, **extra}


async def stream_of(database: Database, case_id: str) -> list[Any]:
    pool = await asyncpg.create_pool(database.url, min_size=1, max_size=1)
    assert pool is not None
    try:
        return await EventStore(pool).read_stream(case_stream(UUID(case_id)))
    finally:
        await pool.close()


async def test_a_report_without_idempotency_key_is_stored_once_and_readable(client: Client, database: Database) -> None:
    response = await client.post("/v1/reports", json=report(), headers=DISPATCHER)
    assert response.status == 201
    accepted = await response.json()
    assert accepted["version"] == 1 and response.headers["Location"] == f"/v1/cases/{accepted['case_id']}"
    [stored] = await stream_of(database, accepted["case_id"])
    assert stored.type == "CaseReported" and stored.metadata.actor == "dispatcher:d-1"
    read = await client.get(f"/v1/cases/{accepted['case_id']}", headers=DISPATCHER)
    assert read.status == 200 and (await read.json())["version"] == 1


async def test_a_new_reporter_reporting_at_once_gets_one_key_and_the_daily_limit_holds(
    client: Client, database: Database, configured: Settings, owner: asyncpg.Connection
) -> None:
    body = report(reporter={"name": "李雷", "phone": "+86 139 0000 1234"})
    first = await asyncio.gather(*(client.post("/v1/reports", json=body, headers=DISPATCHER) for _ in range(LIMIT)))
    assert [r.status for r in first] == [201] * LIMIT
    cases = [(await r.json())["case_id"] for r in first]
    refs = {(await stream_of(database, c))[0].event().reporter.ref for c in cases}
    index = Vault(configured.pii_key, configured.blind_index_key).phone_index("13900001234")
    assert refs == {await owner.fetchval("SELECT ref FROM reporter_keys WHERE phone_index = $1", index)}

    refused = await client.post("/v1/reports", json=body, headers=DISPATCHER)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["type"].endswith("rate-limited")
    assert await owner.fetchval("SELECT sum(reports) FROM reporter_quota WHERE phone_index = $1", index) == LIMIT + 1

    purpose = {**DISPATCHER, "X-Purpose": "回访"}
    read = await client.get(f"/v1/cases/{cases[0]}", headers=purpose)
    assert (await read.json())["reporter"] == {"name": "李雷", "phone": "+86 139 0000 1234"}


async def test_a_phone_past_the_limit_gets_no_key(
    client: Client, configured: Settings, owner: asyncpg.Connection
) -> None:
    clock_now = client.app[CLOCK]()
    index = Vault(configured.pii_key, configured.blind_index_key).phone_index("13700009999")
    await owner.execute(
        "INSERT INTO reporter_quota (phone_index, day, reports) VALUES ($1, $2, $3)",
        index,
        reporter_day(clock_now),
        LIMIT,
    )
    body = report(reporter={"phone": "13700009999"})
    assert (await client.post("/v1/reports", json=body, headers=DISPATCHER)).status == 429
    assert await owner.fetchval("SELECT count(*) FROM reporter_keys WHERE phone_index = $1", index) == 0


async def test_a_remembered_backend_key_still_refuses_replays_and_revocation_at_once(
    client: Client, database: Database, owner: asyncpg.Connection
) -> None:
    backend = await registered_backend(database.owner_url, "wechat")
    assert (await signed_call(client, backend, "POST", "/v1/reports", report())).status == 201  # remembered now
    body = b'{"source": "citizen", "category": "pothole", "location": {"grid": "g"}}'
    url = str(client.make_url("/v1/reports"))
    headers = sign_request(
        "POST", url, {"Content-Type": "application/json"}, body, backend.key_id, backend.private_key()
    )
    assert (await client.post("/v1/reports", data=body, headers=headers)).status == 201
    again = await client.post("/v1/reports", data=body, headers=headers)
    assert again.status == 401 and (await again.json())["detail"] == "nonce already used"

    await backends.revoke(owner, backend.key_id)
    nonces = await owner.fetchval("SELECT count(*) FROM signature_nonces")
    revoked = await signed_call(client, backend, "POST", "/v1/reports", report())
    assert revoked.status == 401 and (await revoked.json())["detail"] == "unknown or revoked signing key"
    assert await owner.fetchval("SELECT count(*) FROM signature_nonces") == nonces  # nothing stored for it


async def test_a_key_id_registered_anew_with_another_key_is_looked_up_again(
    client: Client, owner: asyncpg.Connection
) -> None:
    old, new = new_private_key(), new_private_key()
    await backends.register(owner, sub="alipay", public_key=raw_public_key(public_pem(old)), key_id="alipay-1")
    old_key = BackendKey(key_id="alipay-1", private_pem=private_pem(old).decode())
    assert (await signed_call(client, old_key, "POST", "/v1/reports", report())).status == 201

    await owner.execute("DELETE FROM backend_keys WHERE keyid = 'alipay-1'")
    await backends.register(owner, sub="alipay", public_key=raw_public_key(public_pem(new)), key_id="alipay-1")
    new_key_ = BackendKey(key_id="alipay-1", private_pem=private_pem(new).decode())
    assert (await signed_call(client, new_key_, "POST", "/v1/reports", report())).status == 201
    stale = await signed_call(client, old_key, "POST", "/v1/reports", report())
    assert stale.status == 401


async def test_expired_nonces_are_pruned_beside_the_requests_at_most_once_a_period(
    client: Client, database: Database, owner: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await registered_backend(database.owner_url, "wechat")

    async def expired_nonce(nonce: str) -> None:
        await owner.execute(
            "INSERT INTO signature_nonces VALUES ($1, $2, now() - interval '1 second')", backend.key_id, nonce
        )

    async def still_there(nonce: str) -> bool:
        return bool(await owner.fetchval("SELECT true FROM signature_nonces WHERE nonce = $1", nonce))

    started: list[object] = []  # prunes begun: each is decided inside the request, before its answer
    prune = backends._prune

    def counted(pool: object) -> object:
        started.append(pool)
        return prune(pool)  # type: ignore[arg-type]

    monkeypatch.setattr(backends, "_prune", counted)

    await expired_nonce("old-1")
    assert (await signed_call(client, backend, "GET", "/v1/cases")).status == 200  # the first call prunes
    await eventually(lambda: _not(still_there("old-1")))

    await expired_nonce("old-2")
    assert (await signed_call(client, backend, "GET", "/v1/cases")).status == 200
    assert len(started) == 1  # within PRUNE_EVERY: not again
    assert await still_there("old-2")

    monkeypatch.setattr(backends, "PRUNE_EVERY", 0.0)
    assert (await signed_call(client, backend, "GET", "/v1/cases")).status == 200
    await eventually(lambda: _not(still_there("old-2")))


async def _not(check: Any) -> bool:
    return not await check
