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

from shared.audit.cli import audit_app
from shared.audit.projections_cli import projections_app
from shared.auth import Role, issue_token
from shared.security_cli import backends_app, privacy_app
from shared.stack import SERVICES, Stack, load_secrets

app = typer.Typer(help="caseloop: closed-loop case management for a city's command centre.", no_args_is_help=True)
console = Console()
ROOT = Path(os.environ.get("CASELOOP_HOME", ".caseloop"))
app.add_typer(audit_app, name="audit")
app.add_typer(projections_app, name="projections")
app.add_typer(backends_app, name="backends")
app.add_typer(privacy_app, name="privacy")


@app.command()
def up(
    root: Annotated[Path, typer.Option(help="where servers keep their data, logs and dev secrets")] = ROOT,
    nats_port: Annotated[int, typer.Option(help="embedded nats-server port")] = 4222,
    pg_port: Annotated[int, typer.Option(help="embedded PostgreSQL port")] = 54329,
    replicas: Annotated[str, typer.Option(help="processes per service, e.g. routing=2,handling=2")] = "",
    nats_cluster: Annotated[int, typer.Option(help="nats-server nodes: 3 for a JetStream cluster, R3 stream")] = 1,
) -> None:
    """Start NATS and PostgreSQL (unless NATS_URL / DATABASE_URL are set) and every service."""
    stack = Stack(
        root, nats_port=nats_port, pg_port=pg_port, replicas=parse_replicas(replicas), nats_cluster=nats_cluster
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
        while not stopping.wait(1.0):
            for name, process in stack.processes.items():
                if process.proc is not None and process.proc.poll() is not None:
                    console.print(f"[yellow]{name} exited ({process.proc.returncode}); restarting[/]")
                    process.start()
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
    root: Annotated[Path, typer.Option()] = ROOT,
) -> None:
    """Print a bearer token valid for the running configuration."""
    secret = os.environ.get("JWT_SECRET") or load_secrets(root).jwt_secret
    grid_list = tuple(g.strip() for g in grids.split(",") if g.strip())
    try:
        minted = issue_token(
            secret,
            sub=sub or f"{role}-cli",
            role=role,
            department=department,
            grids=grid_list,
            pii=pii,
            issuer=os.environ.get("JWT_ISSUER", "caseloop"),
            audience=os.environ.get("JWT_AUDIENCE", "caseloop"),
            ttl_seconds=hours * 3600,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(minted)


@app.command()
def migrate() -> None:
    """Apply pending migrations to ADMIN_DATABASE_URL (or DATABASE_URL; or their *_FILE)."""
    from shared.config import Settings
    from shared.db import run_migrations

    url = Settings.from_env().migrations_url  # a deployment's secret files too (ADMIN_DATABASE_URL_FILE)
    if not url:
        raise typer.BadParameter("set DATABASE_URL (and ADMIN_DATABASE_URL for the owner role)")
    applied = asyncio.run(run_migrations(url))
    console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@app.command()
def demo(
    cases: Annotated[int, typer.Option(help="how many reports to post")] = 40,
    root: Annotated[Path, typer.Option()] = ROOT,
    timeout: Annotated[float, typer.Option(help="seconds to let the cases run")] = 300,
) -> None:
    """Play citizens, sensors, departments and grid workers against the stack `make run` started."""
    import json

    from services.routing.rules import load_policy
    from shared.demo import run_demo, summary
    from shared.stack import DEFAULT_PORTS

    stack_file = root / "stack.json"
    ports = json.loads(stack_file.read_text())["ports"] if stack_file.exists() else DEFAULT_PORTS
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    secret = os.environ.get("JWT_SECRET") or load_secrets(root).jwt_secret
    policy = load_policy(os.environ.get("RULES_PATH") or None)
    categories = [c for c in policy.categories if c != "background_check"]
    grids = list(policy.grids)
    from shared.devsetup import load_dev_backend

    backend_key = load_dev_backend(root)  # `caseloop up` made and registered it
    outcomes = asyncio.run(run_demo(urls, secret, cases, categories, grids, timeout, backend_key=backend_key))
    table = Table(title=f"{len(outcomes)} cases")
    for column in ("case", "category", "status", "rounds", "returns", "failed checks", "by hand"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.case_id[:8],
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
    app()
