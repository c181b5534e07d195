"""Reporters' personal data: sealed with a per-reporter data key, erasable without touching the log.

A reporter is identified by a keyed hash of their phone number (a blind index), so the
same person gets the same reference and key without anyone decrypting anything. Their
data key is stored wrapped by the master key (AES-GCM) in `reporter_keys`; erasing the
key makes every copy of their name and phone in the log unreadable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.base.config import Secret
from shared.domain.events import SealedReporter

ALG = "AES-256-GCM"


# Count one report for (phone_index $1, day $2) and return the reporter's key; a reporter seen
# for the first time gets the key made by the caller ($4, wrapped $5), unless past the limit ($3).
_COUNT_AND_KEY = """
    WITH quota AS (
        INSERT INTO reporter_quota (phone_index, day, reports) VALUES ($1, $2, 1)
        ON CONFLICT (phone_index, day) DO UPDATE SET reports = reporter_quota.reports + 1
        RETURNING reports
    ), known AS (
        SELECT ref, wrapped_key FROM reporter_keys WHERE phone_index = $1 AND wrapped_key IS NOT NULL
    ), created AS (
        INSERT INTO reporter_keys (ref, phone_index, wrapped_key)
        SELECT $4, $1, $5 WHERE NOT EXISTS (SELECT FROM known) AND (SELECT reports FROM quota) <= $3
        ON CONFLICT (phone_index) WHERE wrapped_key IS NOT NULL DO NOTHING
        RETURNING ref, wrapped_key
    )
    SELECT quota.reports, found.ref, found.wrapped_key
    FROM quota LEFT JOIN (SELECT * FROM known UNION ALL SELECT * FROM created) AS found ON true"""


class OverLimit(Exception):
    """The reporter has reached today's limit of reports: counted, nothing sealed."""


class Reporter(msgspec.Struct, frozen=True, kw_only=True):
    name: str | None = None
    phone: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Reporter)


def normalize_phone(phone: str) -> str:
    digits = re.sub(r"[^\d+]", "", phone)
    return digits.removeprefix("+86").removeprefix("0086")


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return phone
    digits = normalize_phone(phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_name(name: str | None) -> str | None:
    if not name:
        return name
    return name[0] + "*" * max(len(name) - 1, 1)


def masked(reporter: Reporter) -> Reporter:
    return Reporter(name=mask_name(reporter.name), phone=mask_phone(reporter.phone))


def _key(encoded: Secret | str, what: str) -> bytes:
    if isinstance(encoded, Secret):
        encoded = encoded.reveal()
    key = base64.b64decode(encoded) if encoded else b""
    if len(key) != 32:
        raise ValueError(f"{what} must be base64 of 32 bytes")
    return key


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class Vault:
    """Seals and unseals reporters' data; every call runs on the caller's connection."""

    def __init__(self, master_key: Secret | str, blind_index_key: Secret | str) -> None:
        self._master = AESGCM(_key(master_key, "PII_KEY"))
        self._index_key = _key(blind_index_key, "BLIND_INDEX_KEY")

    def phone_index(self, phone: str) -> bytes:
        return hmac.new(self._index_key, normalize_phone(phone).encode(), hashlib.sha256).digest()

    async def seal(self, conn: Any, reporter: Reporter, *, day: date | None = None, limit: int = 0) -> SealedReporter:
        """Encrypt with the reporter's own data key (created on first sight of their phone).

        With `day`, a reporter with a phone is also counted for that day and refused with
        OverLimit past `limit` (no key is created then): the count and the key are one statement.
        """
        index = self.phone_index(reporter.phone) if reporter.phone else None
        ref, data_key = await self._key_for(conn, index, day, limit)
        nonce = os.urandom(12)
        ciphertext = AESGCM(data_key).encrypt(nonce, _encoder.encode(reporter), ref.bytes)
        return SealedReporter(
            ref=ref,
            alg=ALG,
            nonce=base64.b64encode(nonce).decode(),
            ciphertext=base64.b64encode(ciphertext).decode(),
        )

    async def _key_for(self, conn: Any, index: bytes | None, day: date | None, limit: int) -> tuple[UUID, bytes]:
        if index is not None and day is not None:
            counted = await self._count_and_key(conn, index, day, limit)
            if counted is not None:
                return counted
        return await self._find_or_create(conn, index)

    async def _count_and_key(self, conn: Any, index: bytes, day: date, limit: int) -> tuple[UUID, bytes] | None:
        """Count today's report and find the key, or create it for a new reporter, in one round trip.

        None when another request created this reporter's key at the same moment (the report
        is counted: look the key up). The new key is made before we know it is needed: cheaper
        than a second round trip for every first report.
        """
        ref, data_key = uuid4(), AESGCM.generate_key(bit_length=256)
        row = await conn.fetchrow(_COUNT_AND_KEY, index, day, limit, ref, self._wrap(ref, data_key))
        if row["reports"] > limit:
            raise OverLimit
        if row["ref"] is None:
            return None
        if row["ref"] == ref:
            return ref, data_key
        return row["ref"], self._unwrap(row["ref"], bytes(row["wrapped_key"]))

    async def _find_or_create(self, conn: Any, index: bytes | None) -> tuple[UUID, bytes]:
        if index is not None:
            row = await conn.fetchrow(
                "SELECT ref, wrapped_key FROM reporter_keys WHERE phone_index = $1 AND wrapped_key IS NOT NULL",
                index,
            )
            if row:
                return row["ref"], self._unwrap(row["ref"], bytes(row["wrapped_key"]))
        ref, data_key = uuid4(), AESGCM.generate_key(bit_length=256)
        stored = await conn.fetchval(
            """INSERT INTO reporter_keys (ref, phone_index, wrapped_key) VALUES ($1, $2, $3)
               ON CONFLICT (phone_index) WHERE wrapped_key IS NOT NULL DO NOTHING RETURNING ref""",
            ref,
            index,
            self._wrap(ref, data_key),
        )
        if stored is None:  # the same phone was first seen concurrently: use that key
            return await self._find_or_create(conn, index)
        return ref, data_key

    def _wrap(self, ref: UUID, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, data_key, ref.bytes)

    def _unwrap(self, ref: UUID, wrapped: bytes) -> bytes:
        return self._master.decrypt(wrapped[:12], wrapped[12:], ref.bytes)

    async def unseal(self, conn: Any, sealed: SealedReporter) -> Reporter | None:
        """The plaintext, or None once the reporter's key has been erased."""
        wrapped = await conn.fetchval("SELECT wrapped_key FROM reporter_keys WHERE ref = $1", sealed.ref)
        if wrapped is None:
            return None
        data_key = self._unwrap(sealed.ref, bytes(wrapped))
        plaintext = AESGCM(data_key).decrypt(
            base64.b64decode(sealed.nonce), base64.b64decode(sealed.ciphertext), sealed.ref.bytes
        )
        return _decoder.decode(plaintext)

    @staticmethod
    async def erase(conn: Any, ref: UUID) -> bool:
        """Forget a reporter: their data key and blind index go; the log is not touched."""
        erased = await conn.fetchval(
            """UPDATE reporter_keys SET wrapped_key = NULL, phone_index = NULL, erased_at = now()
               WHERE ref = $1 AND wrapped_key IS NOT NULL RETURNING true""",
            ref,
        )
        return bool(erased)
