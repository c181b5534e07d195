"""`caseloop projections rebuild [NAME]`: drop and rebuild read models from the log."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops.audit.rebuild import VIEWS
from ops.audit.rebuild import rebuild as rebuild_views
from ops.audit.store import admin_url
from ops.cli_options import RootOption

projections_app = typer.Typer(help="Read models are disposable: rebuild them from the log.", no_args_is_help=True)
console = Console()


@projections_app.command()
def rebuild(
    name: Annotated[
        str | None, typer.Argument(help=f"a view ({', '.join(VIEWS)}) or a service; all if omitted")
    ] = None,
    root: RootOption = None,
) -> None:
    """Truncate the read models and fold every case stream through each service's project function.

    Runs as the database owner (ADMIN_DATABASE_URL), in one transaction: services reading the
    views wait for it, then see the rebuilt rows.
    """
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("events folded", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            counts = asyncio.run(rebuild_views(admin_url(root), name, advance))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    table = Table(title="rebuilt")
    table.add_column("read model")
    table.add_column("rows", justify="right")
    for view, rows in counts.items():
        table.add_row(view, str(rows))
    console.print(table)
