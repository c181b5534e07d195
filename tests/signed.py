"""Signed calls in tests: a backend's key pair registered in the test database, and requests it signs."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from shared.web import backends
from shared.web.signing import BackendKey, new_private_key, private_pem, public_pem, raw_public_key, sign_request


async def registered_backend(owner_url: str, sub: str) -> BackendKey:
    """A fresh Ed25519 key for backend `sub`, its public half registered (as the schema's owner)."""
    key = new_private_key()
    conn = await asyncpg.connect(owner_url)
    try:
        key_id = await backends.register(conn, sub=sub, public_key=raw_public_key(public_pem(key)))
    finally:
        await conn.close()
    return BackendKey(key_id=key_id, private_pem=private_pem(key).decode())


async def signed_call(
    client: TestClient[Any, Any], key: BackendKey, method: str, path: str, body: Any = None, **headers: str
) -> ClientResponse:
    data = msgspec.json.encode(body) if body is not None else b""
    url = str(client.make_url(path))
    all_headers = sign_request(
        method, url, {"Content-Type": "application/json", **headers}, data, key.key_id, key.private_key()
    )
    return await client.request(method, path, data=data or None, headers=all_headers)
