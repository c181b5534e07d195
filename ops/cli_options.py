"""What every `caseloop` command shares: which stack it belongs to (--root), and how it reads times.

The stack is the folder `caseloop up` made: --root if given, else CASELOOP_HOME, else the nearest
`.caseloop/` in the current folder or one above it. Only `caseloop up` creates one; every other
command stops, naming CASELOOP_HOME, rather than make secrets the running stack does not know.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.web.ratelimit import LOCAL

HOME = "CASELOOP_HOME"
STACK_FOLDER = ".caseloop"
ZONE_HELP = "RFC 3339, e.g. 2026-11-26T09:30:00Z or 2026-11-26T17:30:00+08:00; without a zone, Asia/Shanghai time"

RootOption = Annotated[
    Path | None,
    typer.Option(help=f"the stack's folder (default: {HOME}, else the nearest {STACK_FOLDER}/ here or above)"),
]


class NoStack(LookupError):
    """No stack folder to use: the message says where we looked and how to point at one.

    `caseloop` prints it, without a traceback, and exits with 1."""


def find_root(given: Path | None = None, env: Mapping[str, str] = os.environ, cwd: Path | None = None) -> Path:
    """--root, else CASELOOP_HOME, else the nearest `.caseloop/` here or above; NoStack if none."""
    if given is not None:
        return given
    if env.get(HOME):
        return Path(env[HOME])
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STACK_FOLDER).is_dir():
            return folder / STACK_FOLDER
    raise NoStack(
        f"no caseloop stack: {HOME} is not set and there is no {STACK_FOLDER}/ folder in {here} or above it. "
        f"Run the command inside the folder where `caseloop up` runs, or set {HOME} (or --root) to the "
        f"folder `caseloop up` made."
    )


def stack_root(given: Path | None = None, env: Mapping[str, str] = os.environ, cwd: Path | None = None) -> Path:
    """The folder of a stack `caseloop up` has set up (its secrets are there); NoStack otherwise."""
    root = find_root(given, env, cwd)
    if not (root / "secrets.json").is_file():
        how = "--root" if given is not None else HOME if env.get(HOME) else "the folder found"
        raise NoStack(
            f"{root} is not a caseloop stack (no secrets.json; {how} names it). Start the stack there with "
            f"`caseloop up`, or set {HOME} (or --root) to the folder `caseloop up` made."
        )
    return root


def up_root(given: Path | None = None, env: Mapping[str, str] = os.environ, cwd: Path | None = None) -> Path:
    """Where `caseloop up` keeps its stack: the one the other commands would find, else `./.caseloop`."""
    try:
        return find_root(given, env, cwd)
    except NoStack:
        return (cwd or Path.cwd()) / STACK_FOLDER


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?P<zone>Z|[+-]\d{2}:\d{2})?)?", re.IGNORECASE
)


def parse_time(text: str) -> datetime:
    """RFC 3339 (`2026-11-26T09:30:00Z`, `2026-11-26T17:30:00+08:00`); a time without a zone, or a
    bare date, is local time in Asia/Shanghai, where the command centre works."""
    value = text.strip()
    if _RFC3339.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.upper())
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid time: {exc}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL)
    raise ValueError(f"{text!r} is not a time: use {ZONE_HELP}")


def _time_parameter(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def time_option(*names: str, help: str) -> Any:
    """A time option: parsed by parse_time, its help saying which forms it takes."""
    return typer.Option(*names, parser=_time_parameter, metavar="TIME", help=f"{help} ({ZONE_HELP})")
