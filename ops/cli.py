"""The `caseloop` command: bring the stack up, mint tokens, migrate."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ops.audit.cli import audit_app
from ops.audit.projections_cli import projections_app
from ops.cli_options import NoStack, RootOption, stack_root, up_root
from ops.security_cli import backends_app, privacy_app
from ops.stack import SERVICES, Stack, load_secrets
from ops.supervise import Supervisor
from shared.base.config import env_value
from shared.web.auth import Role, issue_token

app = typer.Typer(help="caseloop: closed-loop case management for a city's command centre.", no_args_is_help=True)
console = Console()
app.add_typer(audit_app, name="audit")
app.add_typer(projections_app, name="projections")
app.add_typer(backends_app, name="backends")
app.add_typer(privacy_app, name="privacy")


@app.command()
def up(
    root: Annotated[
        Path | None,
        typer.Option(
            help="where servers keep their data, logs and dev secrets "
            "(default: CASELOOP_HOME, else the nearest .caseloop/ here or above, else ./.caseloop)"
        ),
    ] = None,
    nats_port: Annotated[int, typer.Option(help="embedded nats-server port")] = 4222,
    pg_port: Annotated[int, typer.Option(help="embedded PostgreSQL port")] = 54329,
    ports: Annotated[str, typer.Option(help="services' HTTP ports, e.g. intake=9080,routing=9081")] = "",
    replicas: Annotated[str, typer.Option(help="processes per service, e.g. routing=2,handling=2")] = "",
    nats_cluster: Annotated[int, typer.Option(help="nats-server nodes: 3 for a JetStream cluster, R3 stream")] = 1,
) -> None:
    """Start NATS and PostgreSQL (unless NATS_URL / DATABASE_URL are set) and every service, and keep
    them running: a process that dies is said here and started again (servers with the same data)."""
    root = up_root(root)
    stack = Stack(
        root,
        ports=parse_ports(ports),
        nats_port=nats_port,
        pg_port=pg_port,
        replicas=parse_replicas(replicas),
        nats_cluster=nats_cluster,
    )
    stopping = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with console.status("starting servers and migrating…"):
            env = stack.start_infrastructure()
        with console.status("starting services…"):
            stack.start_services()
        table = Table(title="caseloop is up")
        table.add_column("part")
        table.add_column("where")
        table.add_row("nats", env["NATS_URL"])
        table.add_row("postgres", _redact(env["DATABASE_URL"]))
        for name in stack.names:
            table.add_row(name, stack.process(name).url)
        table.add_row("logs", str(root / "logs"))
        console.print(table)
        console.print("Tokens: [bold]caseloop token --role dispatcher[/]. Ctrl-C stops everything.")
        supervisor = Supervisor(stack, lambda text: console.print(f"[yellow]{text}[/]", highlight=False))
        while not stopping.wait(1.0):
            supervisor.check()
    finally:
        with console.status("stopping…"):
            stack.stop()
        console.print("stopped.")


def parse_replicas(text: str) -> dict[str, int]:
    """`routing=2,handling=2` -> {"routing": 2, "handling": 2}; unknown services are refused."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        service, _, count = item.partition("=")
        if service not in SERVICES or not count.isdigit() or not 1 <= int(count) <= 16:
            raise typer.BadParameter(f"{item!r}: expected <service>=<1..16>, service one of {', '.join(SERVICES)}")
        counts[service] = int(count)
    return counts


def parse_ports(text: str) -> dict[str, int]:
    """`intake=9080,routing=9081` -> {"intake": 9080, "routing": 9081}; unknown services are refused."""
    ports: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        service, _, port = item.partition("=")
        if service not in SERVICES or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise typer.BadParameter(f"{item!r}: expected <service>=<port>, service one of {', '.join(SERVICES)}")
        ports[service] = int(port)
    return ports


def _redact(url: str) -> str:
    head, _, tail = url.rpartition("@")
    return f"{head.split(':')[0]}://***@{tail}" if head else url


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="the caller's role")],
    sub: Annotated[str, typer.Option(help="the caller's id")] = "",
    department: Annotated[str | None, typer.Option(help="a handler's department")] = None,
    grids: Annotated[str, typer.Option(help="a grid worker's grids, comma-separated")] = "",
    hours: Annotated[int, typer.Option(help="validity")] = 12,
    pii: Annotated[bool, typer.Option("--pii", help="an auditor may unmask with a stated purpose (recorded)")] = False,
    root: RootOption = None,
) -> None:
    """Print a bearer token valid for the running configuration (JWT_SECRET, else the stack's)."""
    secret = _jwt_secret(root)
    grid_list = tuple(g.strip() for g in grids.split(",") if g.strip())
    try:
        minted = issue_token(
            secret,
            sub=sub or f"{role}-cli",
            role=role,
            department=department,
            grids=grid_list,
            pii=pii,
            issuer=env_value("JWT_ISSUER") or "caseloop",
            audience=env_value("JWT_AUDIENCE") or "caseloop",
            ttl_seconds=hours * 3600,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(minted)


def _jwt_secret(root: Path | None) -> str:
    """JWT_SECRET (or JWT_SECRET_FILE) as the services read it, else the dev secret of the stack found."""
    return env_value("JWT_SECRET") or load_secrets(stack_root(root)).jwt_secret


@app.command()
def migrate() -> None:
    """Apply pending migrations to ADMIN_DATABASE_URL (or DATABASE_URL; or their *_FILE)."""
    from shared.base.config import Settings
    from shared.store.db import run_migrations

    url = Settings.from_env().migrations_url  # a deployment's secret files too (ADMIN_DATABASE_URL_FILE)
    if not url:
        raise typer.BadParameter("set DATABASE_URL (and ADMIN_DATABASE_URL for the owner role)")
    applied = asyncio.run(run_migrations(url))
    console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@app.command()
def demo(
    cases: Annotated[int, typer.Option(help="how many reports to post")] = 40,
    root: RootOption = None,
    timeout: Annotated[float, typer.Option(help="seconds to let the cases run")] = 300,
) -> None:
    """Play citizens, sensors, departments and grid workers against the stack `make run` started."""
    import json

    from ops.demo import run_demo, summary
    from ops.stack import DEFAULT_PORTS
    from shared.domain.rules import load_policy

    root = stack_root(root)
    stack_file = root / "stack.json"
    ports = json.loads(stack_file.read_text())["ports"] if stack_file.exists() else DEFAULT_PORTS
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    secret = _jwt_secret(root)
    policy = load_policy(os.environ.get("RULES_PATH") or None)
    categories = [c for c in policy.categories if c != "background_check"]
    grids = list(policy.grids)
    from ops.devsetup import DEV_BACKEND, load_dev_backend

    if not (root / f"{DEV_BACKEND}.key").is_file():  # a key made now would be one the stack never registered
        raise NoStack(f"{root} has no {DEV_BACKEND}.key: `caseloop up` makes and registers it")
    backend_key = load_dev_backend(root)
    outcomes = asyncio.run(run_demo(urls, secret, cases, categories, grids, timeout, backend_key=backend_key))
    table = Table(title=f"{len(outcomes)} cases")
    # The whole id, never cut or wrapped: `caseloop audit history|export` take it as printed.
    table.add_column("case", no_wrap=True, min_width=36)
    for column in ("category", "status", "rounds", "returns", "failed checks", "by hand"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.case_id,
            o.category,
            o.status,
            str(o.rounds),
            str(o.returns),
            str(o.failed_verifications),
            "yes" if o.dispatched_by_hand else "",
        )
    console.print(table)
    console.print(", ".join(f"{status}: {count}" for status, count in summary(outcomes).most_common()))
    if any(o.status != "closed" for o in outcomes):
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except NoStack as exc:  # a user's mistake, not a bug: the message, without a traceback
        Console(stderr=True).print(f"[red]{exc}[/]", highlight=False)
        raise SystemExit(1) from None
