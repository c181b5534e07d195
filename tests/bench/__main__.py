"""`make bench`: every figure beside its baseline, one run, one server; a table and bench-results.json."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import asyncpg
import nats
from rich.console import Console
from rich.table import Table

from ops.servers import NatsServer, Postgres
from shared.base.log import configure_logging
from shared.store.db import SERVICE_ROLE, bootstrap, with_credentials, with_database
from tests import folders
from tests.bench import audit_bench, console_bench, eventstore_bench, relay_bench, services_bench
from tests.bench.eventstore_bench import Figure

RESULTS = Path(__file__).resolve().parents[2] / "bench-results.json"
DATABASE = f"caseloop_bench_{os.getpid()}"
RELAY_DATABASE = f"caseloop_bench_relay_{os.getpid()}"
AUDIT_DATABASE = f"caseloop_bench_audit_{os.getpid()}"


@dataclass(frozen=True)
class Servers:
    admin_url: str  # a superuser URL (any database)
    nats_url: str
    own: bool  # started here, in a temporary folder


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """DATABASE_URL (an admin URL) and NATS_URL when set; otherwise our own, from the wheels."""
    database_url, nats_url = os.environ.get("DATABASE_URL"), os.environ.get("NATS_URL")
    folder = folders.make("bench")
    postgres = None if database_url else Postgres(folder / "pg")
    nats_server = None if nats_url else NatsServer(folder / "nats")
    try:
        if postgres:
            postgres.start()
        if nats_server:
            nats_server.start()
        yield Servers(
            admin_url=database_url or postgres.url(),  # type: ignore[union-attr]
            nats_url=nats_url or nats_server.url,  # type: ignore[union-attr]
            own=postgres is not None,
        )
    finally:
        try:
            if nats_server:
                nats_server.stop()
        finally:
            folders.done(folder, postgres=postgres)  # stops it; as root, its data is outside the folder


async def service_password(admin_url: str, own: bool) -> str:
    """bootstrap sets the service role's password: never change a server's existing one silently."""
    if own or "BENCH_SERVICE_PASSWORD" in os.environ:
        return os.environ.get("BENCH_SERVICE_PASSWORD") or secrets.token_urlsafe(16)
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", SERVICE_ROLE)
    finally:
        await conn.close()
    if exists:
        sys.exit(f"{SERVICE_ROLE} exists on DATABASE_URL's server: set BENCH_SERVICE_PASSWORD to its password")
    return secrets.token_urlsafe(16)


async def machine(admin_url: str, nats_url: str, own: bool) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_url)
    try:
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "wal_sync_method")
        }
    finally:
        await conn.close()
    nc = await nats.connect(nats_url)
    version = nc.connected_server_version
    await nc.close()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "postgresql": settings.pop("server_version"),
        "postgresql_settings": settings,
        "nats_server": f"{version.major}.{version.minor}.{version.patch}",
        "nats_sync_interval": "always" if own else "unknown (NATS_URL)",
        "servers": "started by the bench" if own else "DATABASE_URL / NATS_URL",
    }


async def drop_databases(admin_url: str) -> None:
    conn = await asyncpg.connect(with_database(admin_url, "postgres"))
    try:
        for name in (DATABASE, RELAY_DATABASE, AUDIT_DATABASE, *services_bench.DATABASES, console_bench.DATABASE):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


GROUPS = ("store", "relay", "audit", "services", "console")  # `python -m tests.bench store relay`: only those


async def measure(console: Console, found: Servers, groups: set[str]) -> tuple[list[Figure], dict[str, Any]]:
    password = await service_password(found.admin_url, found.own)
    info = await machine(found.admin_url, found.nats_url, found.own)
    figures: list[Figure] = []
    try:
        for name in (DATABASE, RELAY_DATABASE, AUDIT_DATABASE):
            await bootstrap(found.admin_url, name, {SERVICE_ROLE: password})
        admin = with_database(found.admin_url, DATABASE)
        if "store" in groups:
            with console.status("event store: append and read_all"):
                figures += await eventstore_bench.run(admin, with_credentials(admin, SERVICE_ROLE, password))
        if "relay" in groups:
            relay_url = with_credentials(with_database(found.admin_url, RELAY_DATABASE), SERVICE_ROLE, password)
            with console.status("relay to JetStream"):
                figures += await relay_bench.run(relay_url, found.nats_url)
        if "audit" in groups:
            audit = with_database(found.admin_url, AUDIT_DATABASE)
            with console.status(f"audit: rebuild and verify {audit_bench.CASES:,} cases"):
                figures += await audit_bench.run(audit, with_credentials(audit, SERVICE_ROLE, password))
        if "services" in groups:
            figures += await services_bench.run(found.admin_url, found.nats_url, password, console.status)
        if "console" in groups:
            figures += await console_bench.group(found.admin_url, found.nats_url, password, console.status)
    finally:
        if not found.own:
            await drop_databases(found.admin_url)
    return figures, info


def target_text(figure: Figure) -> str:
    if label := getattr(figure, "target_label", ""):  # an absolute bound (tests/bench/figures.py)
        return f"{label}: {'[green]met[/]' if figure.met else '[red]not met[/]'}"
    if figure.target is None:
        return ""
    verdict = "[green]met[/]" if figure.met else "[red]not met[/]"
    return f"≥ {figure.target:.0%}: {verdict}"


def table(figures: list[Figure], info: dict[str, Any]) -> Table:
    caption = (
        f"{info['platform']}, {info['cpu_count']} CPUs; PostgreSQL {info['postgresql']}, "
        f"nats-server {info['nats_server']}. Events/s; ratio = ours / baseline; target = the lowest ratio we accept."
    )
    out = Table(title="caseloop bench", caption=caption)
    out.add_column("figure")
    out.add_column("ours", justify="right")
    out.add_column("baseline", justify="right")
    out.add_column("baseline is", style="dim")
    out.add_column("ratio", justify="right")
    out.add_column("target")
    for f in figures:
        out.add_row(f.name, f"{f.ours:,.0f}", f"{f.baseline:,.0f}", f.baseline_name, f"{f.ratio:.0%}", target_text(f))
    return out


def results(figures: list[Figure], info: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "machine": info,
        "elapsed_seconds": round(seconds, 1),
        "unit": "events/s",
        "figures": [
            {
                "figure": f.name,
                "unit": getattr(f, "unit", "events/s"),
                "ours": round(f.ours, 1),
                "baseline": round(f.baseline, 1),
                "baseline_is": f.baseline_name,
                "ratio": round(f.ratio, 3),
                "target": f.target,
                "met": f.met,
                "note": f.note,
            }
            for f in figures
        ],
    }


def main() -> None:
    configure_logging("bench", fmt="console", level="warning")
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 150)
    groups = set(sys.argv[1:]) or set(GROUPS)
    if unknown := groups - set(GROUPS):
        sys.exit(f"unknown bench groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    start = perf_counter()
    try:
        with servers() as found:
            figures, info = asyncio.run(measure(console, found, groups))
        seconds = perf_counter() - start
        console.print(table(figures, info))
        RESULTS.write_text(json.dumps(results(figures, info, seconds), indent=2) + "\n")
        console.print(f"{len(figures)} figures in {seconds:.0f} s; written to {RESULTS}")
    finally:
        console.print(folders.last_line())


if __name__ == "__main__":
    main()
