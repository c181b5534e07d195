"""What `caseloop up` does each second about a dead process, with stand-ins for the processes and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ops.stack import Stack
from ops.supervise import Supervisor, backoff, how_it_ended


class FakeProc:
    def __init__(self, pid: int, returncode: int | None = None) -> None:
        self.pid = pid
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeServer:
    port: int
    data_dir: Path = Path("pg")
    proc: FakeProc | None = None
    fail_starts: int = 0  # the next starts that raise, as a server still shutting down would
    starts: int = 0

    def start(self) -> FakeServer:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("postgres exited with 1 before listening on 5432")
        self.proc = FakeProc(100 + self.starts)
        return self


@dataclass
class FakeProcess:
    proc: FakeProc | None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = FakeProc(200 + self.starts)


@dataclass
class FakeStack:
    postgres: FakeServer | None = None
    nats: Any = None
    nats_cluster: Any = None
    processes: dict[str, FakeProcess] = field(default_factory=dict)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(stack: FakeStack) -> tuple[Supervisor, list[str], Clock]:
    said: list[str] = []
    clock = Clock()
    return Supervisor(cast(Stack, stack), said.append, clock), said, clock


def test_the_wait_doubles_after_each_quick_death_up_to_half_a_minute() -> None:
    assert [backoff(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]


def test_the_end_of_a_process_is_named() -> None:
    assert how_it_ended(-9) == "killed by SIGKILL"
    assert how_it_ended(1) == "exit code 1"


def test_running_processes_are_left_alone_and_nothing_is_said() -> None:
    stack = FakeStack(postgres=FakeServer(5432, proc=FakeProc(7)), processes={"intake": FakeProcess(FakeProc(8))})
    watch, said, _ = supervisor(stack)
    watch.check()
    assert said == [] and stack.postgres is not None and stack.postgres.starts == 0
    assert stack.processes["intake"].starts == 0


def test_a_killed_server_is_said_and_started_again_on_its_port_with_its_data() -> None:
    stack = FakeStack(postgres=FakeServer(5432, Path("root/postgres"), proc=FakeProc(7)))
    watch, said, clock = supervisor(stack)
    watch.check()
    assert stack.postgres is not None
    stack.postgres.proc = FakeProc(7, returncode=-9)
    clock.now += 3600  # long after it started: restarted at once
    watch.check()
    assert stack.postgres.starts == 1 and stack.postgres.proc.pid == 101
    assert said == [
        "postgres (pid 7) died: killed by SIGKILL; restarting it with the same data (root/postgres) on port 5432",
        "postgres is running again (pid 101, port 5432)",
    ]


def test_a_server_that_cannot_start_yet_is_tried_again_later_not_every_second() -> None:
    stack = FakeStack(postgres=FakeServer(5432, proc=FakeProc(7, returncode=-9), fail_starts=2))
    watch, said, clock = supervisor(stack)
    watch.check()  # died right after it started: a first try at once, which fails
    assert stack.postgres is not None and stack.postgres.starts == 1
    assert said[-1].startswith("postgres did not start: postgres exited with 1") and said[-1].endswith("in 1s")
    watch.check()
    assert stack.postgres.starts == 1  # not yet
    clock.now += 1
    watch.check()
    assert stack.postgres.starts == 2 and said[-1].endswith("in 2s")
    clock.now += 2
    watch.check()
    assert stack.postgres.starts == 3 and said[-1] == "postgres is running again (pid 103, port 5432)"
    assert sum("died" in line for line in said) == 1  # the death is said once


def test_a_service_that_keeps_dying_is_restarted_with_a_growing_wait() -> None:
    intake = FakeProcess(FakeProc(8, returncode=1))
    watch, said, clock = supervisor(FakeStack(processes={"intake": intake}))
    watch.check()
    assert intake.starts == 1 and said == ["intake (pid 8) died: exit code 1; restarting it"]
    assert intake.proc is not None
    intake.proc.returncode = 1  # dies again at once
    watch.check()
    assert intake.starts == 1 and said[-1] == "intake (pid 201) died: exit code 1; restarting it in 1s"
    clock.now += 1
    watch.check()
    assert intake.starts == 2
    intake.proc.returncode = -15
    clock.now += 3600  # ran a long while before dying: no wait
    watch.check()
    assert intake.starts == 3 and said[-1] == "intake (pid 202) died: killed by SIGTERM; restarting it"
