"""The edges of every service's HTTP surface, on intake's app against real PostgreSQL and NATS:
requests aiohttp refuses before any application code runs, the Server header, bodies that
cannot be unframed, and the budget of failed authentications (repeated keys and parameters:
test_decoders).
"""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import msgspec
import pytest
from aiohttp import web
from msgspec.structs import replace

from services.intake.app import spec
from shared.base.config import Settings
from shared.personal.pii import new_key
from shared.runtime.service import build
from shared.web.auth import Role
from shared.web.http import SERVER
from tests.e2e.client import bearer
from tests.integration.conftest import Client

SECRET = "http-edges-test-secret-of-32-bytes-or-more"
BURST = 3
DISPATCHER = bearer(SECRET, Role.DISPATCHER, "d-1")
MARKER = "ECHO-MARKER"  # sent inside every malformed request: no answer may contain it


@pytest.fixture
def app(settings: Settings) -> web.Application:
    edged = replace(
        settings,
        jwt_secret=SECRET,
        pii_key=new_key(),
        blind_index_key=new_key(),
        auth_failure_burst=BURST,
        auth_failure_rate=0.001,  # no refill while the test runs
    )
    return build(edged, spec(edged))


class Raw(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes
    text: str


async def raw(host: str, port: int, request: bytes) -> Raw:
    """Send bytes as they are; read one answer (its head, then Content-Length bytes)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        status_line, *lines = head.decode("latin-1").strip().split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout=10)
    finally:
        writer.close()
    text = (head + body).decode("latin-1")
    return Raw(status=int(status_line.split()[1]), headers=headers, body=body, text=text)


MALFORMED = {
    "header-too-long": b"GET /v1/cases HTTP/1.1\r\nHost: x\r\nX-Long: " + MARKER.encode() * 1000 + b"\r\n\r\n",
    "request-line-too-long": b"GET /v1/" + MARKER.encode() * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "too-many-headers": b"GET /v1/cases HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: %s\r\n" % (i, MARKER.encode()) for i in range(200))
    + b"\r\n",
    "space-in-a-header-name": b"GET /v1/cases HTTP/1.1\r\nHost: x\r\nX " + MARKER.encode() + b": v\r\n\r\n",
    "control-character-in-a-value": b"GET /v1/cases HTTP/1.1\r\nHost: x\r\nX-V: \x01" + MARKER.encode() + b"\r\n\r\n",
    "folded-header": b"GET /v1/cases HTTP/1.1\r\nHost: x\r\nX-V: a\r\n " + MARKER.encode() + b"\r\n\r\n",
    "bad-content-length": b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: 1" + MARKER.encode() + b"\r\n\r\n",
    "unknown-transfer-encoding": b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
    + MARKER.encode()
    + b"\r\n\r\n",
    "bad-chunk-size": b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    + MARKER.encode()
    + b"\r\n",
    "bad-method": b"G" + MARKER.encode() + b"<T /v1/cases HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-version": b"GET /v1/cases HTTP/9." + MARKER.encode() + b"\r\nHost: x\r\n\r\n",
    "space-in-the-target": b"GET /v1/ " + MARKER.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "undecodable-content-encoding": b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
    b"Content-Length: 11\r\n\r\n" + MARKER.encode(),
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_request_aiohttp_refuses_is_400_problem_json_echoing_nothing(client: Client, case: str) -> None:
    answer = await raw(client.server.host, client.server.port, MALFORMED[case])
    assert answer.status == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["server"] == SERVER
    problem = json.loads(answer.body)
    assert (problem["status"], problem["title"]) == (400, "Malformed request")
    assert MARKER not in answer.text and "aiohttp" not in answer.text.lower()


async def test_every_answer_names_the_server_without_a_product_or_version(client: Client) -> None:
    answers = [
        await client.get("/healthz"),  # 200
        await client.get("/openapi.json"),  # 200, public
        await client.get("/v1/cases", headers=DISPATCHER),  # 200, authenticated
        await client.get("/nowhere"),  # 404 from the router
        await client.delete("/v1/cases"),  # 405
        await client.get("/v1/cases"),  # 401
        await client.post("/v1/reports", json={"description": "x" * 70_000}, headers=DISPATCHER),  # 413
        await client.post("/v1/reports", json={"source": "drone"}, headers=DISPATCHER),  # 422
    ]
    assert [a.status for a in answers] == [200, 200, 200, 404, 405, 401, 413, 422]
    for answer in answers:
        assert answer.headers.getall("Server") == [SERVER], answer.status
        assert "aiohttp" not in str(answer.headers).lower() and "python" not in str(answer.headers).lower()


async def test_a_body_aiohttp_cannot_decompress_is_400_problem_json_not_500(client: Client) -> None:
    for encoding, body in [("gzip", b"not gzip at all"), ("deflate", gzip.compress(b"{}"))]:
        response = await client.post(
            "/v1/reports",
            data=body,
            headers={**DISPATCHER, "Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert response.status == 400, await response.text()
        assert response.content_type == "application/problem+json"
        assert (await response.json())["title"] == "Malformed request body"


async def test_failed_authentications_use_up_the_address_budget_then_429_before_any_check(client: Client) -> None:
    remembered = bearer(SECRET, Role.DISPATCHER, "seen-before")
    assert (await client.get("/v1/cases", headers=remembered)).status == 200
    for _ in range(BURST * 3):  # no credentials at all: nothing guessed, nothing counted
        assert (await client.get("/v1/cases")).status == 401

    forged = bearer("not-the-secret-but-long-enough-for-hs256", Role.DISPATCHER, "d-1")
    refused = [await client.get("/v1/cases", headers=forged) for _ in range(BURST)]
    assert [r.status for r in refused] == [401] * BURST
    limited = await client.get("/v1/cases", headers=forged)
    assert limited.status == 429 and limited.content_type == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Policy"].startswith('"failed-auth"')
    assert (await limited.json())["detail"] == "too many failed authentications from this address"

    # From this address nothing new is checked now, a good token included; one already verified costs
    # nothing to check and still passes.
    assert (await client.get("/v1/cases", headers=bearer(SECRET, Role.DISPATCHER, "new-here"))).status == 429
    assert (await client.get("/v1/cases", headers=remembered)).status == 200

    # Another address has its own budget.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as elsewhere:
        url = str(client.make_url("/v1/cases"))
        async with elsewhere.get(url, headers=forged) as other:
            assert other.status == 401
        async with elsewhere.get(url, headers=bearer(SECRET, Role.DISPATCHER, "new-elsewhere")) as good:
            assert good.status == 200
