"""The consumer kit every service uses: a durable pull consumer and an idempotent handler loop.

For each message: decode; in one PostgreSQL transaction check the inbox, run the handler
(which reads state from the log and appends), write the inbox row `(consumer, event_id)`;
commit; then ack. A redelivery after a crash between commit and ack finds the inbox row
and changes nothing.

Outages (the database or the network failing, `TRANSIENT`) are not counted against a message:
it is nak'ed with a delay, the worker pauses, and the message comes back later. Only the
handler's own failures count: each one adds to the message's row in `consumer_failures`
(consumer, event id), and the `max_deliver`-th is written to `dead_letters` and terminated,
so it never blocks the messages behind it; until then it is nak'ed with a growing delay.
JetStream's own delivery count is no measure of that: it also counts the redeliveries after
outage naks and after a consumer died holding the message (ack_wait ran out). So the server
never gives up on a message (its max_deliver is unlimited); our count decides. Nothing is
written on the happy path: a redelivery that succeeds deletes its count in its own COMMIT, a
dead letter deletes it in the same statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError

from shared.messaging.bus import Delivered, delivered_from
from shared.store.eventstore import ConcurrencyError, EventStore, Transaction

log = structlog.get_logger()

Handler = Callable[[Transaction, Delivered], Awaitable[None]]

# Failures of the infrastructure, not of the message: never counted against it.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08: the connection failed or is gone
    asyncpg.InterfaceError,
    # Class 57: the server shutting down (a restart ends every session with admin_shutdown),
    # crashed, starting up, or a statement cancelled by statement_timeout.
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full, out of memory
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)

# One more of the handler's own failures on an event; the count so far comes back.
_COUNT_FAILURE = """
    INSERT INTO consumer_failures AS f (consumer, event_id, failures, last_error) VALUES ($1, $2, 1, $3)
    ON CONFLICT (consumer, event_id)
    DO UPDATE SET failures = f.failures + 1, last_error = excluded.last_error, last_failed_at = now()
    RETURNING failures"""

# The dead letter, and the failure count that led to it gone with it: a message replayed from
# its dead letter later starts from nothing.
_DEAD_LETTER = """
    WITH cleared AS (DELETE FROM consumer_failures WHERE consumer = $1 AND event_id = $9)
    INSERT INTO dead_letters (consumer, stream_seq, subject, event_id, headers, payload, deliveries, error)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)
    ON CONFLICT (consumer, stream_seq) DO NOTHING"""


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    durable: str
    filter_subjects: tuple[str, ...]
    # The handler's own failures (outages never count) before the dead-letter record and term().
    max_deliver: int = 5
    ack_wait: float = 30.0
    max_ack_pending: int = 256
    nak_delay: float = 0.5
    batch: int = 32
    workers: int = 2


async def ensure_consumer(js: JetStreamContext, stream: str, spec: ConsumerSpec) -> None:
    """Create (or update) the durable explicitly: pull_subscribe would silently keep an old config."""
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=spec.durable,
            filter_subjects=list(spec.filter_subjects),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=spec.ack_wait,
            # Unlimited on the server: our own count (consumer_failures) decides when a message
            # is dead, so an hour-long database outage does not dead-letter everything in
            # flight. A durable made with a limit is updated to this at start (add_consumer
            # without an action is create-or-update).
            max_deliver=-1,
            max_ack_pending=spec.max_ack_pending,
        ),
    )


class Consumer:
    def __init__(self, js: JetStreamContext, store: EventStore, stream: str, spec: ConsumerSpec, handler: Handler):
        self.js = js
        self.store = store
        self.stream = stream
        self.spec = spec
        self.handler = handler
        self.handled = 0
        self.duplicates = 0  # redeliveries the inbox absorbed
        self.dead_lettered = 0
        self.failures = 0  # the handler's own failures counted
        self.outages = 0  # messages nak'ed because the infrastructure failed (never counted)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle until `stop` is set; in-flight messages finish first."""
        await self._bind_and_work(stop)

    async def _bind_and_work(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await ensure_consumer(self.js, self.stream, self.spec)
                sub = await self.js.pull_subscribe_bind(durable=self.spec.durable, stream=self.stream)
                break
            except Exception as exc:
                log.warning("consumer_bind_failed", consumer=self.spec.durable, error=str(exc) or repr(exc))
                await _sleep(stop, 1.0)
        else:
            return
        workers = [asyncio.create_task(self._work(sub, stop)) for _ in range(self.spec.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _work(self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event) -> None:
        pause = 0.1
        while not stop.is_set():
            try:
                msgs = await self._fetch(sub)
            except nats.errors.TimeoutError:  # nothing arrived: not an error
                continue
            except (
                ServiceUnavailableError,
                nats.errors.ConnectionClosedError,
                nats.errors.NoServersError,
            ) as exc:
                log.warning("consumer_fetch_unavailable", consumer=self.spec.durable, error=str(exc))
                await _sleep(stop, 1.0)
                continue
            except Exception as exc:
                log.warning("consumer_fetch_failed", consumer=self.spec.durable, error=str(exc) or repr(exc))
                await _sleep(stop, 1.0)
                continue
            if await self._handle_batch(msgs):
                # Let the rest of the batch time out and come back; do not spin.
                await _sleep(stop, pause)
                pause = min(pause * 2, 5.0)
            else:
                pause = 0.1

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        """The next message as soon as it is there, and more of the backlog if there is one.

        nats-py's fetch(n) that had to wait for its first message then waits out the rest of
        its timeout for the other n-1: up to a second of latency per hop when traffic is light.
        So wait for one; only when the server says more are pending (its `num_pending`) fetch
        them, which returns at once while they are there. (A very short fetch timeout is no
        answer: on Python 3.11 a timeout that fires as a message arrives drops it, and it
        only comes back after ack_wait.)
        """
        msgs = await sub.fetch(1, timeout=1.0)
        pending = msgs[0].metadata.num_pending or 0
        if self.spec.batch > 1 and pending > 0:
            with contextlib.suppress(nats.errors.TimeoutError):
                msgs += await sub.fetch(min(self.spec.batch - 1, pending), timeout=0.05)
        return msgs

    async def _handle_batch(self, msgs: list[Msg]) -> bool:
        """Each case's messages in order; the cases of a batch side by side. True on an outage.

        One message at a time left every other case of the batch waiting on one commit's
        WAL flush; side by side their commits share flushes. Order within a case is kept
        (it saves retries), though handlers never rely on it: they read the case from the log.
        """
        by_case: dict[str, list[Msg]] = {}
        for msg in msgs:
            by_case.setdefault(msg.subject.rsplit(".", 1)[-1], []).append(msg)

        async def in_order(case_msgs: list[Msg]) -> bool:
            for msg in case_msgs:
                if await self.handle(msg):
                    return True  # the rest come back after ack_wait
            return False

        return any(await asyncio.gather(*(in_order(m) for m in by_case.values())))

    async def handle(self, msg: Msg) -> bool:
        """Handle one message; True when the infrastructure is failing (caller backs off)."""
        try:
            delivered = delivered_from(msg)
        except Exception as exc:  # poison: it will never decode, however often we try
            return await self._dead_letter(msg, f"undecodable: {exc}", None)
        with structlog.contextvars.bound_contextvars(
            consumer=self.spec.durable,
            case_id=str(delivered.case_id),
            event_id=str(delivered.event_id),
            event_type=type(delivered.event).__name__,
            correlation_id=str(delivered.metadata.correlation_id),
        ):
            return await self._handle(msg, delivered)

    async def _handle(self, msg: Msg, delivered: Delivered) -> bool:
        # Only a redelivery can have a failure count to clear: the first delivery's COMMIT is as before.
        redelivered = (msg.metadata.num_delivered or 1) > 1
        heartbeat = asyncio.create_task(self._in_progress(msg))
        try:
            for attempt in range(5):
                try:
                    async with self.store.transaction() as tx:
                        if await tx.begin_handling(self.spec.durable, delivered.event_id, delivered.case_id):
                            self.duplicates += 1  # a redelivery: its effects were committed the first time
                            break
                        await self.handler(tx, delivered)
                        tx.inbox_on_commit = (self.spec.durable, delivered.event_id)  # a twin's row aborts us
                        tx.clear_failures_on_commit = redelivered
                    break
                except ConcurrencyError:
                    # The case moved while we decided: reload and decide again, now.
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.01 * (attempt + 1))
        except TRANSIENT as exc:
            return await self._outage(msg, exc)
        except Exception as exc:
            return await self._failed(msg, delivered, exc)
        finally:
            heartbeat.cancel()
        await _quietly(msg.ack())
        self.handled += 1
        return False

    async def _in_progress(self, msg: Msg) -> None:
        """Tell the server we are still working on a long message, so it is not redelivered."""
        while True:
            await asyncio.sleep(self.spec.ack_wait / 3)
            await _quietly(msg.in_progress())

    async def _outage(self, msg: Msg, exc: BaseException) -> bool:
        """Not the message's fault: nak it with a delay, count nothing, tell the worker to pause."""
        self.outages += 1
        log.warning("consumer_transient_failure", error=str(exc) or type(exc).__name__)
        await _quietly(msg.nak(delay=self.spec.nak_delay * 4))
        return True

    async def _failed(self, msg: Msg, delivered: Delivered, exc: Exception) -> bool:
        """The handler's own failure: count it; dead-letter at max_deliver, else nak with a growing delay."""
        error = f"{type(exc).__name__}: {exc}"
        try:
            failures = await self.store.pool.fetchval(
                _COUNT_FAILURE, self.spec.durable, delivered.event_id, error[:2000]
            )
        except Exception as count_exc:  # uncounted, so not given up on: it comes back when the database does
            log.warning("consumer_failure_not_counted", error=str(count_exc) or type(count_exc).__name__)
            return await self._outage(msg, count_exc)
        self.failures += 1
        deliveries = msg.metadata.num_delivered
        if failures >= self.spec.max_deliver:
            log.error("consumer_gave_up", failures=failures, deliveries=deliveries, error=error)
            return await self._dead_letter(msg, error, delivered.event_id)
        log.error("consumer_handler_failed", failures=failures, deliveries=deliveries, exc_info=exc)
        await _quietly(msg.nak(delay=min(self.spec.nak_delay * 2 ** (failures - 1), 30.0)))
        return False

    async def _dead_letter(self, msg: Msg, error: str, event_id: UUID | None) -> bool:
        """Record the message whole and term() it; True when the database could not take it."""
        meta = msg.metadata
        headers = dict(msg.headers or {})
        try:
            await self.store.pool.execute(
                _DEAD_LETTER,
                self.spec.durable,
                meta.sequence.stream,
                msg.subject,
                headers.get("ce-id"),
                msgspec.json.encode(headers).decode(),
                msg.data,
                meta.num_delivered,
                error[:2000],
                event_id,
            )
        except Exception as exc:  # no record, no term: it comes back when the database does
            log.warning("dead_letter_failed", error=str(exc))
            await _quietly(msg.nak(delay=self.spec.nak_delay * 4))
            return True
        await _quietly(msg.term())
        self.dead_lettered += 1
        log.error("dead_lettered", subject=msg.subject, stream_seq=meta.sequence.stream, error=error[:200])
        return False


async def _quietly(action: Awaitable[object]) -> None:
    """Acks are best effort: a lost ack means a redelivery, which the inbox absorbs."""
    with contextlib.suppress(Exception):
        await action


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
