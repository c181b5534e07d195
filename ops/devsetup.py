"""What `caseloop up` (and the end-to-end tests) set up besides servers: NATS users with their
permissions and the event stream, and a development backend's signing key.

The dev backend key is generated on first run under the stack's folder (`backend-dev.key`,
0600, and `backend-dev.json` naming its key id); only its public key goes to the database.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import asyncpg
import msgspec
import nats

from shared.base.config import Settings
from shared.messaging.bus import ensure_stream
from shared.messaging.natsauth import ADMIN, CONSOLE, SERVICE_USERS, department_user, provision_departments
from shared.web import backends
from shared.web.signing import BackendKey, load_private_key, private_pem, public_pem, raw_public_key, write_key_pair

DEV_BACKEND = "dev-backend"
DEV_BACKEND_SUB = "wechat-miniprogram"


def departments(rules_path: str | None) -> list[str]:
    from shared.domain.rules import load_policy

    return sorted(load_policy(rules_path or None).departments)


def nats_passwords(known: dict[str, str], department_names: list[str]) -> dict[str, str]:
    """A password for the admin, every service, the console and every department (existing ones kept)."""
    users = [ADMIN, *SERVICE_USERS, CONSOLE, *(department_user(d) for d in department_names)]
    return {user: known.get(user) or secrets.token_urlsafe(24) for user in users}


async def provision_nats(url: str, admin_password: str, settings: Settings, department_names: list[str]) -> None:
    """As admin: the event stream, and a durable per department limited to its own tasks."""
    nc = await nats.connect(url, user=ADMIN, password=admin_password, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=10)
        await ensure_stream(js, settings, settings.stream_replicas)
        await provision_departments(js, settings.nats_stream, settings.subject_prefix, department_names)
    finally:
        await nc.close()


def dev_backend_key(root: Path, sub: str = DEV_BACKEND_SUB) -> tuple[BackendKey, str, bytes]:
    """(the key, its backend's sub, the raw public key), made on first run."""
    private_path = root / f"{DEV_BACKEND}.key"
    if not private_path.exists():
        write_key_pair(root, DEV_BACKEND)
    key = load_private_key(private_path.read_bytes())
    public = raw_public_key(public_pem(key))
    key_id = backends.default_key_id(sub, public)
    (root / f"{DEV_BACKEND}.json").write_bytes(msgspec.json.encode({"key_id": key_id, "sub": sub}))
    return BackendKey(key_id=key_id, private_pem=private_pem(key).decode()), sub, public


def load_dev_backend(root: Path) -> BackendKey:
    key, _, _ = dev_backend_key(root)
    return key


async def register_dev_backend(owner_url: str, root: Path) -> BackendKey:
    key, sub, public = dev_backend_key(root)
    conn = await asyncpg.connect(owner_url)
    try:
        await backends.register(conn, sub=sub, public_key=public, key_id=key.key_id)
    finally:
        await conn.close()
    return key
