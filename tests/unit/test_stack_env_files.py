"""The Stack reads each service's own database URL by the one NAME or NAME_FILE rule."""

from __future__ import annotations

from pathlib import Path

from ops.stack import Stack
from shared.store.db import SERVICE_ROLES, database_url_variable

SHARED = "postgresql://caseloop_service:pw@127.0.0.1:5432/caseloop"


def test_a_services_url_from_a_mounted_file_reaches_that_service_only(tmp_path: Path) -> None:
    files = {}
    for service in SERVICE_ROLES:
        files[service] = tmp_path / f"{service}.url"
        files[service].write_text(f"postgresql://{service}:{service}-pw@127.0.0.1:5432/caseloop\n")
    stack = Stack(tmp_path)
    stack.env = {
        "DATABASE_URL_FILE": str(tmp_path / "shared.url"),
        "ADMIN_DATABASE_URL_FILE": str(tmp_path / "owner.url"),
        **{f"{database_url_variable(s)}_FILE": str(path) for s, path in files.items()},
    }
    for service in SERVICE_ROLES:  # the services with a database (the console has none)
        env = stack.process(service).env
        assert env["DATABASE_URL"] == f"postgresql://{service}:{service}-pw@127.0.0.1:5432/caseloop"
        assert not any("DATABASE_URL" in k and k != "DATABASE_URL" for k in env), env


def test_a_services_url_given_directly_wins_over_its_file(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.env = {
        "DATABASE_URL": SHARED,
        "INTAKE_DATABASE_URL": "postgresql://intake:direct@127.0.0.1:5432/caseloop",
        "INTAKE_DATABASE_URL_FILE": str(tmp_path / "never-read.url"),
    }
    assert stack.process("intake").env["DATABASE_URL"] == "postgresql://intake:direct@127.0.0.1:5432/caseloop"
    assert stack.process("routing").env["DATABASE_URL"] == SHARED
