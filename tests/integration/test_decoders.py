"""The decoders alone, no service around them: bodies and query parameters are checked before any
code sees them. Found by schemathesis: text PostgreSQL cannot store (NUL) and numbers its columns
cannot hold are 4xx, not 500. And a key given twice in one object, or a parameter twice, is refused
naming it, where json and most frameworks would silently keep the last.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from aiohttp import web

from services.intake.api import CaseQuery, CasesQuery, ReportIn
from shared.web.http import decode_body, json_response, parse_query, problems_middleware
from tests.integration.conftest import Client


class Query(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: str | None = None


async def echo_body(request: web.Request) -> web.Response:
    return json_response(await decode_body(request, ReportIn))


async def echo_query(request: web.Request) -> web.Response:
    return json_response(parse_query(request, Query))


async def case_query(request: web.Request) -> web.Response:
    return json_response(parse_query(request, CaseQuery))


async def cases_query(request: web.Request) -> web.Response:
    return json_response(parse_query(request, CasesQuery))


@pytest.fixture
def app() -> web.Application:
    app = web.Application(middlewares=[problems_middleware])
    app.router.add_post("/body", echo_body)
    app.router.add_get("/query", echo_query)
    app.router.add_get("/case", case_query)
    app.router.add_get("/cases", cases_query)
    return app


def report(alarm: str) -> bytes:
    body = {"source": "sensor", "category": "smoke", "location": {"grid": "g1"}, "device": {"id": "d1", "alarm": alarm}}
    return msgspec.json.encode(body)


async def test_a_nul_character_in_a_body_is_refused_as_invalid(client: Client) -> None:
    response = await client.post("/body", data=report("a\x00b"), headers={"Content-Type": "application/json"})
    assert response.status == 422
    assert response.content_type == "application/problem+json"


async def test_an_escaped_backslash_before_u0000_is_ordinary_text(client: Client) -> None:
    response = await client.post("/body", data=report("a\\u0000b"), headers={"Content-Type": "application/json"})
    assert response.status == 200
    assert (await response.json())["device"]["alarm"] == "a\\u0000b"


async def test_a_nul_character_in_a_query_parameter_is_a_bad_request(client: Client) -> None:
    response = await client.get("/query", params={"status": "open\x00"})
    assert response.status == 400
    assert response.content_type == "application/problem+json"


async def test_a_case_version_past_the_integer_column_is_a_bad_request(client: Client) -> None:
    response = await client.get("/case", params={"version": "1037201893231791439872"})
    assert response.status == 400
    assert (await client.get("/case", params={"version": str(2**31 - 1)})).status == 200


# --- repeated keys and parameters ------------------------------------------------------


ATTACHMENT = '{"url": "https://f.example/a.jpg", "sha256": "' + "a" * 64 + '", "media_type": "image/jpeg"}'
REPEATED = {
    "top-level": ('{"source": "citizen", "category": "pothole", "category": "smoke", "location": {"grid": "g"}}',
                  "/category"),
    "nested": ('{"source": "citizen", "category": "pothole", "location": {"grid": "g", "grid": "h"}}',
               "/location/grid"),
    "in-a-list": ('{"source": "citizen", "category": "c", "location": {"grid": "g"}, "attachments": ['
                  + ATTACHMENT + ', {"url": "https://f.example/b.jpg", "url": "https://f.example/c.jpg", "sha256": "'
                  + "b" * 64 + '", "media_type": "image/jpeg"}]}', "/attachments/1/url"),
    "spelt-with-an-escape": ('{"source": "citizen", "category": "pothole", "c\\u0061tegory": "smoke", '
                             '"location": {"grid": "g"}}', "/category"),
    "spaced-before-the-colon": ('{"source": "citizen", "category" : "a", "category"\n: "b", "location": {"grid": "g"}}',
                                "/category"),
}  # fmt: skip


@pytest.mark.parametrize("case", REPEATED)
async def test_a_key_given_twice_in_one_object_is_422_naming_it(client: Client, case: str) -> None:
    body, where = REPEATED[case]
    response = await client.post("/body", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 422, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    key = where.rsplit("/", 1)[-1]
    assert problem["errors"] == [{"pointer": where, "message": f"Object contains duplicate key `{key}`"}]


@pytest.mark.parametrize(
    "body",
    [
        # The same key in sibling objects, and a key's name as a value: not repeated keys.
        '{"source": "citizen", "category": "c", "location": {"grid": "g"}, "attachments": ['
        + ATTACHMENT
        + ", "
        + ATTACHMENT
        + "]}",
        '{"source": "citizen", "category": "category", "description": "\\"category\\": twice", '
        '"location": {"grid": "category"}}',
    ],
    ids=["sibling-objects", "names-as-values"],
)
async def test_equal_keys_in_different_objects_and_key_names_in_values_are_accepted(client: Client, body: str) -> None:
    response = await client.post("/body", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    sent, echoed = json.loads(body), await response.json()
    assert (echoed["category"], echoed["location"]["grid"]) == (sent["category"], sent["location"]["grid"])
    assert len(echoed["attachments"]) == len(sent.get("attachments", []))


async def test_malformed_json_with_a_repeated_key_is_still_malformed_json(client: Client) -> None:
    body = '{"category": "a", "category": "b", '
    response = await client.post("/body", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["title"] == "Malformed JSON"


async def test_a_query_parameter_given_twice_is_400_naming_it(client: Client) -> None:
    response = await client.get("/cases?page_size=5&grid=g&page_size=100")
    assert response.status == 400 and response.content_type == "application/problem+json"
    assert (await response.json())["errors"] == [{"parameter": "page_size", "message": "given more than once"}]
    assert (await client.get("/cases?page_size=5&grid=g")).status == 200
