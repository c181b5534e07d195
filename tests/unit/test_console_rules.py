"""The console's pure rules: who sees which live notice, sealed sessions, the cross-site check."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import UUID

import pytest
from aiohttp.test_utils import make_mocked_request

from services.console.live import Notice, notice, visible
from services.console.sessions import Sessions, SignInRefused, cross_site
from shared.base.config import Settings
from shared.personal.pii import new_key
from shared.web.auth import Principal, Role, issue_token
from tests import examples

AT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
SECRET = "unit-test-jwt-secret-of-enough-length"
CASE = UUID(int=1)


def item(type: str = "TaskDispatched", department: str | None = None) -> Notice:
    return Notice(seq=1, type=type, case_id=CASE, recorded_at=AT, department=department)


def test_the_command_centre_sees_every_notice_a_clerk_only_its_departments_a_grid_worker_only_its_grids() -> None:
    water = Principal(sub="w", role=Role.HANDLER, department="water")
    worker = Principal(sub="g", role=Role.GRID_WORKER, grids=("wenfeng-tianehu-01",))
    for role in (Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR):
        assert visible(Principal(sub="x", role=role), item(), None)
    assert visible(water, item(department="water"), None)
    assert not visible(water, item(department="parks"), "wenfeng-tianehu-01")
    assert not visible(water, item(type="CaseReported"), None)  # case-level: not a task of theirs
    assert visible(worker, item(), "wenfeng-tianehu-01")
    assert not visible(worker, item(), "hanfeng-hanfeng-01")
    assert not visible(worker, item(), None)  # a grid the console does not know: shown to no grid worker
    assert not visible(Principal(sub="b", role=Role.REPORTER_BACKEND), item(), "wenfeng-tianehu-01")


def test_a_notice_carries_the_department_and_grid_but_nothing_of_the_reporter() -> None:
    reported = notice(7, examples.case_reported(), AT)
    assert (reported.seq, reported.type, reported.grid, reported.department) == (
        7,
        "CaseReported",
        "wenfeng-tianehu-01",
        None,
    )
    assert set(type(reported).__struct_fields__) == {
        "seq", "type", "case_id", "recorded_at", "department", "grid", "category", "task_id", "verification_id", "kind"
    }  # fmt: skip


def sessions(now: float | None = None) -> Sessions:
    settings = Settings(jwt_secret=SECRET, console_session_key=new_key(), console_session_hours=8)
    return Sessions(settings, now=(lambda: now) if now is not None else time.time)


def test_a_session_opens_with_its_own_key_only_and_not_after_it_ends_or_is_revoked() -> None:
    token = issue_token(SECRET, sub="d1", role=Role.DISPATCHER, ttl_seconds=3600)
    keeper = sessions()
    value, session = keeper.sign_in(token)
    assert keeper.open(value) == session and session.principal.role is Role.DISPATCHER
    assert session.expires <= time.time() + 3600  # never past the token's own expiry
    assert sessions().open(value) is None  # another key
    assert keeper.open(value[:-2] + ("AA" if value[-2:] != "AA" else "BB")) is None
    assert keeper.open("") is None and keeper.open("not base64 at all!") is None
    later = sessions(now=time.time() + 7200)
    assert later.open(later.seal(session)) is None  # past its end
    keeper.revoke(session)
    assert keeper.open(value) is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "empty"),
        ("x.y.z", "invalid"),
        (issue_token(SECRET, sub="b", role=Role.REPORTER_BACKEND), "role"),
        (issue_token(SECRET, sub="d", role=Role.DISPATCHER, ttl_seconds=-10), "expired"),
        (issue_token("another-secret-of-enough-length-xx", sub="d", role=Role.DISPATCHER), "invalid"),
    ],
)
def test_sign_in_refuses_what_is_not_a_staff_members_valid_token(token: str, reason: str) -> None:
    with pytest.raises(SignInRefused) as refused:
        sessions().sign_in(token)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("GET", {}, False),
        ("POST", {"Origin": "http://console.test"}, False),
        ("POST", {"Origin": "http://console.test", "Sec-Fetch-Site": "same-origin"}, False),
        ("POST", {}, True),
        ("POST", {"Origin": "http://evil.test"}, True),
        ("POST", {"Origin": "null"}, True),
        ("DELETE", {"Origin": "http://console.test", "Sec-Fetch-Site": "same-site"}, True),
    ],
)
def test_state_changing_requests_must_come_from_the_consoles_own_origin(
    method: str, headers: dict[str, str], refused: bool
) -> None:
    request = make_mocked_request(method, "/api/v1/cases", headers={"Host": "console.test", **headers})
    assert (cross_site(request, Settings()) is not None) is refused
    behind_proxy = Settings(console_origin="https://console.example.gov.cn")
    ok = make_mocked_request("POST", "/signout", headers={"Origin": "https://console.example.gov.cn"})
    assert cross_site(ok, behind_proxy) is None
