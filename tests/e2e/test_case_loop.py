"""The closed loop, driven over HTTP only, with every service its own process."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from shared.web.auth import Role
from tests.e2e.client import EVIDENCE, ONCE, Api, token

pytestmark = pytest.mark.e2e


async def test_a_report_is_dispatched_handled_verified_and_closed(api: Api) -> None:
    case_id = await api.report("blocked_drain")
    [task] = await api.open_tasks(case_id, 1)
    assert task["department"] == "water"

    await api.work(task)
    status, body = await api.verify(case_id, passed=True)
    assert status == 200, body

    case = await api.wait_status(case_id, "closed")
    assert case["round"] == 1
    assert await api.types(case_id) == list(ONCE)  # report, dispatch, task, work, verification, close
    history = await api.history(case_id)
    assert [e["version"] for e in history] == list(range(1, len(history) + 1))
    positions = [e["position"] for e in history]
    assert positions == sorted(positions)


async def test_a_case_for_three_departments_is_handled_only_after_all_three_complete(api: Api) -> None:
    case_id = await api.report("gas_alarm")  # gas utility leads; emergency management and police co-handle
    tasks = await api.open_tasks(case_id, 3)
    assert sorted(t["department"] for t in tasks) == ["emergency_management", "gas_utility", "police"]

    for task in tasks[:2]:
        await api.work(task)
    case = await api.case(case_id)
    assert case["status"] == "in_progress"
    assert "CaseHandled" not in await api.types(case_id)

    await api.work(tasks[2])
    await api.wait_status(case_id, "verifying")
    assert Counter(await api.types(case_id))["CaseHandled"] == 1


async def test_a_failed_verification_reopens_the_case_and_round_two_closes_it(api: Api) -> None:
    case_id = await api.report("pothole")
    [first] = await api.open_tasks(case_id, 1)
    await api.work(first)
    status, body = await api.verify(case_id, passed=False)
    assert status == 200, body

    [second] = await api.open_tasks(case_id, 1)
    assert second["id"] != first["id"] and second["department"] == first["department"] and second["round"] == 2
    await api.work(second)
    status, body = await api.verify(case_id, passed=True)
    assert status == 200, body

    case = await api.wait_status(case_id, "closed")
    assert case["round"] == 2
    types = await api.types(case_id)
    assert types.count("VerificationFailed") == 1 and types.count("CaseReopened") == 1
    assert types.count("CaseHandled") == 2 and types[-1] == "CaseClosed"


async def test_a_returned_task_is_redispatched_to_the_next_department(api: Api) -> None:
    case_id = await api.report("blocked_drain")
    [task] = await api.open_tasks(case_id, 1)
    status, body = await api.task_command(task, "return", {"reason": "不是我们的管道"})
    assert status == 200, body

    async def redispatched() -> list[dict[str, object]]:
        return [t for t in (await api.case(case_id))["tasks"] if t["status"] == "dispatched"]

    from tests.eventually import eventually

    [replacement] = await eventually(redispatched)
    assert replacement["department"] == "city_management"
    await api.work(replacement)
    status, _ = await api.verify(case_id, passed=True)
    assert status == 200
    await api.wait_status(case_id, "closed")


async def test_an_unknown_category_waits_in_the_queue_and_is_dispatched_by_hand(api: Api) -> None:
    case_id = await api.report("bees_in_the_town_hall")
    case = await api.wait_status(case_id, "awaiting_dispatch")
    assert "no rule" in case["queued_reason"]

    async def queued() -> bool:
        status, body = await api.call("GET", "routing", "/v1/dispatch/queue", token=api.dispatcher())
        return status == 200 and case_id in [i["case_id"] for i in body["items"]]

    from tests.eventually import eventually

    await eventually(queued)
    status, body = await api.call(
        "POST",
        "routing",
        f"/v1/cases/{case_id}/dispatch",
        token=api.dispatcher(),
        json={"departments": ["parks", "emergency_management"]},
    )
    assert status == 200, body
    tasks = await api.open_tasks(case_id, 2)
    for task in tasks:
        await api.work(task)
    status, _ = await api.verify(case_id, passed=True)
    assert status == 200
    await api.wait_status(case_id, "closed")


async def test_a_thousand_identical_sensor_alarms_make_one_case(api: Api) -> None:
    body = {
        "source": "sensor",
        "category": "water_level_alarm",
        "location": {"grid": "hanfeng-hanfeng-01", "lat": 31.16, "lon": 108.39},
        "device": {"id": "WL-0042", "alarm": "water_level_high"},
    }
    token = api.backend()
    gate = asyncio.Semaphore(16)

    async def alarm() -> tuple[int, str]:
        async with gate:
            status, answer = await api.call("POST", "intake", "/v1/reports", token=token, json=body)
            return status, answer["case_id"]

    results = await asyncio.gather(*(alarm() for _ in range(1000)))
    assert {status for status, _ in results} <= {201, 202}
    assert len({case_id for _, case_id in results}) == 1
    assert [status for status, _ in results].count(201) == 1
    case = await api.case(results[0][1])
    assert case["repeat_count"] == 1000


async def test_a_retried_post_with_the_same_idempotency_key_makes_one_case(api: Api) -> None:
    body = {"source": "citizen", "category": "pothole", "location": {"grid": "zhendong-zhendong-01"}}
    headers = {"Idempotency-Key": "retry-7f3a"}
    first = await api.call("POST", "intake", "/v1/reports", token=api.backend(), json=body, headers=headers)
    again = await api.call("POST", "intake", "/v1/reports", token=api.backend(), json=body, headers=headers)
    assert first[0] == again[0] == 201
    assert first[1]["case_id"] == again[1]["case_id"]

    other = await api.call(
        "POST", "intake", "/v1/reports", token=api.backend(), json={**body, "description": "x"}, headers=headers
    )
    assert other[0] == 422 and other[1]["type"].endswith("idempotency-key-reused")


async def test_a_handler_of_another_department_finds_no_such_task(api: Api) -> None:
    case_id = await api.report("blocked_drain")
    [task] = await api.open_tasks(case_id, 1)
    await api.task_command(task, "accept")  # the view knows the task now
    status, body = await api.call(
        "POST", "handling", f"/v1/tasks/{task['id']}/accept", token=api.handler("police"), json={}
    )
    assert status == 404 and body["status"] == 404  # not revealed to another department


@pytest.mark.parametrize(
    "service, path",
    [
        ("intake", "/v1/reports"),
        ("handling", "/v1/tasks/00000000-0000-4000-8000-000000000001/accept"),
        ("verification", "/v1/verifications/00000000-0000-4000-8000-000000000001/pass"),
        ("routing", "/v1/cases/00000000-0000-4000-8000-000000000001/dispatch"),
    ],
)
async def test_no_token_is_401_as_problem_json(api: Api, service: str, path: str) -> None:
    status, body = await api.call("POST", service, path, json={})
    assert status == 401 and body["title"] == "Unauthorized"


async def test_a_forged_token_is_401(api: Api) -> None:
    forged = token("not-the-secret-but-long-enough-for-hs256", Role.DISPATCHER, "mallory")
    status, _ = await api.call("GET", "intake", "/v1/cases", token=forged)
    assert status == 401


@pytest.mark.parametrize(
    "body, pointer",
    [
        ({"source": "citizen", "category": "pothole", "location": {"lat": "north", "lon": 1}}, "/location/lat"),
        ({"source": "drone", "category": "pothole", "location": {"grid": "g"}}, "/source"),
        ({"source": "citizen", "location": {"grid": "g"}}, ""),
        ({"source": "citizen", "category": "pothole", "location": {"grid": "g"}, "extra": 1}, ""),
        ({"source": "sensor", "category": "smoke_alarm", "location": {"grid": "g"}}, "/device"),
        (
            {"source": "citizen", "category": "pothole", "location": {"grid": "g"}, "attachments": [{"url": "x"}]},
            "/attachments/0",
        ),
    ],
)
async def test_a_malformed_report_is_a_4xx_problem_naming_the_field(api: Api, body: object, pointer: str) -> None:
    status, answer = await api.call("POST", "intake", "/v1/reports", token=api.backend(), json=body)
    assert 400 <= status < 500, answer
    assert answer["status"] == status and answer["title"]
    if pointer:
        assert answer["errors"][0]["pointer"].startswith(pointer), answer


async def test_broken_json_and_oversized_bodies_are_4xx_never_500(api: Api) -> None:
    status, answer = await api.call("POST", "intake", "/v1/reports", token=api.backend(), data=b"{not json")
    assert status == 400 and answer["title"] == "Malformed JSON"
    huge = b'{"description": "' + b"x" * 70_000 + b'"}'
    status, answer = await api.call("POST", "intake", "/v1/reports", token=api.backend(), data=huge)
    assert status == 413 and answer["status"] == 413
    status, answer = await api.call(
        "POST", "handling", "/v1/tasks/not-a-uuid/complete", token=api.handler("water"), data=b"[]"
    )
    assert status in (404, 422)


async def test_evidence_is_required_to_complete_a_task(api: Api) -> None:
    case_id = await api.report("pothole")
    [task] = await api.open_tasks(case_id, 1)
    await api.task_command(task, "accept")
    status, answer = await api.task_command(task, "complete", {"result": "done", "evidence": []})
    assert status == 422 and answer["errors"][0]["pointer"].startswith("/evidence")
    status, answer = await api.task_command(task, "complete", {"result": "done", "evidence": EVIDENCE})
    assert status == 200, answer
