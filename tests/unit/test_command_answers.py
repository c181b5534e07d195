"""The command loop's one retry policy, and the answers a request gets from it: 409, 503, 422."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from shared.domain.case import Refused
from shared.store.commands import ATTEMPTS, Busy, retrying
from shared.store.eventstore import ConcurrencyError
from shared.web.http import invalid, problems_middleware


class Moving:
    """An attempt whose append finds the case moved `times` times, then holds."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise ConcurrencyError("the case moved")
        return "appended"


async def test_a_stale_attempt_is_loaded_and_decided_again_until_it_holds() -> None:
    attempt = Moving(ATTEMPTS - 1)
    assert await retrying(attempt) == "appended"
    assert attempt.calls == ATTEMPTS


async def test_a_case_moving_under_every_attempt_is_busy_after_the_last() -> None:
    attempt = Moving(ATTEMPTS)
    with pytest.raises(Busy):
        await retrying(attempt)
    assert attempt.calls == ATTEMPTS


async def answer(error: Exception) -> tuple[int, dict[str, str], dict[str, object]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise error

    response = await problems_middleware(make_mocked_request("POST", "/v1/tasks/x/accept"), handler)
    assert isinstance(response, web.Response) and response.text is not None
    assert response.content_type == "application/problem+json"
    return response.status, dict(response.headers), json.loads(response.text)


async def test_a_busy_case_answers_503_with_retry_after() -> None:
    status, headers, body = await answer(Busy("moved"))
    assert (status, headers["Retry-After"], body["type"]) == (503, "1", "https://caseloop.dev/problems/busy")


async def test_a_refused_command_answers_409_with_the_reason() -> None:
    status, _, body = await answer(Refused("accept the task first"))
    assert (status, body["detail"], body["type"]) == (
        409,
        "accept the task first",
        "https://caseloop.dev/problems/conflict",
    )


def test_an_invalid_body_names_where_by_pointer_or_by_msgspec_path() -> None:
    by_pointer = invalid("a sensor report names its device", at="/device")
    by_path = invalid("Expected `int`, got `str` - at `$.priority`")
    assert (by_pointer.status, by_pointer.kind, by_pointer.errors) == (
        422,
        "invalid-body",
        [{"pointer": "/device", "message": "a sensor report names its device"}],
    )
    assert by_path.errors == [{"pointer": "/priority", "message": "Expected `int`, got `str`"}]
