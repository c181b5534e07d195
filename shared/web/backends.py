"""Mini-program backends as callers: their registered public keys, and checking a signed request.

A request is accepted when its RFC 9421 signature verifies with a registered, unrevoked
Ed25519 key; it covers `@method`, `@target-uri`, `content-digest` (which matches the body)
and `idempotency-key` when one is sent; `created` is within ±300 s of our clock; and its
`nonce` was never seen before (kept in `signature_nonces` until the signature could no
longer be fresh). Anything else is 401, never a 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import timedelta
from typing import Any

import asyncpg
import http_sf
import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

from shared.web.auth import Principal, Role, unauthorized
from shared.web.http import ProblemError
from shared.web.signing import covered_components

MAX_SKEW = 300  # seconds either side of our clock
# A signature is fresh until created + MAX_SKEW, and created may be MAX_SKEW ahead: keep
# each nonce past the latest moment its signature could still be accepted.
NONCE_TTL = timedelta(seconds=2 * MAX_SKEW + 60)
MAX_NONCE = 128
PRUNE_EVERY = 60.0
log = structlog.get_logger()

# The nonce is stored only for a key id still registered, unrevoked, with the public key the
# signature was verified with: `sub` is NULL otherwise, `fresh` false for a nonce seen before.
_REMEMBER = """
    WITH caller AS (
        SELECT sub FROM backend_keys WHERE keyid = $1 AND public_key = $4 AND revoked_at IS NULL
    ), stored AS (
        INSERT INTO signature_nonces (keyid, nonce, expires_at)
        SELECT $1, $2, now() + $3::interval FROM caller
        ON CONFLICT DO NOTHING RETURNING true
    )
    SELECT (SELECT sub FROM caller) AS sub, EXISTS (SELECT FROM stored) AS fresh"""


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
    """The verifier a service's auth middleware calls for requests that carry a signature.

    A backend's public key is remembered by key id (public, immutable once registered) so
    that a signed call costs one statement: the one that stores its nonce also checks, in
    the same snapshot, that the key is still registered unrevoked with those same bytes.
    A revocation therefore takes effect on the very next call, as without the memo.
    """

    def __init__(self, max_keys: int = 1024) -> None:
        self._pruned = 0.0
        self._pruning: asyncio.Task[None] | None = None
        self._keys: dict[str, bytes] = {}
        self._max_keys = max_keys

    async def authenticate(self, request: web.Request, pool: asyncpg.Pool) -> Principal:
        try:
            key_id = key_id_of(request.headers.get("Signature-Input", ""))
        except Exception:
            raise unauthorized("malformed Signature-Input") from None
        remembered = self._keys.get(key_id)
        public_key = remembered or await self._look_up(pool, key_id)
        body = await request.read()  # past client_max_size: 413
        try:
            nonce = self._verify(request, public_key, body)
        except ProblemError:
            if remembered is None:
                raise
            # A remembered key that does not verify: look again, the key id may have been registered anew.
            public_key = await self._look_up(pool, key_id)
            if public_key == remembered:
                raise
            nonce = self._verify(request, public_key, body)
        sub = await self._remember(pool, key_id, public_key, nonce)
        return Principal(sub=sub, role=Role.REPORTER_BACKEND)

    async def _look_up(self, pool: asyncpg.Pool, key_id: str) -> bytes:
        """The key id's registered, unrevoked public key (401 if none); remembered for next time."""
        public_key = await pool.fetchval(
            "SELECT public_key FROM backend_keys WHERE keyid = $1 AND revoked_at IS NULL", key_id
        )
        if public_key is None:
            raise unauthorized("unknown or revoked signing key")
        self._keys[key_id] = bytes(public_key)
        while len(self._keys) > self._max_keys:
            del self._keys[next(iter(self._keys))]
        return bytes(public_key)

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

    async def _remember(self, pool: asyncpg.Pool, key_id: str, public_key: bytes, nonce: str) -> str:
        """Store the nonce if the key is still registered and unrevoked; the caller's sub."""
        self._prune_now_and_then(pool)
        row = await pool.fetchrow(_REMEMBER, key_id, nonce, NONCE_TTL, public_key)
        assert row is not None  # one row, always
        if row["sub"] is None:
            self._keys.pop(key_id, None)
            raise unauthorized("unknown or revoked signing key")
        if not row["fresh"]:
            raise unauthorized("nonce already used")
        return str(row["sub"])

    def _prune_now_and_then(self, pool: asyncpg.Pool) -> None:
        """Expired nonces go at most every PRUNE_EVERY seconds, beside the requests, not in one."""
        now = time.monotonic()
        if now - self._pruned <= PRUNE_EVERY or (self._pruning is not None and not self._pruning.done()):
            return
        self._pruned = now
        self._pruning = asyncio.get_running_loop().create_task(_prune(pool))


async def _prune(pool: asyncpg.Pool) -> None:
    """A late prune only keeps rows longer: a failure is logged, and the next one catches up."""
    try:
        await pool.execute("DELETE FROM signature_nonces WHERE expires_at < now()")
    except Exception as exc:
        log.warning("nonce_prune_failed", error=type(exc).__name__)


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
