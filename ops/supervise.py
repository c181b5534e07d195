"""`caseloop up` looks after what it started: a process that died is said on the console and started
again, an embedded PostgreSQL or nats-server with the same data folder and the same port, so that
the services (which reconnect on their own) carry on.

Only `caseloop up` runs this. The tests' Stack kills processes on purpose and restarts them itself.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from ops.servers import NatsServer, Postgres
from ops.stack import Process, Stack

# A process that dies again this soon after being started waits longer before the next try, so
# that one that cannot start (a server still shutting down, a broken setting) does not spin.
STEADY_SECONDS = 30.0
MAX_DELAY = 30.0


def backoff(failures: int) -> float:
    """Seconds to wait before the next start after `failures` quick deaths in a row: 0, 1, 2, 4 … 30."""
    return 0.0 if failures <= 0 else min(MAX_DELAY, 2.0 ** (failures - 1))


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class _Watch:
    started: float = 0.0
    failures: int = 0  # quick deaths in a row
    due: float = 0.0  # when the next start may be tried
    announced: bool = False  # the death has been said on the console


class Supervisor:
    def __init__(self, stack: Stack, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.stack = stack
        self.say = say
        self.clock = clock
        self.watches: dict[str, _Watch] = {}

    def check(self) -> None:
        """One round: the servers first (the services need them), then every service process."""
        if self.stack.postgres is not None:
            self._server("postgres", self.stack.postgres, self.stack.postgres.data_dir)
        if self.stack.nats is not None:
            self._server("nats-server", self.stack.nats, self.stack.nats.store_dir)
        if self.stack.nats_cluster is not None:
            for node in self.stack.nats_cluster.nodes:
                self._server(node.name, node, node.store_dir)
        for name, process in list(self.stack.processes.items()):
            self._service(name, process)

    def _died(self, name: str, proc: subprocess.Popen[bytes] | None, what: str) -> _Watch | None:
        """The watch of a process that is down and due to be started again, after saying so once."""
        watch = self.watches.setdefault(name, _Watch(started=self.clock()))
        if proc is not None and proc.poll() is None:
            return None
        now = self.clock()
        if not watch.announced:
            ended = "is not running" if proc is None else f"(pid {proc.pid}) died: {how_it_ended(proc.returncode)}"
            quick = now - watch.started < STEADY_SECONDS
            watch.failures = watch.failures + 1 if quick else 1
            watch.due = now + backoff(watch.failures - 1)
            wait = watch.due - now
            when = f" in {wait:.0f}s" if wait >= 1 else ""
            self.say(f"{name} {ended}; restarting it{when}{f' {what}' if what else ''}")
            watch.announced = True
        return watch if now >= watch.due else None

    def _server(self, name: str, server: Postgres | NatsServer, folder: object) -> None:
        watch = self._died(name, server.proc, f"with the same data ({folder}) on port {server.port}")
        if watch is None:
            return
        watch.started = self.clock()
        try:
            server.start()
        except Exception as exc:  # still shutting down, port not yet free: try again later
            server.proc = None
            watch.failures += 1
            watch.due = self.clock() + backoff(watch.failures - 1)
            self.say(f"{name} did not start: {exc}; trying again in {backoff(watch.failures - 1):.0f}s")
            return
        watch.announced = False
        self.say(f"{name} is running again (pid {server.proc.pid if server.proc else '?'}, port {server.port})")

    def _service(self, name: str, process: Process) -> None:
        watch = self._died(name, process.proc, "")
        if watch is None:
            return
        watch.started = self.clock()
        watch.announced = False
        process.start()
