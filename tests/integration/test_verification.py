"""The verification service in-process against real PostgreSQL and nats-server, the relay running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiohttp import web
from msgspec.structs import replace

from services.routing.planning import verifier_for
from services.verification import handlers
from services.verification.app import spec
from services.verification.decide import verification_id_for
from shared.base.config import Settings
from shared.domain.case import Status
from shared.domain.events import CaseEvent, CaseReopened, Location
from shared.domain.rules import load_policy
from shared.messaging.bus import Delivered
from shared.runtime.service import build
from shared.store.eventstore import EventStore, case_stream
from shared.web.auth import Role
from tests import examples
from tests.conftest import Database
from tests.e2e.client import EVIDENCE, bearer
from tests.eventually import eventually
from tests.integration.conftest import Client
from tests.relaying import relaying
from tests.signed import registered_backend, signed_call

SECRET = "verification-test-secret-of-32-bytes-or-more"
GRID = "wenfeng-tianehu-01"


class MovableClock:
    """The system clock plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def app(settings: Settings, store: EventStore, clock: MovableClock) -> AsyncIterator[web.Application]:
    """The app, plus a relay so appended events reach NATS and the app's consumer."""
    the_settings = replace(settings, jwt_secret=SECRET, deadline_interval=0.05)
    async with relaying(the_settings, store, "verification-test"):
        yield build(the_settings, spec(the_settings), clock=clock)


GRID_WORKER = bearer(SECRET, Role.GRID_WORKER, "gw-1", grids=(GRID,))
OTHER_GRID_WORKER = bearer(SECRET, Role.GRID_WORKER, "gw-2", grids=("hanfeng-01",))
DISPATCHER = bearer(SECRET, Role.DISPATCHER, "d-1")


async def seed_handled_case(store: EventStore, category: str = "blocked_drain", **case: Any) -> UUID:
    """A case reported, dispatched to one department, worked and handled: ready for verification.

    The dispatch names the verifier the shipped rules give the category, as routing's would.
    """
    case_id = uuid4()
    verifier = verifier_for(load_policy().route(category, "wenfeng"), category)
    _, dispatched, *worked = examples.until_verifying()[:-1]
    events: list[CaseEvent] = [
        examples.case_reported(category=category, **case),
        replace(dispatched, verifier=verifier),
        *worked,
    ]
    await store.append(
        case_stream(case_id),
        [replace(e, case_id=case_id) for e in events],
        expected_version=0,
        metadata=examples.METADATA,
    )
    return case_id


async def verification_of(pool: asyncpg.Pool, case_id: UUID) -> Any:
    """The case's verification, once the consumer has requested it."""
    return await eventually(lambda: pool.fetchrow("SELECT * FROM verification_view WHERE case_id = $1", case_id))


async def types_of(store: EventStore, case_id: UUID) -> list[str]:
    return [r.type for r in await store.read_stream(case_stream(case_id))]


# --- requesting -----------------------------------------------------------------------


async def test_a_handled_case_gets_one_grid_worker_verification_even_when_redelivered(
    client: Client, store: EventStore, pool: asyncpg.Pool, clock: MovableClock
) -> None:
    case_id = await seed_handled_case(store)
    row = await verification_of(pool, case_id)
    assert row["verification_id"] == verification_id_for(case_id, 1)
    assert (row["kind"], row["grid"], row["outcome"], row["respond_by"]) == ("grid_worker", GRID, "pending", None)

    # CaseHandled delivered once more (an ack that never arrived): nothing new is appended.
    handled = (await store.read_stream(case_stream(case_id)))[-2]
    assert handled.type == "CaseHandled"
    again = Delivered(
        event_id=handled.event_id,
        stream_id=handled.stream_id,
        version=handled.version,
        position=handled.position,
        event=handled.event(),
        metadata=handled.metadata,
        recorded_at=handled.recorded_at,
    )
    async with store.transaction() as tx:
        await handlers.on_case_event(tx, again, respond_within=timedelta(), clock=clock)
    assert (await types_of(store, case_id)).count("VerificationRequested") == 1

    response = await client.get(f"/v1/verifications/{row['verification_id']}", headers=GRID_WORKER)
    assert response.status == 200
    assert (await response.json())["case_id"] == str(case_id)


async def test_a_case_without_a_grid_gets_a_verification_that_a_dispatcher_records(
    client: Client, store: EventStore, pool: asyncpg.Pool
) -> None:
    case_id = await seed_handled_case(store, location=Location(lat=31.16, lon=108.39))
    row = await verification_of(pool, case_id)
    assert row["grid"] is None

    denied = await client.post(
        f"/v1/verifications/{row['verification_id']}/pass", json={"evidence": EVIDENCE}, headers=GRID_WORKER
    )
    assert denied.status == 404  # in no grid of the worker's: not visible to it
    response = await client.post(f"/v1/verifications/{row['verification_id']}/pass", json={}, headers=DISPATCHER)
    assert response.status == 200
    assert (await store.load(case_id))[0].status is Status.CLOSED


# --- recording ------------------------------------------------------------------------


async def test_the_grid_worker_of_the_grid_passes_and_the_case_closes(
    client: Client, store: EventStore, pool: asyncpg.Pool
) -> None:
    case_id = await seed_handled_case(store)
    verification_id = (await verification_of(pool, case_id))["verification_id"]
    url = f"/v1/verifications/{verification_id}/pass"

    response = await client.post(url, json={"evidence": EVIDENCE, "note": "路面已干"}, headers=GRID_WORKER)
    assert response.status == 200
    body = await response.json()
    assert body["outcome"] == "passed" and body["changed"] is True and body["case_id"] == str(case_id)
    case, version = await store.load(case_id)
    assert case.status is Status.CLOSED and body["version"] == version

    retried = await client.post(url, json={"evidence": EVIDENCE}, headers=GRID_WORKER)
    assert retried.status == 200
    assert (await retried.json())["changed"] is False
    failed_after = await client.post(
        f"/v1/verifications/{verification_id}/fail", json={"reason": "no"}, headers=DISPATCHER
    )
    assert failed_after.status == 409
    assert failed_after.content_type == "application/problem+json"
    assert await pool.fetchval("SELECT outcome FROM verification_view WHERE case_id = $1", case_id) == "passed"


async def test_a_grid_worker_of_another_grid_may_not_verify(
    client: Client, store: EventStore, pool: asyncpg.Pool
) -> None:
    case_id = await seed_handled_case(store)
    verification_id = (await verification_of(pool, case_id))["verification_id"]

    response = await client.post(
        f"/v1/verifications/{verification_id}/pass", json={"evidence": EVIDENCE}, headers=OTHER_GRID_WORKER
    )
    assert response.status == 404  # as for no verification at all: another grid's is not revealed
    assert (await store.load(case_id))[0].status is Status.VERIFYING
    hidden = await client.get(f"/v1/verifications/{verification_id}", headers=OTHER_GRID_WORKER)
    assert hidden.status == 404
    listed = await client.get("/v1/verifications", headers=OTHER_GRID_WORKER)
    assert (await listed.json())["items"] == []


async def test_a_failed_verification_reopens_the_case_as_round_two(
    client: Client, store: EventStore, pool: asyncpg.Pool
) -> None:
    case_id = await seed_handled_case(store)
    verification_id = (await verification_of(pool, case_id))["verification_id"]

    response = await client.post(
        f"/v1/verifications/{verification_id}/fail",
        json={"reason": "仍有积水", "evidence": EVIDENCE},
        headers=GRID_WORKER,
    )
    assert response.status == 200
    assert (await response.json())["outcome"] == "failed"
    reopened = (await store.read_stream(case_stream(case_id)))[-1].event()
    assert reopened == CaseReopened(case_id=case_id, round=2, departments=("sanitation",))
    case, _ = await store.load(case_id)
    assert (case.status, case.round) == (Status.REOPENED, 2)

    pending = await client.get("/v1/verifications", params={"status": "pending"}, headers=DISPATCHER)
    assert (await pending.json())["items"] == []


async def test_a_reporter_backend_confirms_only_reporter_confirmations_of_its_own_cases(
    client: Client, store: EventStore, pool: asyncpg.Pool, database: Database
) -> None:
    drain = (await verification_of(pool, await seed_handled_case(store)))["verification_id"]
    noise = (await verification_of(pool, await seed_handled_case(store, "noise_complaint")))["verification_id"]
    backend = await registered_backend(database.owner_url, "backend:wechat")
    other = await registered_backend(database.owner_url, "backend:other")

    denied = await signed_call(client, backend, "POST", f"/v1/verifications/{drain}/pass", {})
    assert denied.status == 403
    stranger = await signed_call(client, other, "POST", f"/v1/verifications/{noise}/pass", {})
    assert stranger.status == 404  # another backend's case: not revealed
    unsigned = await client.post(
        f"/v1/verifications/{noise}/pass", json={}, headers=bearer(SECRET, Role.REPORTER_BACKEND, "backend:wechat")
    )
    assert unsigned.status == 401  # a backend signs; a bearer token is not enough
    confirmed = await signed_call(client, backend, "POST", f"/v1/verifications/{noise}/pass", {})
    assert confirmed.status == 200


# --- closing by default ---------------------------------------------------------------


async def test_an_unanswered_reporter_confirmation_closes_by_default_exactly_once(
    client: Client, store: EventStore, pool: asyncpg.Pool, clock: MovableClock
) -> None:
    case_id = await seed_handled_case(store, "noise_complaint")
    row = await verification_of(pool, case_id)
    assert row["kind"] == "reporter"
    assert row["respond_by"] - clock() > timedelta(hours=71)
    assert (await store.load(case_id))[0].status is Status.VERIFYING

    clock.offset = timedelta(hours=73)

    async def closed() -> bool:
        return (await types_of(store, case_id)).count("CaseClosed") == 1

    await eventually(closed)
    # A second timer (another instance, or this one restarted) racing over the same rows.
    await asyncio.gather(*(handlers.close_due_verifications(store, clock()) for _ in range(3)))
    await handlers.close_by_default(store, case_id, row["verification_id"], clock())
    types = await types_of(store, case_id)
    assert types.count("CaseClosed") == 1 and types.count("VerificationPassed") == 1
    case, _ = await store.load(case_id)
    assert case.closed_by_default and case.verification is not None and case.verification.by == "system:default"
    outcome = await pool.fetchval("SELECT outcome FROM verification_view WHERE case_id = $1", case_id)
    assert outcome == "passed"


# --- the HTTP contract ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "body", "field"),
    [
        ("fail", {}, "reason"),
        ("fail", {"reason": ""}, "/reason"),
        ("pass", {"evidence": []}, "/evidence"),
        ("pass", {"evidence": [{**EVIDENCE[0], "sha256": "nope"}]}, "/evidence/0/sha256"),
        ("pass", {"evidence": EVIDENCE, "verdict": "ok"}, "verdict"),
    ],
)
async def test_a_malformed_body_is_refused_naming_the_field(
    client: Client, store: EventStore, pool: asyncpg.Pool, verdict: str, body: Any, field: str
) -> None:
    verification_id = (await verification_of(pool, await seed_handled_case(store)))["verification_id"]
    response = await client.post(f"/v1/verifications/{verification_id}/{verdict}", json=body, headers=GRID_WORKER)
    assert response.status == 422
    problem = await response.json()
    assert field in problem["detail"]


async def test_a_request_without_a_token_is_unauthorized(client: Client) -> None:
    response = await client.get("/v1/verifications")
    assert response.status == 401
    posted = await client.post(f"/v1/verifications/{uuid4()}/pass", json={})
    assert posted.status == 401


async def test_an_unknown_verification_is_not_found(client: Client) -> None:
    assert (await client.get(f"/v1/verifications/{uuid4()}", headers=DISPATCHER)).status == 404
    response = await client.post(f"/v1/verifications/{uuid4()}/fail", json={"reason": "x"}, headers=DISPATCHER)
    assert response.status == 404
