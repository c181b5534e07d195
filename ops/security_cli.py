"""`caseloop backends …` (signing keys of mini-program backends) and `caseloop privacy …`.

Key registration runs as the schema's owner (ADMIN_DATABASE_URL; services may only read
keys); erasure runs as the services' role (DATABASE_URL); each variable or its _FILE. Without
them, both use the development credentials of the local stack (--root, CASELOOP_HOME, or the
nearest .caseloop/ folder here or above).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated
from uuid import UUID

import asyncpg
import typer
from rich.console import Console

from ops.audit.store import local_pg_port
from ops.cli_options import RootOption, stack_root
from ops.stack import DATABASE, load_secrets
from shared.base.config import env_value
from shared.store.db import OWNER_ROLE, SERVICE_ROLE, with_credentials
from shared.web import backends
from shared.web.signing import raw_public_key, write_key_pair

backends_app = typer.Typer(help="Mini-program backends' signing keys (RFC 9421, Ed25519).", no_args_is_help=True)
privacy_app = typer.Typer(help="Reporters' personal data.", no_args_is_help=True)
console = Console()


def _local(given: Path | None, role: str) -> str:
    root = stack_root(given)
    secrets = load_secrets(root)
    password = secrets.owner_password if role == OWNER_ROLE else secrets.service_password
    return with_credentials(f"postgresql://127.0.0.1:{local_pg_port(root)}/{DATABASE}", role, password)


def owner_url(root: Path | None) -> str:
    return env_value("ADMIN_DATABASE_URL") or _local(root, OWNER_ROLE)


def service_url(root: Path | None) -> str:
    return env_value("DATABASE_URL") or _local(root, SERVICE_ROLE)


@backends_app.command()
def keygen(
    name: Annotated[str, typer.Option(help="file names: NAME.key (private, 0600) and NAME.pub")] = "backend",
    out: Annotated[Path, typer.Option(help="folder for the key pair")] = Path("."),
) -> None:
    """Make an Ed25519 key pair for a backend: it keeps NAME.key, we register NAME.pub."""
    try:
        private, public = write_key_pair(out, name)
    except FileExistsError:
        raise typer.BadParameter(f"{out / name}.key exists: choose another name") from None
    console.print(f"private key: {private} (keep it on the backend)\npublic key: {public} (register it)")


@backends_app.command()
def register(
    sub: Annotated[str, typer.Option(help="the backend's id, e.g. wechat")],
    public_key: Annotated[Path, typer.Option(help="its public key: PEM, or base64 of the raw 32 bytes")],
    keyid: Annotated[str, typer.Option(help="the key id it will sign with (default: derived)")] = "",
    root: RootOption = None,
) -> None:
    """Register a backend's public key; prints the key id the backend puts in `keyid`."""
    try:
        raw = raw_public_key(public_key.read_bytes())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read an Ed25519 public key: {exc}") from None

    async def run() -> str:
        conn = await asyncpg.connect(owner_url(root))
        try:
            return await backends.register(conn, sub=sub, public_key=raw, key_id=keyid or None)
        finally:
            await conn.close()

    try:
        typer.echo(asyncio.run(run()))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@backends_app.command()
def revoke(keyid: Annotated[str, typer.Argument()], root: RootOption = None) -> None:
    """Revoke a key at once: its signatures are refused from now on."""

    async def run() -> bool:
        conn = await asyncpg.connect(owner_url(root))
        try:
            return await backends.revoke(conn, keyid)
        finally:
            await conn.close()

    if not asyncio.run(run()):
        raise typer.BadParameter(f"no active key {keyid}")
    console.print(f"revoked {keyid}")


@privacy_app.command()
def erase(
    reporter: Annotated[UUID, typer.Option(help="the reporter's ref (SealedReporter.ref in the case's events)")],
    actor: Annotated[str, typer.Option(help="who orders the erasure, for the record")] = "operator:cli",
    root: RootOption = None,
) -> None:
    """Erase a reporter: their data key goes, each of their cases records ReporterErased."""
    from shared.personal.erasure import erase_reporter

    async def run() -> tuple[bool, list[UUID]]:
        pool = await asyncpg.create_pool(service_url(root), min_size=1, max_size=2)
        assert pool is not None
        try:
            return await erase_reporter(pool, reporter, actor=actor)
        finally:
            await pool.close()

    erased, cases = asyncio.run(run())
    now = "yes" if erased else "no (already erased, or unknown)"
    console.print(f"key erased now: {now}; cases marked: {len(cases)}")
