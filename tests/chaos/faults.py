"""The nemesis: kills, pauses and restarts processes and servers, and injects poison messages.

One fault at a time, at random moments: SIGKILL and restart of each service and the relay,
SIGSTOP of one for a few seconds (then SIGCONT), kill -9 and restart of nats-server, an
immediate (crash-like) stop and start of PostgreSQL, and malformed messages published on the
event subjects as the admin NATS user. Every fault is recorded with when it happened and how
long the system was without the process.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from dataclasses import dataclass, field

import nats

from ops.stack import SERVICES, Stack

PAUSE_SECONDS = 3.0
# Every kind of fault happens at least once per run, in a random order; then at random.
KINDS = ("kill", "pause", "nats", "postgres", "poison")


@dataclass
class Fault:
    kind: str  # kill | pause | nats | postgres | poison
    target: str
    at: float  # seconds since the run began
    seconds: float = 0.0  # how long until it was healed
    error: str = ""


@dataclass
class Poison:
    id: str  # the ce-id (and Nats-Msg-Id) it was published with
    subject: str


@dataclass
class Nemesis:
    stack: Stack
    rng: random.Random
    started: float
    gap: tuple[float, float] = (4.0, 9.0)  # seconds between faults
    faults: list[Fault] = field(default_factory=list)
    poisons: list[Poison] = field(default_factory=list)

    def first_round(self, poisons: int) -> list[tuple[str, str]]:
        """One of everything: each service killed, one paused, NATS, PostgreSQL, the poisons."""
        steps = [("kill", name) for name in SERVICES]
        steps += [("pause", self.rng.choice(SERVICES)), ("nats", "nats-server"), ("postgres", "postgres")]
        steps += [("poison", "stream")] * poisons
        self.rng.shuffle(steps)
        return steps

    def another(self) -> tuple[str, str]:
        kind = self.rng.choices(KINDS, [60, 15, 8, 4, 0])[0]
        target = {"nats": "nats-server", "postgres": "postgres"}.get(kind) or self.rng.choice(SERVICES)
        return kind, target

    async def run(self, stop: asyncio.Event, first: list[tuple[str, str]], keep_going: bool) -> None:
        """The first round whatever happens; then more until `stop`, when keep_going (the soak)."""
        queue = list(first)
        while queue or (keep_going and not stop.is_set()):
            await asyncio.sleep(self.rng.uniform(*self.gap))
            kind, target = queue.pop(0) if queue else self.another()
            fault = Fault(kind, target, time.monotonic() - self.started)
            self.faults.append(fault)
            begin = time.monotonic()
            try:
                await getattr(self, kind)(target)
            except Exception as exc:  # recorded; the heal phase puts everything back
                fault.error = f"{type(exc).__name__}: {exc}"
            fault.seconds = time.monotonic() - begin

    async def kill(self, name: str) -> None:
        process = self.stack.process(name)
        await asyncio.to_thread(process.kill)
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        await asyncio.to_thread(self.stack.restart, name, 90.0)

    async def pause(self, name: str) -> None:
        process = self.stack.process(name)
        process.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(PAUSE_SECONDS)
        finally:
            process.signal(signal.SIGCONT)

    async def nats(self, _: str) -> None:
        server = self.stack.nats
        assert server is not None
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        await asyncio.to_thread(server.start)

    async def postgres(self, _: str) -> None:
        server = self.stack.postgres
        assert server is not None
        await asyncio.to_thread(server.stop, "immediate")
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        await asyncio.to_thread(server.start)

    async def poison(self, _: str) -> None:
        """A malformed message on an event subject, published as the admin user."""
        prefix = self.stack.env.get("SUBJECT_PREFIX", "case")
        stream = self.stack.env.get("NATS_STREAM", "CASES")
        event_type = self.rng.choice(["CaseReported", "CaseHandled", "TaskCompleted", "VerificationFailed"])
        poison_id = str(uuid.uuid4())
        subject = f"{prefix}.{event_type}._.{uuid.uuid4()}"
        malformed = self.rng.choice(
            [
                ({"ce-id": poison_id, "ce-type": f"caseloop.{event_type}.v1"}, b"{not json"),
                ({"ce-id": poison_id, "ce-type": "somebody.else.v1"}, b"{}"),
                ({"ce-id": poison_id}, b'{"type": "CaseReported"}'),
                ({"ce-id": poison_id, "ce-type": f"caseloop.{event_type}.v1"}, b'{"type": "NoSuchEvent"}'),
            ]
        )
        headers, data = malformed
        nc = await nats.connect(self.stack.env["NATS_URL"], **self.stack.nats_admin, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=10)
            await js.publish(subject, data, stream=stream, headers={**headers, "Nats-Msg-Id": poison_id})
        finally:
            await nc.close()
        self.poisons.append(Poison(poison_id, subject))


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: `*` is one token, `>` the rest (one or more tokens)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def heal(stack: Stack) -> list[str]:
    """Everything running again: SIGCONT to all, servers and processes restarted where dead."""
    healed = []
    for process in stack.processes.values():
        process.signal(signal.SIGCONT)
    if stack.postgres is not None and (stack.postgres.proc is None or stack.postgres.proc.poll() is not None):
        stack.postgres.start()
        healed.append("postgres")
    if stack.nats is not None and (stack.nats.proc is None or stack.nats.proc.poll() is not None):
        stack.nats.start()
        healed.append("nats-server")
    for name in stack.names:
        proc = stack.process(name).proc
        if proc is None or proc.poll() is not None:
            stack.restart(name, 90.0)
            healed.append(name)
    stack.wait_ready(timeout=90.0)
    return healed
