"""Found by schemathesis: text PostgreSQL cannot store (NUL) and numbers its columns cannot hold are 4xx, not 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.intake.api import CaseQuery, ReportIn
from shared.web.http import decode_body, json_response, parse_query, problems_middleware


class Query(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: str | None = None


async def echo_body(request: web.Request) -> web.Response:
    return json_response(await decode_body(request, ReportIn))


async def echo_query(request: web.Request) -> web.Response:
    return json_response(parse_query(request, Query))


async def case_query(request: web.Request) -> web.Response:
    return json_response(parse_query(request, CaseQuery))


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application(middlewares=[problems_middleware])
    app.router.add_post("/body", echo_body)
    app.router.add_get("/query", echo_query)
    app.router.add_get("/case", case_query)
    async with TestClient(TestServer(app)) as client:
        yield client


def report(alarm: str) -> bytes:
    body = {"source": "sensor", "category": "smoke", "location": {"grid": "g1"}, "device": {"id": "d1", "alarm": alarm}}
    return msgspec.json.encode(body)


async def test_a_nul_character_in_a_body_is_refused_as_invalid(client: TestClient[Any, Any]) -> None:
    response = await client.post("/body", data=report("a\x00b"), headers={"Content-Type": "application/json"})
    assert response.status == 422
    assert response.content_type == "application/problem+json"


async def test_an_escaped_backslash_before_u0000_is_ordinary_text(client: TestClient[Any, Any]) -> None:
    response = await client.post("/body", data=report("a\\u0000b"), headers={"Content-Type": "application/json"})
    assert response.status == 200
    assert (await response.json())["device"]["alarm"] == "a\\u0000b"


async def test_a_nul_character_in_a_query_parameter_is_a_bad_request(client: TestClient[Any, Any]) -> None:
    response = await client.get("/query", params={"status": "open\x00"})
    assert response.status == 400
    assert response.content_type == "application/problem+json"


async def test_a_case_version_past_the_integer_column_is_a_bad_request(client: TestClient[Any, Any]) -> None:
    response = await client.get("/case", params={"version": "1037201893231791439872"})
    assert response.status == 400
    assert (await client.get("/case", params={"version": str(2**31 - 1)})).status == 200
