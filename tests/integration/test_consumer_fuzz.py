"""Malformed and random messages on the event stream, fed to intake's real consumer: it keeps going.

Random bytes, valid JSON of the wrong shape, unknown `type` tags, missing or garbled CloudEvents
headers, and valid events mutated byte by byte are published straight onto the stream's
subjects. Each is either dead-lettered at once (it can never decode) or, if it happens to decode,
handled like any trigger (state comes from the log). Nothing is left pending, the consumer never
stops, and real events published after them are still handled. Deterministic (seeded).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.intake import handlers
from shared.base.config import Settings
from shared.domain.events import encode
from shared.messaging.bus import delivered_from
from shared.messaging.consumer import Consumer
from shared.runtime.service import consumer_spec
from shared.store.eventstore import EventStore, case_stream
from tests import examples
from tests.eventually import eventually
from tests.relaying import relaying

SEED = 20261126
Message = tuple[str, bytes, dict[str, str]]


@pytest.fixture
async def js(settings: Settings, store: EventStore) -> AsyncIterator[JetStreamContext]:
    async with relaying(settings, store, "consumer-fuzz") as running:
        yield running.js


def headers(kind: str = "CaseReported", **changes: str | None) -> dict[str, str]:
    base = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid4()),
        "ce-source": "/fuzz",
        "ce-type": f"caseloop.{kind}.v1",
        "ce-subject": f"case-{uuid4()}",
        "ce-time": "2026-11-26T09:00:00+00:00",
        "ce-sequence": "1",
        "ce-position": "1",
        "ce-correlationid": str(uuid4()),
    }
    base.update(changes)  # type: ignore[arg-type]
    return {name: value for name, value in base.items() if value is not None}


def valid_payload(rng: random.Random) -> bytes:
    return encode(examples.case_reported(case_id=UUID(int=rng.getrandbits(128)), description="模糊测试"))


def mutated(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        match rng.randrange(3):
            case 0:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            case 1:
                del raw[rng.randrange(len(raw)) :]
            case _:
                raw.insert(rng.randrange(len(raw) + 1), rng.choice(b'{}[]",:\\0x'))
        if not raw:
            raw = bytearray(b"{")
    return bytes(raw)


def wrong_shapes(case_id: str) -> list[Any]:
    return [
        None,
        [],
        42,
        "CaseReported",
        {},
        {"type": "CaseReported"},
        {"type": "CaseReported", "case_id": case_id},
        {"type": "CaseReported", "case_id": "not-a-uuid", "source": "citizen"},
        {"type": "CaseReported", "case_id": case_id, "source": 5, "category": [], "description": {}},
        {"type": "CaseExploded", "case_id": case_id},
        {"type": None, "case_id": case_id},
        {"type": "TaskAccepted", "case_id": case_id, "task_id": case_id, "department": 7, "by": "x"},
    ]


def messages(prefix: str) -> list[Message]:
    rng = random.Random(SEED)
    subject = f"{prefix}.CaseReported._.{uuid4()}"
    good = valid_payload(rng)
    out: list[Message] = [(subject, rng.randbytes(rng.randint(0, 300)), headers()) for _ in range(15)]
    out += [(subject, msgspec.json.encode(shape), headers()) for shape in wrong_shapes(str(uuid4()))]
    out += [(f"{prefix}.CaseExploded._.x", b'{"type":"CaseExploded"}', headers("CaseExploded"))]
    garbled: list[dict[str, str]] = [
        {},
        headers(**{"ce-type": None}),
        headers(**{"ce-id": None}),
        headers(**{"ce-id": "not-a-uuid"}),
        headers(**{"ce-subject": None}),
        headers(**{"ce-sequence": "abc"}),
        headers(**{"ce-time": "yesterday"}),
        headers(**{"ce-correlationid": "x"}),
        headers(**{"ce-type": "caseloop.CaseReported.vX"}),
        headers(**{"ce-type": "caseloop.CaseReported"}),
        headers(**{"ce-type": "somebody.else.CaseReported.v1"}),
        headers(**{"ce-type": "caseloop.CaseReported.v0"}),  # no upcaster from version 0
        headers(**{"ce-actor": "名字 with ünïcode", "ce-causationid": "nope"}),
        headers(**{"ce-type": "caseloop.Case\x00Reported.v1"}),
    ]
    out += [(subject, good, h) for h in garbled]
    out += [(subject, mutated(rng, valid_payload(rng)), headers()) for _ in range(30)]
    # Well-formed events of cases nobody reported: decodable, so handled (the log knows no such case).
    strays = [
        examples.task_accepted(),
        examples.case_handled(),
        examples.verification_requested(),
        *examples.until_verifying(),
    ]
    for event in strays:
        stray = msgspec.structs.replace(event, case_id=UUID(int=rng.getrandbits(128)))
        kind = type(event).__name__
        out.append((f"{prefix}.{kind}._.{stray.case_id}", encode(stray), headers(kind, **{"ce-actor": "名字 ünï"})))
    return out


def decodes(message: Message) -> bool:
    subject, data, hdrs = message
    try:
        delivered_from(Msg(_client=None, subject=subject, data=data, headers=hdrs))  # type: ignore[arg-type]
    except Exception:
        return False
    return True


async def test_malformed_messages_are_dead_lettered_and_the_events_after_them_still_handled(
    js: JetStreamContext, settings: Settings, store: EventStore, pool: asyncpg.Pool
) -> None:
    spec = consumer_spec(settings, handlers.CONSUMER, "*", max_deliver=2, ack_wait=2.0, nak_delay=0.05)
    consumer = Consumer(js, store, settings.nats_stream, spec, handlers.on_case_event)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    bad = messages(settings.subject_prefix)
    for subject, data, hdrs in bad:
        await js.publish(subject, data, headers=hdrs or None)
    undecodable = sum(not decodes(m) for m in bad)
    good = [uuid4() for _ in range(3)]
    for case_id in good:
        event = examples.case_reported(case_id=case_id)
        await store.append(case_stream(case_id), [event], expected_version=0, metadata=examples.METADATA)

    async def settled() -> bool:
        info = await js.consumer_info(settings.nats_stream, spec.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(lambda: consumer.dead_lettered + consumer.handled >= len(bad) + len(good), timeout=60)
    await eventually(settled, timeout=30)
    assert not task.done(), "the consumer stopped"
    rows = await pool.fetch("SELECT case_id FROM case_view WHERE case_id = ANY($1)", good)
    assert {r["case_id"] for r in rows} == set(good), "events after the bad messages were not handled"
    assert consumer.dead_lettered == undecodable
    assert await pool.fetchval("SELECT count(*) FROM dead_letters WHERE consumer = $1", spec.durable) == undecodable
    assert 0 < undecodable < len(bad)  # the mix has both kinds
    stop.set()
    await task
