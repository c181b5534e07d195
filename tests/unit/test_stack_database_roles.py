"""Each service process gets its own database role's URL; a shared DATABASE_URL alone still works."""

from __future__ import annotations

import json
from pathlib import Path

from ops.stack import SERVICES, Stack, load_secrets, service_database_env
from shared.store.db import SERVICE_ROLES

ADMIN = "postgresql://postgres@127.0.0.1:5432/caseloop"
SHARED = "postgresql://caseloop_service:pw@127.0.0.1:5432/caseloop"


def test_each_process_connects_as_its_own_role_and_sees_no_other_services_url(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.env = {
        "DATABASE_URL": SHARED,
        "ADMIN_DATABASE_URL": ADMIN,
        **service_database_env(ADMIN, {s: f"{s}-pw" for s in SERVICE_ROLES}),
    }
    for service in SERVICE_ROLES:
        env = stack.process(service).env
        assert env["DATABASE_URL"].startswith(f"postgresql://{SERVICE_ROLES[service]}:{service}-pw@")
        assert not any(k.endswith("_DATABASE_URL") for k in env), "no other role's credentials, the owner's included"
    # The console has no database: no credentials at all, and no reporter's key.
    assert set(SERVICES) - set(SERVICE_ROLES) == {"console"}
    console = stack.process("console").env
    assert not any("DATABASE_URL" in k for k in console) and "PII_KEY" not in console


def test_without_per_service_urls_every_process_uses_database_url(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.env = {"DATABASE_URL": SHARED}
    assert {stack.process(service).env["DATABASE_URL"] for service in SERVICE_ROLES} == {SHARED}
    assert "DATABASE_URL" not in stack.process("console").env


def test_older_secrets_get_per_service_passwords_and_keep_the_rest(tmp_path: Path) -> None:
    old = {
        "jwt_secret": "j",
        "pii_key": "p",
        "blind_index_key": "b",
        "service_password": "s",
        "auditor_password": "a",
        "owner_password": "o",
    }
    (tmp_path / "secrets.json").write_text(json.dumps(old))
    secrets = load_secrets(tmp_path)
    assert (secrets.jwt_secret, secrets.service_password, secrets.owner_password) == ("j", "s", "o")
    assert set(secrets.service_passwords) == set(SERVICE_ROLES) and all(secrets.service_passwords.values())
    assert load_secrets(tmp_path) == secrets  # kept, not made again
