"""handling over HTTP, in process, against real PostgreSQL and nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from aiohttp import web
from msgspec.structs import replace

from services.handling.app import spec
from services.handling.handlers import project_tasks
from shared.base.config import Settings
from shared.domain.case import replay
from shared.messaging.relay import Relay
from shared.runtime.service import build
from shared.store.eventstore import EventStore, case_stream
from shared.web.auth import Role
from tests import examples
from tests.e2e.client import EVIDENCE, bearer
from tests.eventually import eventually
from tests.integration.conftest import Client
from tests.relaying import relaying

SECRET = "handling-test-secret-of-at-least-32-bytes"
HANDLER = bearer(SECRET, Role.HANDLER, "zhang", department="sanitation")


@pytest.fixture
async def relay(settings: Settings, store: EventStore) -> AsyncIterator[Relay]:
    """The relay running, so appended events reach the stream and handling's consumer."""
    async with relaying(settings, store, "handling-test") as running:
        yield running.relay


@pytest.fixture
def app(settings: Settings, relay: Relay) -> web.Application:
    return build(replace(settings, jwt_secret=SECRET), spec(settings))


async def seed(store: EventStore, *departments: str) -> list[UUID]:
    """A case dispatched to the departments, one task each; returns the task ids in that order."""
    task_ids = [UUID(int=examples.TASK_ID.int + i) for i in range(len(departments))]
    events = [
        examples.case_reported(),
        examples.case_dispatched(*departments),
        *(examples.task_dispatched(t, d) for t, d in zip(task_ids, departments, strict=True)),
    ]
    await store.append(case_stream(examples.CASE_ID), events, expected_version=0, metadata=examples.METADATA)
    return task_ids


async def task_status(pool: asyncpg.Pool, task_id: UUID) -> str | None:
    status: str | None = await pool.fetchval("SELECT status FROM task_view WHERE task_id = $1", task_id)
    return status


async def seeded(store: EventStore, pool: asyncpg.Pool, *departments: str) -> list[UUID]:
    task_ids = await seed(store, *departments)
    for task_id in task_ids:
        await eventually(lambda task_id=task_id: task_status(pool, task_id))
    return task_ids


async def post(client: Client, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    response = await client.post(path, json=body, headers=HANDLER if headers is None else headers)
    return response.status, response.content_type, await response.json()


async def test_a_handler_accepts_and_completes_its_task_and_the_case_is_handled(
    client: Client, store: EventStore, pool: asyncpg.Pool
) -> None:
    [task_id] = await seeded(store, pool, "sanitation")

    accepted = await post(client, f"/v1/tasks/{task_id}/accept")
    completed = await post(client, f"/v1/tasks/{task_id}/complete", {"result": "疏通完毕", "evidence": EVIDENCE})

    assert accepted[0] == 200
    assert accepted[2] == {
        "task_id": str(task_id),
        "case_id": str(examples.CASE_ID),
        "version": 4,
        "status": "accepted",
        "changed": True,
    }
    assert completed[0] == 200
    assert completed[2]["status"] == "completed"
    assert completed[2]["version"] == 6
    rows = await store.read_stream(case_stream(examples.CASE_ID))
    assert [r.type for r in rows[3:]] == ["TaskAccepted", "TaskCompleted", "CaseHandled"]
    assert {r.metadata.actor for r in rows[3:]} == {"handler:zhang"}
    await eventually(lambda: pool.fetchval("SELECT status = 'completed' FROM task_view WHERE task_id = $1", task_id))


async def test_accepting_again_answers_unchanged(client: Client, store: EventStore, pool: asyncpg.Pool) -> None:
    [task_id] = await seeded(store, pool, "sanitation")
    await post(client, f"/v1/tasks/{task_id}/accept", {})

    status, _, body = await post(client, f"/v1/tasks/{task_id}/accept", {})

    assert status == 200
    assert body["changed"] is False
    assert body["status"] == "accepted"


async def test_a_handler_of_another_department_gets_404_as_for_no_task(
    client: Client, store: EventStore, pool: asyncpg.Pool
) -> None:
    [task_id] = await seeded(store, pool, "sanitation")
    water = bearer(SECRET, Role.HANDLER, "zhang", department="water")

    status, content_type, body = await post(client, f"/v1/tasks/{task_id}/accept", headers=water)
    read = await client.get(f"/v1/tasks/{task_id}", headers=water)
    _, _, absent = await post(client, f"/v1/tasks/{UUID(int=7)}/accept", headers=water)

    assert (status, content_type) == (404, "application/problem+json")
    assert {k: v for k, v in body.items() if k not in ("instance", "request_id")} == {
        k: v for k, v in absent.items() if k not in ("instance", "request_id")
    }  # another department's task cannot be told from no task at all
    assert read.status == 404
    assert len(await store.read_stream(case_stream(examples.CASE_ID))) == 3


async def test_a_request_without_a_token_gets_401(client: Client, store: EventStore, pool: asyncpg.Pool) -> None:
    [task_id] = await seeded(store, pool, "sanitation")

    status, content_type, _ = await post(client, f"/v1/tasks/{task_id}/accept", headers={})
    listing = await client.get("/v1/tasks")

    assert (status, content_type) == (401, "application/problem+json")
    assert listing.status == 401


async def test_a_dispatcher_may_read_tasks_but_not_act_on_them(
    client: Client, store: EventStore, pool: asyncpg.Pool
) -> None:
    [task_id] = await seeded(store, pool, "sanitation")

    read = await client.get(f"/v1/tasks/{task_id}", headers=bearer(SECRET, Role.DISPATCHER, "zhang"))
    status, _, _ = await post(client, f"/v1/tasks/{task_id}/accept", headers=bearer(SECRET, Role.DISPATCHER, "zhang"))

    assert read.status == 200
    body = await read.json()
    assert body["task"]["department"] == "sanitation"
    assert body["case"]["id"] == str(examples.CASE_ID)
    assert body["version"] == 3
    assert status == 403


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"result": "ok"}, "/evidence"),
        ({"result": "ok", "evidence": []}, "/evidence"),
        ({"result": 5, "evidence": EVIDENCE}, "/result"),
        ({"result": "ok", "evidence": [{"url": "https://x.example/a.jpg"}]}, "/evidence/0/sha256"),
        ({"result": "ok", "evidence": EVIDENCE, "extra": 1}, "/extra"),
    ],
    ids=["evidence-missing", "evidence-empty", "result-not-a-string", "attachment-incomplete", "unknown-field"],
)
async def test_a_malformed_completion_gets_422_naming_the_field(
    client: Client, store: EventStore, pool: asyncpg.Pool, body: dict[str, Any], pointer: str
) -> None:
    [task_id] = await seeded(store, pool, "sanitation")

    status, content_type, problem = await post(client, f"/v1/tasks/{task_id}/complete", body)

    assert (status, content_type) == (422, "application/problem+json")
    assert problem["errors"][0]["pointer"] == pointer


async def test_completing_before_accepting_gets_409(client: Client, store: EventStore, pool: asyncpg.Pool) -> None:
    [task_id] = await seeded(store, pool, "sanitation")

    status, content_type, body = await post(
        client, f"/v1/tasks/{task_id}/complete", {"result": "ok", "evidence": EVIDENCE}
    )

    assert (status, content_type) == (409, "application/problem+json")
    assert body["detail"] == "accept the task first"


async def test_an_unknown_task_gets_404(client: Client, store: EventStore, pool: asyncpg.Pool) -> None:
    await seeded(store, pool, "sanitation")

    status, _, _ = await post(client, f"/v1/tasks/{UUID(int=7)}/accept")

    assert status == 404


async def test_a_handler_lists_only_its_own_department(client: Client, store: EventStore, pool: asyncpg.Pool) -> None:
    sanitation, _ = await seeded(store, pool, "sanitation", "water")

    own = await client.get("/v1/tasks", headers=HANDLER)
    other = await client.get("/v1/tasks?department=water", headers=HANDLER)
    everything = await client.get("/v1/tasks", headers=bearer(SECRET, Role.SUPERVISOR, "zhang"))

    assert own.status == 200
    assert [t["id"] for t in (await own.json())["items"]] == [str(sanitation)]
    assert other.status == 403
    assert {t["department"] for t in (await everything.json())["items"]} == {"sanitation", "water"}


async def test_the_task_list_pages_with_a_cursor(client: Client, store: EventStore, pool: asyncpg.Pool) -> None:
    await seeded(store, pool, "sanitation", "water", "gas")
    supervisor = bearer(SECRET, Role.SUPERVISOR, "zhang")

    first = await (await client.get("/v1/tasks?page_size=2", headers=supervisor)).json()
    second = await (await client.get(f"/v1/tasks?page_size=2&cursor={first['next_cursor']}", headers=supervisor)).json()

    assert len(first["items"]) == 2
    assert second["next_cursor"] is None
    seen = [t["department"] for t in first["items"] + second["items"]]
    assert sorted(seen) == ["gas", "sanitation", "water"]


async def test_an_older_fold_never_overwrites_a_newer_task_row(store: EventStore, pool: asyncpg.Pool) -> None:
    [task_id] = await seed(store, "sanitation")
    older, version = await store.load(examples.CASE_ID)
    newer = replay([examples.task_accepted()], older)

    async with pool.acquire() as conn:
        await project_tasks(conn, newer, version + 1, examples.NOW)
        await project_tasks(conn, older, version, examples.NOW)

    assert await task_status(pool, task_id) == "accepted"
