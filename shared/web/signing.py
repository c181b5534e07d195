"""Signed server-to-server calls: RFC 9421 HTTP Message Signatures with Ed25519, and an
RFC 9530 `Content-Digest` (sha-256) of the body, by pyauth's `http-message-signatures`.

A mini-program backend signs each request with its own private key; we keep only its
public key (`backend_keys`). Covered: `@method`, `@target-uri`, `content-digest`, and
`idempotency-key` when the request has one; parameters `created`, `keyid`, `alg` and a
fresh random `nonce`. In a backend:

    headers = sign_request("POST", url, {"Idempotency-Key": key}, body, key_id, private_key)
    await session.post(url, data=body, headers={**headers, "Content-Type": "application/json"})
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

LABEL = "caseloop"
BASE_COMPONENTS = ("@method", "@target-uri", "content-digest")


class BackendKey(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend signs with: its key id and the PEM of its private key."""

    key_id: str
    private_pem: str

    def private_key(self) -> Ed25519PrivateKey:
        return load_private_key(self.private_pem.encode())


class _Request:
    """The message shape the library reads: method, absolute URL, headers (mutable)."""

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method = method.upper()
        self.url = url
        self.headers = headers


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return self._key


def covered_components(headers: Mapping[str, str]) -> tuple[str, ...]:
    has_key = any(name.lower() == "idempotency-key" for name in headers)
    return (*BASE_COMPONENTS, "idempotency-key") if has_key else BASE_COMPONENTS


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    key_id: str,
    private_key: Ed25519PrivateKey,
    *,
    created: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The request's headers plus `Content-Digest`, `Signature-Input` and `Signature`.

    `url` is the absolute URL the request goes to (scheme, host, port, path and query):
    it is what `@target-uri` covers. Send exactly `body`.
    """
    request = _Request(method, url, dict(headers))
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(private_key))
    signer.sign(
        request,
        key_id=key_id,
        created=created,
        nonce=nonce if nonce is not None else secrets.token_urlsafe(18),
        label=LABEL,
        covered_component_ids=covered_components(headers),
        body=body,
    )
    return request.headers


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    encoding, fmt = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, fmt, serialization.NoEncryption())


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def raw_public_key(text: bytes) -> bytes:
    """32 raw bytes from a PEM public key, or from base64 of the raw key."""
    if b"-----BEGIN" in text:
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = base64.b64decode(text.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw


def write_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """`<name>.key` (0600, PKCS#8 PEM) and `<name>.pub` (SubjectPublicKeyInfo PEM) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    key = new_private_key()
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    private_path.touch(mode=0o600, exist_ok=False)
    private_path.write_bytes(private_pem(key))
    public_path.write_bytes(public_pem(key))
    return private_path, public_path
