"""A thousand bad signed calls against the running intake: tampered, replayed, expired, skewed,
unsigned, wrong-key, unknown, revoked, partial. Every one is 401 problem+json (429 once the
attacker's address has used up its budget of failed authentications), none a 5xx, and none
writes anything.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from http_message_signatures import HTTPMessageSigner, algorithms

from ops.stack import Stack
from shared.web import backends
from shared.web.auth import Role
from shared.web.signing import BackendKey, _OneKey, _Request, new_private_key, sign_request
from tests.e2e.client import Api
from tests.signed import registered_backend

pytestmark = pytest.mark.e2e
REPORT = {"source": "citizen", "category": "pothole", "description": "签名", "location": {"grid": "wenfeng-tianehu-01"}}
Sent = tuple[str, str, bytes, dict[str, str]]  # method, url, body, headers


def _flip(text: str) -> str:
    """Change one character of a header value inside its base64."""
    head, _, rest = text.partition(":")
    middle = len(rest) // 2
    swapped = "A" if rest[middle] != "A" else "B"
    return f"{head}:{rest[:middle]}{swapped}{rest[middle + 1 :]}"


class Attacker:
    def __init__(self, api: Api, good: BackendKey, revoked: BackendKey) -> None:
        self.api = api
        self.good = good
        self.revoked = revoked
        self.url = api.info.urls["intake"] + "/v1/reports"
        self.body = msgspec.json.encode(REPORT)

    def signed(self, key: BackendKey | None = None, **options: Any) -> dict[str, str]:
        key = key or self.good
        headers = {"Content-Type": "application/json", "Idempotency-Key": options.pop("idem", "k-1")}
        return sign_request("POST", self.url, headers, self.body, key.key_id, key.private_key(), **options)

    def tampered_body(self) -> Sent:
        return "POST", self.url, self.body.replace(b"pothole", b"garbage"), self.signed()

    def tampered_signature(self) -> Sent:
        headers = self.signed()
        headers["Signature"] = _flip(headers["Signature"])
        return "POST", self.url, self.body, headers

    def tampered_target(self) -> Sent:
        return "POST", self.api.info.urls["intake"] + "/v1/reports?x=1", self.body, self.signed()

    def tampered_idempotency_key(self) -> Sent:
        headers = self.signed()
        headers["Idempotency-Key"] = "k-2"
        return "POST", self.url, self.body, headers

    def expired(self) -> Sent:
        return "POST", self.url, self.body, self.signed(created=datetime.now(UTC) - timedelta(seconds=400))

    def skewed(self) -> Sent:
        return "POST", self.url, self.body, self.signed(created=datetime.now(UTC) + timedelta(seconds=400))

    def unsigned_bearer(self) -> Sent:
        token = self.api.token(Role.REPORTER_BACKEND, sub="wechat-miniprogram")
        return "POST", self.url, self.body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def unsigned(self) -> Sent:
        return "POST", self.url, self.body, {"Content-Type": "application/json"}

    def wrong_key(self) -> Sent:
        impostor = new_private_key()
        headers = {"Content-Type": "application/json"}
        return (
            "POST",
            self.url,
            self.body,
            sign_request("POST", self.url, headers, self.body, self.good.key_id, impostor),
        )

    def unknown_key(self) -> Sent:
        headers = {"Content-Type": "application/json"}
        return (
            "POST",
            self.url,
            self.body,
            sign_request("POST", self.url, headers, self.body, "nobody", new_private_key()),
        )

    def revoked_key(self) -> Sent:
        return "POST", self.url, self.body, self.signed(self.revoked)

    def no_nonce(self) -> Sent:
        return "POST", self.url, self.body, self.signed(nonce="")

    def digest_not_covered(self) -> Sent:
        request = _Request("POST", self.url, {"Content-Type": "application/json"})
        signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(self.good.private_key())
        )
        signer.sign(
            request,
            key_id=self.good.key_id,
            nonce=str(time.time_ns()),
            covered_component_ids=("@method", "@target-uri"),
        )
        return "POST", self.url, self.body, request.headers

    def garbage(self) -> Sent:
        headers = self.signed()
        headers["Signature-Input"] = 'caseloop=("@method";keyid=1'
        return "POST", self.url, self.body, headers

    def two_signatures(self) -> Sent:
        headers = self.signed()
        other = self.signed(idem="k-1")
        headers["Signature-Input"] += ", " + other["Signature-Input"].replace("caseloop=", "second=")
        headers["Signature"] += ", " + other["Signature"].replace("caseloop=", "second=")
        return "POST", self.url, self.body, headers

    def huge_nonce(self) -> Sent:
        return "POST", self.url, self.body, self.signed(nonce=base64.b64encode(b"n" * 300).decode())

    def kinds(self) -> list[Callable[[], Sent]]:
        return [
            self.tampered_body, self.tampered_signature, self.tampered_target, self.tampered_idempotency_key,
            self.expired, self.skewed, self.unsigned_bearer, self.unsigned, self.wrong_key, self.unknown_key,
            self.revoked_key, self.no_nonce, self.digest_not_covered, self.garbage, self.two_signatures,
            self.huge_nonce,
        ]  # fmt: skip


async def events_count(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.env["ADMIN_DATABASE_URL"])
    try:
        # Events written for callers (the services' own reactions to the good call are not theirs).
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE metadata->>'actor' NOT LIKE 'service:%'"))
    finally:
        await conn.close()


async def test_a_thousand_bad_signed_calls_are_all_401_and_write_nothing(api: Api, stack: Stack) -> None:
    owner = stack.env["ADMIN_DATABASE_URL"]
    revoked = await registered_backend(owner, "retired-backend")
    conn = await asyncpg.connect(owner)
    try:
        await backends.revoke(conn, revoked.key_id)
    finally:
        await conn.close()
    attacker = Attacker(api, api.backend(), revoked)

    # A correct call goes through; replaying its exact bytes does not.
    url, body = attacker.url, attacker.body
    headers = attacker.signed(idem="first-and-only")
    assert (await api.session.post(url, data=body, headers=headers)).status == 201
    before = await events_count(stack)

    gate = asyncio.Semaphore(16)
    statuses: Counter[tuple[str, int]] = Counter()

    async def send(kind: str, make: Callable[[], Sent]) -> None:
        method, target, data, sent_headers = make()
        async with gate, attacks.request(method, target, data=data, headers=sent_headers) as response:
            answer = await response.read()
            statuses[(kind, response.status)] += 1
            assert response.content_type == "application/problem+json", answer
            if response.status == 429:
                assert response.headers["RateLimit-Policy"].startswith('"failed-auth"'), answer

    # The attacker's own address: its budget of failures is its own, not the other tests' (127.0.0.1).
    attacks = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))

    def replay() -> Sent:
        return "POST", url, body, headers

    kinds = [(k.__name__, k) for k in attacker.kinds()] + [("replayed", replay)]
    plan = list(itertools.islice(itertools.cycle(kinds), 1000))
    async with attacks:
        await asyncio.gather(*(send(name, make) for name, make in plan))

    assert sum(statuses.values()) == 1000
    assert {status for _, status in statuses} == {401, 429}, statuses
    assert await events_count(stack) == before


async def test_a_signed_get_with_a_query_and_an_empty_body_is_accepted_once(api: Api) -> None:
    key = api.backend()
    url = api.info.urls["intake"] + "/v1/cases?page_size=5"
    headers = sign_request("GET", url, {}, b"", key.key_id, key.private_key())
    async with api.session.get(url, headers=headers) as first:
        assert first.status == 200
    async with api.session.get(url, headers=headers) as again:
        assert again.status == 401
        assert (await again.json())["detail"] == "nonce already used"
