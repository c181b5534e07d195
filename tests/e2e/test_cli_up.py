"""The real `caseloop up`, run as a user runs it, and the CLI around it as a new user meets it.

`up` keeps what it started running: a killed PostgreSQL or nats-server is said on its console and
started again with the same data on the same port, and the loop carries on. The other commands
find the stack from any folder below the one `up` made, and refuse (naming CASELOOP_HOME) where
there is none, creating nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from ops.cli_options import parse_time
from ops.servers import Postgres, free_port
from ops.stack import SERVICES
from tests import folders
from tests.e2e.client import Api
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
CASELOOP = str(Path(sys.executable).parent / "caseloop")
SHANGHAI = timezone(timedelta(hours=8))
# Only what a shell would have: no stack settings leak in from the test run.
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")


def user_env(**extra: str) -> dict[str, str]:
    return {**{k: os.environ[k] for k in KEPT if k in os.environ}, "COLUMNS": "200", **extra}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CASELOOP, *args], cwd=cwd, env=env or user_env(), capture_output=True, text=True, timeout=120, check=False
    )


# --- processes, read from /proc: what `up` started and whether it is gone ----------------


def _stat(pid: int) -> list[str] | None:
    """Fields after the command name: state, ppid, …, starttime at index 19."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its start time (a reused pid is not the same process)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            starts[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def alive(pid: int, start: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == start and fields[0] not in ("Z", "X")


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except OSError:  # gone meanwhile
        return [""]


def program(pid: int) -> str:
    return Path(command_line(pid)[0]).name


# --- the running `caseloop up` ----------------------------------------------------------


@dataclass
class Up:
    base: Path  # the folder `up` runs in; its stack is base/.caseloop
    proc: subprocess.Popen[str]
    ports: dict[str, int]
    pg_port: int
    nats_port: int
    lines: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.base / ".caseloop"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def said_since(self, mark: int) -> str:
        return "".join(self.lines[mark:])

    def postmaster_pid_file(self) -> Path:
        """Where the running cluster's lock file is: the data folder names it when run as root."""
        location = self.root / "postgres" / "pgdata-location"
        pgdata = Path(location.read_text().strip()) if location.exists() else self.root / "postgres" / "pgdata"
        return pgdata / "postmaster.pid"

    def postgres_pid(self) -> int:
        return int(self.postmaster_pid_file().read_text().split()[0])

    def nats_pid(self) -> int:
        [pid] = [p for p in descendants(self.proc.pid) if program(p) == "nats-server"]
        return pid


@pytest.fixture(scope="module")
def up() -> Iterator[Up]:
    base = folders.make("up")
    base.chmod(0o755)  # the PostgreSQL user (when run as root) reaches its data below
    ports = {service: free_port() for service in SERVICES}
    pg_port, nats_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            CASELOOP,
            "up",
            "--root",
            str(base / ".caseloop"),
            "--pg-port",
            str(pg_port),
            "--nats-port",
            str(nats_port),
            "--ports",
            ",".join(f"{service}={port}" for service, port in ports.items()),
        ],
        cwd=base,
        env=user_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Up(base, proc, ports, pg_port, nats_port)
    out = proc.stdout
    assert out is not None
    threading.Thread(target=lambda: running.lines.extend(iter(out.readline, "")), daemon=True).start()
    try:
        asyncio.run(eventually(lambda: "caseloop is up" in running.output or proc.poll() is not None, timeout=240))
        assert proc.poll() is None, running.output
        yield running
    finally:
        if proc.poll() is None:  # a test failed before stopping it: stop it, then anything left over
            left = descendants(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
            for pid, start in left.items():
                if alive(pid, start):
                    os.kill(pid, signal.SIGKILL)
        # `up`'s cluster (as root, its data and binaries live outside the folder) goes with it.
        folders.done(base, postgres=Postgres(base / ".caseloop" / "postgres"))


@pytest.fixture
async def api(up: Up) -> AsyncIterator[Api]:
    # The dev secrets and backend key `up` made in its folder.
    async with Api.at(up.root, {service: f"http://127.0.0.1:{port}" for service, port in up.ports.items()}) as api:
        yield api


async def every_service_ready(api: Api) -> bool:
    for url in api.info.urls.values():
        try:
            async with api.session.get(f"{url}/readyz") as response:
                if response.status != 200:
                    return False
        except aiohttp.ClientError:
            return False
    return True


# --- the CLI as a new user meets it ---------------------------------------------------------


def test_outside_any_stack_the_cli_stops_naming_caseloop_home_and_creates_nothing() -> None:
    elsewhere = Path(tempfile.mkdtemp(prefix="caseloop-elsewhere-"))
    try:
        assert not any((folder / ".caseloop").exists() for folder in (elsewhere, *elsewhere.parents))
        for args in (
            ("token", "--role", "dispatcher"),
            ("demo", "--cases", "1"),
            ("audit", "history", "00000000-0000-4000-8000-000000000001"),
            ("backends", "revoke", "some-key"),
        ):
            done = run(*args, cwd=elsewhere)
            assert done.returncode == 1, (args, done.stdout, done.stderr)
            assert "CASELOOP_HOME is not set" in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert done.stdout == ""  # no token printed
        # CASELOOP_HOME naming a folder `caseloop up` never made: refused too, nothing made there.
        home = elsewhere / "not-a-stack"
        done = run("token", "--role", "dispatcher", cwd=elsewhere, env=user_env(CASELOOP_HOME=str(home)))
        assert done.returncode == 1 and "CASELOOP_HOME names it" in done.stderr, done.stderr
        assert list(elsewhere.rglob("*")) == []
    finally:
        shutil.rmtree(elsewhere)


async def test_from_a_subfolder_the_cli_finds_the_stack_and_its_token_is_accepted(up: Up, api: Api) -> None:
    deep = up.base / "work" / "notes"
    deep.mkdir(parents=True, exist_ok=True)
    done = run("token", "--role", "dispatcher", "--sub", "new-user", cwd=deep)
    assert done.returncode == 0, done.stderr
    case_id = await api.report("blocked_drain")
    status, body = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=done.stdout.strip())
    assert status == 200 and body["id"] == case_id, body
    assert list(deep.iterdir()) == []  # it read the stack's secrets, made none here


async def test_audit_times_take_rfc_3339_with_a_zone_and_shanghai_time_without(up: Up, api: Api) -> None:
    case_id = await api.report("blocked_drain")
    await api.wait_status(case_id, "dispatched")
    recorded = datetime.fromisoformat((await api.history(case_id))[0]["recorded_at"])
    after, before = recorded + timedelta(seconds=61), recorded - timedelta(seconds=60)

    def forms(moment: datetime) -> list[str]:
        return [
            moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            moment.astimezone(SHANGHAI).isoformat(timespec="seconds"),  # …+08:00
            moment.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M:%S"),  # no zone: Shanghai time
            moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
        ]

    here = up.base / "work"
    here.mkdir(exist_ok=True)
    for text in forms(after):
        done = run("audit", "history", case_id, "--as-of", text, "--format", "json", cwd=here)
        assert done.returncode == 0, (text, done.stderr)
        assert json.loads(done.stdout)["case_id"] == case_id
    for text in forms(before):  # read as UTC, a zone-less Shanghai time would land 8 hours later
        done = run("audit", "history", case_id, "--as-of", text, cwd=here)
        assert done.returncode == 1 and "by then" in done.stderr, (text, done.stdout, done.stderr)

    # The forms the docs show: the same moment twice, answered as that moment must be.
    expected = 0 if recorded <= parse_time("2026-11-26T09:30:00Z") else 1
    for text in ("2026-11-26T09:30:00Z", "2026-11-26T17:30:00+08:00"):
        done = run("audit", "history", case_id, "--as-of", text, cwd=here)
        assert done.returncode == expected, (text, done.stdout, done.stderr)
    window = ("--from", "2026-11-26T09:30:00Z", "--to", "2026-11-26T17:30:00+08:00")
    done = run("audit", "kpi", *window, "--format", "csv", cwd=here)
    assert done.returncode == 0 and done.stdout.startswith("section,name,value"), done.stderr
    done = run("audit", "kpi", "--from", "yesterday", cwd=here)
    assert done.returncode == 2 and "'yesterday' is not a time: use RFC 3339" in done.stderr, done.stderr


# --- supervision ------------------------------------------------------------------------------


async def test_a_killed_postgresql_is_said_restarted_with_its_data_and_the_loop_goes_on(up: Up, api: Api) -> None:
    before = await api.report("blocked_drain")
    await api.wait_status(before, "dispatched")
    pid, mark = up.postgres_pid(), len(up.lines)

    os.kill(pid, signal.SIGKILL)

    back = f"postgres is running again (pid {{}}, port {up.pg_port})"
    await eventually(lambda: "postgres is running again" in up.said_since(mark), timeout=120, interval=0.2)
    said = up.said_since(mark)
    assert f"postgres (pid {pid}) died: killed by SIGKILL; restarting it with the same data" in said, said
    assert back.format(up.postgres_pid()) in said, said
    lock = up.postmaster_pid_file().read_text().split("\n")
    assert int(lock[0]) != pid and int(lock[3]) == up.pg_port  # a new server, on the same port
    await eventually(lambda: every_service_ready(api), timeout=120, interval=0.2)
    assert (await api.case(before))["status"] == "dispatched"  # the same data
    after = await api.report("blocked_drain")
    await api.wait_status(after, "dispatched", timeout=60)
    assert up.proc.poll() is None


async def test_a_killed_nats_server_is_said_restarted_with_its_data_and_the_loop_goes_on(up: Up, api: Api) -> None:
    pid, mark = up.nats_pid(), len(up.lines)
    conf = command_line(pid)[-1]

    os.kill(pid, signal.SIGKILL)

    await eventually(lambda: "nats-server is running again" in up.said_since(mark), timeout=120, interval=0.2)
    said = up.said_since(mark)
    assert f"nats-server (pid {pid}) died: killed by SIGKILL; restarting it with the same data" in said, said
    new = up.nats_pid()
    assert new != pid and command_line(new)[-1] == conf  # its own configuration: folder and port
    assert f"nats-server is running again (pid {new}, port {up.nats_port})" in said, said
    await eventually(lambda: every_service_ready(api), timeout=120, interval=0.2)
    case_id = await api.report("blocked_drain")
    await api.wait_status(case_id, "dispatched", timeout=60)
    assert up.proc.poll() is None


async def test_a_killed_service_is_said_and_restarted(up: Up, api: Api) -> None:
    [pid] = [p for p in descendants(up.proc.pid) if command_line(p)[-1] == "services.routing"]
    mark = len(up.lines)

    os.kill(pid, signal.SIGKILL)

    await eventually(lambda: f"routing (pid {pid}) died: killed by SIGKILL" in up.said_since(mark), timeout=60)
    await eventually(lambda: every_service_ready(api), timeout=120, interval=0.2)
    case_id = await api.report("blocked_drain")
    await api.wait_status(case_id, "dispatched", timeout=60)


def test_ctrl_c_stops_every_process_up_started(up: Up) -> None:
    started = descendants(up.proc.pid)
    names = {program(pid) for pid in started} | {command_line(pid)[-1] for pid in started}
    assert {"postgres", "nats-server", *(f"services.{s}" for s in SERVICES)} <= names, names

    up.proc.send_signal(signal.SIGINT)

    assert up.proc.wait(120) == 0, up.output
    assert up.output.rstrip().endswith("stopped."), up.output[-2000:]
    asyncio.run(eventually(lambda: not any(alive(pid, start) for pid, start in started.items()), timeout=30))
