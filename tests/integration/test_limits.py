"""Limits on the intake app against real PostgreSQL and NATS: bodies over the cap get 413 and
floods get 429 with Retry-After, both as problem+json, for bearer and signed callers alike.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiohttp import web
from msgspec.structs import replace

from services.intake.app import spec
from shared.base.config import Settings
from shared.personal.pii import new_key
from shared.runtime.service import build
from shared.web.auth import Role
from tests.conftest import Database
from tests.e2e.client import bearer
from tests.integration.conftest import Client
from tests.signed import registered_backend, signed_call

SECRET = "limits-test-secret-of-32-bytes-or-more"


@pytest.fixture
def app(settings: Settings) -> web.Application:
    limited = replace(
        settings,
        jwt_secret=SECRET,
        pii_key=new_key(),
        blind_index_key=new_key(),
        rate_per_second=0.001,  # no refill while the test runs: the burst, however slowly the requests go
        rate_burst=10,
    )
    return build(limited, spec(limited))


async def test_a_flood_from_one_caller_gets_429_with_retry_after_and_others_are_unaffected(
    client: Client,
) -> None:
    flooder = bearer(SECRET, Role.DISPATCHER, "flooder")
    responses = await asyncio.gather(*(client.get("/v1/cases", headers=flooder) for _ in range(40)))
    statuses = Counter(r.status for r in responses)
    assert statuses[200] == 10 and statuses[429] == 30, statuses
    refused = next(r for r in responses if r.status == 429)
    assert refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["status"] == 429
    assert (await client.get("/v1/cases", headers=bearer(SECRET, Role.DISPATCHER, "someone-else"))).status == 200


async def test_an_oversized_body_is_413_problem_json_signed_or_not(client: Client, database: Database) -> None:
    huge = {"source": "citizen", "category": "pothole", "location": {"grid": "g"}, "description": "x" * 70_000}
    response = await client.post("/v1/reports", json=huge, headers=bearer(SECRET, Role.DISPATCHER, "d"))
    assert response.status == 413 and response.content_type == "application/problem+json"
    backend = await registered_backend(database.owner_url, "wechat")
    signed = await signed_call(client, backend, "POST", "/v1/reports", huge)
    assert signed.status == 413 and signed.content_type == "application/problem+json"
    body = await signed.text()
    assert "Traceback" not in body and "File " not in body
