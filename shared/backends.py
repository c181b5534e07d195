"""Mini-program backends as callers: their registered public keys, and checking a signed request.

A request is accepted when its RFC 9421 signature verifies with a registered, unrevoked
Ed25519 key; it covers `@method`, `@target-uri`, `content-digest` (which matches the body)
and `idempotency-key` when one is sent; `created` is within ±300 s of our clock; and its
`nonce` was never seen before (kept in `signature_nonces` until the signature could no
longer be fresh). Anything else is 401, never a 5xx.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

import asyncpg
import http_sf
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

from shared.auth import Principal, Role, unauthorized
from shared.signing import covered_components

MAX_SKEW = 300  # seconds either side of our clock
# A signature is fresh until created + MAX_SKEW, and created may be MAX_SKEW ahead: keep
# each nonce past the latest moment its signature could still be accepted.
NONCE_TTL = timedelta(seconds=2 * MAX_SKEW + 60)
MAX_NONCE = 128
PRUNE_EVERY = 60.0


class _Message:
    def __init__(self, method: str, url: str, headers: Any) -> None:
        self.method = method
        self.url = url
        self.headers = headers


class _PublicKey(HTTPSignatureKeyResolver):
    def __init__(self, raw: bytes) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(raw)

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        return self._key


def key_id_of(signature_input: str) -> str:
    """The `keyid` of the one signature in a Signature-Input field (ValueError otherwise)."""
    parsed: Any = http_sf.parse(signature_input.encode(), tltype="dictionary")
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise ValueError("exactly one signature is expected")
    [(_, params)] = parsed.values()
    key_id = params.get("keyid") if isinstance(params, dict) else None
    if not isinstance(key_id, str) or not 0 < len(key_id) <= 128:
        raise ValueError("keyid missing")
    return key_id


class SignedCallers:
    """The verifier a service's auth middleware calls for requests that carry a signature."""

    def __init__(self) -> None:
        self._pruned = 0.0

    async def authenticate(self, request: web.Request, pool: asyncpg.Pool) -> Principal:
        try:
            key_id = key_id_of(request.headers.get("Signature-Input", ""))
        except Exception:
            raise unauthorized("malformed Signature-Input") from None
        row = await pool.fetchrow(
            "SELECT sub, public_key FROM backend_keys WHERE keyid = $1 AND revoked_at IS NULL", key_id
        )
        if row is None:
            raise unauthorized("unknown or revoked signing key")
        body = await request.read()  # past client_max_size: 413
        nonce = self._verify(request, bytes(row["public_key"]), body)
        await self._remember(pool, key_id, nonce)
        return Principal(sub=row["sub"], role=Role.REPORTER_BACKEND)

    @staticmethod
    def _verify(request: web.Request, public_key: bytes, body: bytes) -> str:
        # The target URI as the client sent it: the raw path keeps its exact encoding.
        message = _Message(request.method, f"{request.scheme}://{request.host}{request.raw_path}", request.headers)
        verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=_PublicKey(public_key))
        verifier.max_clock_skew = timedelta(seconds=MAX_SKEW)
        try:
            [result] = verifier.verify(
                message,
                max_age=timedelta(0),  # with the skew: created within ±MAX_SKEW of now
                require_components=covered_components(request.headers),
                body=body,
            )
        except Exception:
            # Tampered, expired, skewed, wrong key, missing components: all the same to the caller.
            raise unauthorized("invalid signature") from None
        if result.body is None and body:
            raise unauthorized("the body must be covered by content-digest")
        nonce = result.nonce
        if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE:
            raise unauthorized("a signature needs a nonce")
        return nonce

    async def _remember(self, pool: asyncpg.Pool, key_id: str, nonce: str) -> None:
        now = time.monotonic()
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            await pool.execute("DELETE FROM signature_nonces WHERE expires_at < now()")
        fresh = await pool.fetchval(
            """INSERT INTO signature_nonces (keyid, nonce, expires_at) VALUES ($1, $2, now() + $3::interval)
               ON CONFLICT DO NOTHING RETURNING true""",
            key_id,
            nonce,
            NONCE_TTL,
        )
        if not fresh:
            raise unauthorized("nonce already used")


def default_key_id(sub: str, public_key: bytes) -> str:
    return f"{sub}-{hashlib.sha256(public_key).hexdigest()[:12]}"


async def register(conn: Any, *, sub: str, public_key: bytes, key_id: str | None = None) -> str:
    """Store a backend's public key (idempotent for the same key); returns its key id."""
    key_id = key_id or default_key_id(sub, public_key)
    stored = await conn.fetchval(
        """INSERT INTO backend_keys (keyid, sub, public_key) VALUES ($1, $2, $3)
           ON CONFLICT (keyid) DO UPDATE SET keyid = excluded.keyid
           WHERE backend_keys.sub = excluded.sub AND backend_keys.public_key = excluded.public_key
           RETURNING keyid""",
        key_id,
        sub,
        public_key,
    )
    if stored is None:
        raise ValueError(f"key id {key_id} is taken by another key")
    return str(stored)


async def revoke(conn: Any, key_id: str) -> bool:
    revoked = await conn.fetchval(
        "UPDATE backend_keys SET revoked_at = now() WHERE keyid = $1 AND revoked_at IS NULL RETURNING true", key_id
    )
    return bool(revoked)
