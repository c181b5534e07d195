"""The temporary folders of tests, `make bench` and `make chaos`: servers' data, stacks' logs.

Each is removed when its user is done, pass or fail: one test session's PostgreSQL alone holds
more than a gigabyte. CASELOOP_KEEP=1 keeps them (to read a failed run's logs), and the run
ends with a line saying where they are. Names carry the process id (`caseloop-e2e-<pid>-…`), so
a run can tell its own folders from those of other runs on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ops.servers import HOMES, Postgres

KEEP = "CASELOOP_KEEP"
kept: list[Path] = []  # kept at the user's request, for the run's last line
_done: list[Path] = []  # every folder handed to done(), wherever it is (root's PostgreSQL home)


def keeping() -> bool:
    return os.environ.get(KEEP, "") not in ("", "0")


def make(kind: str) -> Path:
    """A new folder `caseloop-<kind>-<pid>-…` in the temporary folder (0700: only its maker enters)."""
    return Path(tempfile.mkdtemp(prefix=f"caseloop-{kind}-{os.getpid()}-"))


def done(*folders: Path, postgres: Postgres | None = None) -> None:
    """Stop `postgres`; remove the folders and its own ones (as root, some outside), unless kept."""
    paths = [*folders, *(postgres.folders if postgres is not None else [])]
    _done.extend(paths)
    if postgres is not None:
        postgres.stop()
    if keeping():
        kept.extend(path for path in paths if path not in kept)
        return
    if postgres is not None:
        postgres.remove()
    for path in folders:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def temporary(kind: str) -> Iterator[Path]:
    folder = make(kind)
    try:
        yield folder
    finally:
        done(folder)


def left_behind() -> list[Path]:
    """This process's folders still on disk, kept ones aside."""
    here = Path(tempfile.gettempdir()).glob(f"caseloop-*-{os.getpid()}-*")
    return sorted(path for path in {*here, *_done} if path.exists() and path not in kept)


def postgres_homes() -> set[Path]:
    """Root's PostgreSQL folders outside the checkout (ops.servers.HOMES), whoever made them."""
    return set(HOMES.glob("pg-*")) if HOMES.is_dir() else set()


def homes_left_behind(before: set[Path]) -> list[Path]:
    """Root's PostgreSQL folders made since `before` whose cluster was this process's (its folder
    names this pid) or whose folder is gone (nobody will remove them), kept ones aside."""
    left = []
    for home in sorted(postgres_homes() - before):
        owner = home / "checkout"
        checkout = owner.read_text().strip() if owner.exists() else ""
        if home not in kept and (f"-{os.getpid()}-" in checkout or not Path(checkout).exists()):
            left.append(home)
    return left


def last_line() -> str:
    """The run's last line: where the kept folders are, or how to keep them next time."""
    if kept:
        outermost = [path for path in kept if not any(other in path.parents for other in kept)]
        return f"kept ({KEEP}=1): " + " ".join(str(path) for path in outermost)
    return f"{KEEP}=1 keeps the temporary folders (servers' data and logs) to read after the run"
