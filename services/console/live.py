"""Live updates: one ordered JetStream consumer per console process, fanned out to its pages by SSE.

Each event becomes a short notice (`Notice`: its type, case, department, task or verification,
and the stream sequence as the SSE id); the page reloads what it shows through the APIs with the
person's own token. A client receives only the notices its session may see (`visible`). A client
that reconnects with Last-Event-ID N gets every notice after N that it may see, read again from the
stream, then the live ones, none twice and none missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.console.sessions import SESSION
from shared.domain.events import (
    CaseEscalated,
    CaseEvent,
    CaseReported,
    DeadlineWarned,
    TaskOverdue,
    VerificationRequested,
    department_of,
)
from shared.messaging.bus import delivered_from
from shared.runtime.service import JS, READY, SETTINGS
from shared.web.access import SEE_ALL_CASES
from shared.web.auth import Principal, Role
from shared.web.http import ProblemError

log = structlog.get_logger()

QUEUE = 1000  # notices a slow page may fall behind by; past that its stream ends and it resumes by id
REPLAY_MAX = 10_000  # past that many missed notices a page reloads instead of replaying
KNOWN_GRIDS = 200_000  # cases whose grid this process remembers, the latest first
PING_SECONDS = 15.0
RETRY_MS = 1000


class Notice(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a page learns of one event: enough to know what to reload, nothing of the reporter."""

    seq: int
    type: str
    case_id: UUID
    recorded_at: datetime
    department: str | None = None
    grid: str | None = None
    category: str | None = None
    task_id: UUID | None = None
    verification_id: UUID | None = None
    kind: str | None = None  # a deadline's kind ("accept" | "complete")


def notice(seq: int, event: CaseEvent, recorded_at: datetime) -> Notice:
    grid = category = kind = None
    if isinstance(event, CaseReported):
        grid, category = event.location.grid, event.category
    elif isinstance(event, VerificationRequested):
        grid = event.grid
    if isinstance(event, DeadlineWarned | TaskOverdue | CaseEscalated):
        kind = event.kind
    return Notice(
        seq=seq,
        type=type(event).__name__,
        case_id=event.case_id,
        recorded_at=recorded_at,
        department=department_of(event),
        grid=grid,
        category=category,
        task_id=getattr(event, "task_id", None) or _assigned_task(event),
        verification_id=getattr(event, "verification_id", None),
        kind=kind,
    )


def _assigned_task(event: CaseEvent) -> UUID | None:
    task = getattr(event, "task", None)
    return getattr(task, "task_id", None)


def visible(principal: Principal, item: Notice, grid: str | None) -> bool:
    """May this person see this notice? `grid`: the case's grid, as far as the console knows it.

    The command centre sees every case; a department's clerk only its own department's task events
    (what its NATS user may read: `<prefix>.*.<department>.>`); a grid worker only the cases of its
    grids. A case whose grid the console does not know is shown to no grid worker.
    """
    if principal.role in SEE_ALL_CASES:
        return True
    if principal.role is Role.HANDLER:
        return item.department is not None and item.department == principal.department
    if principal.role is Role.GRID_WORKER:
        return grid is not None and grid in principal.grids
    return False


class Client:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[Notice | None] = asyncio.Queue(QUEUE)


class Hub:
    """The fan-out: one ordered consumer in, a queue per connected page out."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.last_seq = 0  # the last stream sequence fanned out
        self.grids: OrderedDict[UUID, str] = OrderedDict()
        self.deadlines: dict[UUID, int] = {}  # tasks warned, overdue or escalated -> the last such sequence
        self.live = asyncio.Event()

    def grid_of(self, case_id: UUID) -> str | None:
        return self.grids.get(case_id)

    def learn(self, item: Notice) -> None:
        if item.grid is not None:
            self.grids[item.case_id] = item.grid
            self.grids.move_to_end(item.case_id)
            while len(self.grids) > KNOWN_GRIDS:
                self.grids.popitem(last=False)
        if item.type in DEADLINE_TYPES and item.task_id is not None:
            self.deadlines[item.task_id] = item.seq
        elif item.type in TASK_ENDS and item.task_id is not None:
            self.deadlines.pop(item.task_id, None)

    def publish(self, item: Notice) -> None:
        self.learn(item)
        self.last_seq = item.seq
        grid = self.grid_of(item.case_id)
        for client in list(self.clients):
            if visible(client.principal, item, grid):
                try:
                    client.queue.put_nowait(item)
                except asyncio.QueueFull:
                    # Too slow: end its stream; it comes back with its Last-Event-ID and replays.
                    self.clients.discard(client)
                    with contextlib.suppress(asyncio.QueueFull):
                        client.queue.get_nowait()
                        client.queue.put_nowait(None)


DEADLINE_TYPES = frozenset({"DeadlineWarned", "TaskOverdue", "CaseEscalated"})
TASK_ENDS = frozenset({"TaskCompleted", "TaskReturned", "TaskWithdrawn"})
HUB = web.AppKey("hub", Hub)


async def _read(sub: Any, timeout: float) -> Msg | None:
    try:
        msg: Msg = await sub.next_msg(timeout=timeout)
        return msg
    except (NatsTimeout, TimeoutError):
        return None


def _notice_of(msg: Msg) -> Notice | None:
    try:
        delivered = delivered_from(msg)
    except Exception:  # not an event this code knows: skipped, the sequence still moves on
        log.warning("live_event_undecodable", subject=msg.subject)
        return None
    return notice(msg.metadata.sequence.stream, delivered.event, delivered.recorded_at)


async def _ordered(js: JetStreamContext, stream: str, subjects: list[str], start: int) -> Any:
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start, filter_subjects=subjects
    )
    return await js.subscribe(subjects[0], stream=stream, ordered_consumer=True, config=config)


async def _nothing_to_read(sub: Any) -> bool:
    # Pushed messages leave num_pending at once: none pending and none delivered is none at all.
    info = await sub.consumer_info()
    return bool(info.num_pending == 0 and not info.delivered.consumer_seq)


async def live_loop(app: web.Application, stop: asyncio.Event) -> None:
    """The process's one live consumer: from the stream's end at start-up, every event, in order."""
    hub, js, settings = app[HUB], app[JS], app[SETTINGS]
    stream, prefix = settings.nats_stream, settings.subject_prefix
    if hub.last_seq == 0:
        head = (await js.stream_info(stream)).state.last_seq
        await _backfill_deadlines(js, stream, prefix, hub, head)
        hub.last_seq = head
    sub = await _ordered(js, stream, [f"{prefix}.>"], hub.last_seq + 1)
    app[READY]["live"] = True
    hub.live.set()
    log.info("live_started", from_seq=hub.last_seq + 1)
    try:
        while not stop.is_set():
            msg = await _read(sub, 0.5)
            if msg is None:
                continue
            seq = msg.metadata.sequence.stream
            if seq <= hub.last_seq:
                continue
            item = _notice_of(msg)
            if item is None:
                hub.last_seq = seq
                continue
            hub.publish(item)
    finally:
        app[READY]["live"] = False
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        for client in list(hub.clients):
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)


async def _backfill_deadlines(js: JetStreamContext, stream: str, prefix: str, hub: Hub, head: int) -> None:
    """The tasks warned, overdue or escalated before this process started: the board's candidates.

    Only those three event types are read; a task that has ended since drops out when the board
    asks the task API about it.
    """
    if head == 0:
        return
    subjects = [f"{prefix}.{t}.>" for t in sorted(DEADLINE_TYPES)]
    sub = await _ordered(js, stream, subjects, 1)
    try:
        if await _nothing_to_read(sub):
            return
        while (msg := await _read(sub, 5.0)) is not None:
            if msg.metadata.sequence.stream > head:
                break
            if (item := _notice_of(msg)) is not None:
                hub.learn(item)
            if msg.metadata.num_pending == 0 or msg.metadata.sequence.stream == head:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def replay(app: web.Application, after: int, upto: int) -> AsyncIterator[Notice]:
    """The stream's notices after `after` up to `upto`, read again (a reconnecting page's gap)."""
    if upto <= after:
        return
    settings = app[SETTINGS]
    sub = await _ordered(app[JS], settings.nats_stream, [f"{settings.subject_prefix}.>"], after + 1)
    try:
        if await _nothing_to_read(sub):  # expired from the stream since
            return
        while (msg := await _read(sub, 5.0)) is not None:
            seq = msg.metadata.sequence.stream
            if seq > upto:
                return
            if (item := _notice_of(msg)) is not None:
                yield item
            if seq >= upto or msg.metadata.num_pending == 0:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or ""
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _frame(item: Notice) -> bytes:
    return b"id: %d\nevent: notice\ndata: %s\n\n" % (item.seq, msgspec.json.encode(item))


async def events(request: web.Request) -> web.StreamResponse:
    """GET /api/events: text/event-stream of the notices this session may see."""
    hub, session = request.app[HUB], request[SESSION]
    if not hub.live.is_set():
        raise ProblemError(503, "Not ready", "the live stream is starting; retry", headers={"Retry-After": "1"})
    client = Client(session.principal)
    hub.clients.add(client)  # first: live notices queue up while the gap is replayed
    upto = hub.last_seq
    after = _last_event_id(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    sent = after if after is not None else upto
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        if after is not None and upto - after > REPLAY_MAX:
            await response.write(b'event: reset\ndata: {"reason": "too far behind"}\n\n')
            sent = upto
        elif after is not None:
            grids = dict(hub.grids)
            async for item in replay(request.app, after, upto):
                if item.grid is not None:
                    grids[item.case_id] = item.grid
                if visible(session.principal, item, grids.get(item.case_id)):
                    await response.write(_frame(item))
            sent = max(sent, upto)
        # The page reloads its lists on `hello`: what it shows and the notices after it line up.
        # Its id is the position reached, so a reconnect resumes from there even before any notice.
        hello = {"seq": sent, "role": str(session.principal.role), "replayed_from": after}
        await response.write(b"id: %d\nevent: hello\ndata: %s\n\n" % (sent, msgspec.json.encode(hello)))
        while session.expires > time.time():
            try:
                queued = await asyncio.wait_for(client.queue.get(), PING_SECONDS)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if queued is None:  # the process is stopping, or this page fell too far behind
                return response
            if queued.seq > sent:
                await response.write(_frame(queued))
                sent = queued.seq
        await response.write(b"event: signed-out\ndata: {}\n\n")
    except ConnectionResetError:
        pass  # the page went away
    finally:
        hub.clients.discard(client)
    return response
