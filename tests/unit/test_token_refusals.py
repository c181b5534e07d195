"""A refused bearer token is 401 with one of our own sentences; `exp` must be strictly in the
future (no leeway), `sub` must name someone; `iat` keeps LEEWAY for an issuer's clock skew.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from shared.web import auth
from shared.web.auth import LEEWAY, Role, TokenRefusal, issue_token, verify_token
from shared.web.http import ProblemError

SECRET = "token-refusals-secret-" + "s" * 48  # 64 bytes and more: long enough for HS512 too


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "d-1", "role": "dispatcher", "iss": "caseloop", "aud": "caseloop"}
    base.update(iat=now, exp=now + 86_400)  # still valid however long the suite runs
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256", **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers or None)


def refusal(token: str) -> str:
    with pytest.raises(ProblemError) as refused:
        verify_token(token, SECRET, issuer="caseloop", audience="caseloop")
    assert refused.value.status == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
    return refused.value.detail


TOKENS = {
    "expired": (signed(claims(exp=int(time.time()) - 3600)), TokenRefusal.EXPIRED),
    "bad-signature": (signed(claims(), secret="another-secret-of-32-bytes-or-more!"), TokenRefusal.BAD_SIGNATURE),
    "wrong-audience": (signed(claims(aud="someone-else")), TokenRefusal.WRONG_AUDIENCE),
    "wrong-issuer": (signed(claims(iss="someone-else")), TokenRefusal.WRONG_ISSUER),
    "no-exp": (signed(claims(exp=None)), TokenRefusal.MISSING_CLAIM),
    "no-sub": (signed(claims(sub=None)), TokenRefusal.MISSING_CLAIM),
    "issued-in-the-future": (signed(claims(iat=int(time.time()) + 3600)), TokenRefusal.NOT_YET_VALID),
    "not-before-later": (signed(claims(nbf=int(time.time()) + 3600)), TokenRefusal.NOT_YET_VALID),
    "algorithm-none": (signed(claims(), secret="", algorithm="none"), TokenRefusal.ALGORITHM),
    "hs512": (signed(claims(), algorithm="HS512"), TokenRefusal.ALGORITHM),
    "not-a-jwt": ("not.a.jwt", TokenRefusal.MALFORMED),
    "garbage": ("x" * 40, TokenRefusal.MALFORMED),
    "exp-not-a-number": (signed(claims(exp="soon")), TokenRefusal.MALFORMED),
    "unknown-role": (signed(claims(role="mayor")), TokenRefusal.CLAIMS),
    "grids-not-a-list": (signed(claims(role="grid_worker", grids="g1")), TokenRefusal.CLAIMS),
    "sub-not-a-string": (signed(claims(sub=42)), TokenRefusal.CLAIMS),
    "iat-not-a-number": (signed(claims(iat="now")), TokenRefusal.CLAIMS),
    "jti-not-a-string": (signed(claims(jti=7)), TokenRefusal.INVALID),
    "handler-without-department": (signed(claims(role="handler")), TokenRefusal.NO_DEPARTMENT),
    "grid-worker-without-grids": (signed(claims(role="grid_worker")), TokenRefusal.NO_GRIDS),
    "empty-sub": (signed(claims(sub="")), TokenRefusal.NO_SUBJECT),
    "blank-sub": (signed(claims(sub="   ")), TokenRefusal.NO_SUBJECT),
}


@pytest.mark.parametrize("name", TOKENS)
def test_each_refused_token_is_401_with_our_own_sentence(name: str) -> None:
    token, expected = TOKENS[name]
    detail = refusal(token)
    assert detail == expected
    assert detail in set(TokenRefusal)  # never the library's text (e.g. "Signature has expired")


def test_a_token_whose_exp_is_now_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    exp = int(time.time()) + 120  # the library (with its leeway) would accept it at exp
    token = issue_token(SECRET, sub="d-1", role=Role.DISPATCHER, ttl_seconds=120)
    monkeypatch.setattr(auth.time, "time", lambda: float(exp))
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="caseloop", leeway=LEEWAY)["exp"] == exp
    assert refusal(token) == TokenRefusal.EXPIRED


def test_a_token_expired_within_the_leeway_is_refused() -> None:
    token = signed(claims(exp=int(time.time()) - LEEWAY // 2))
    assert refusal(token) == TokenRefusal.EXPIRED


def test_a_token_a_second_before_its_exp_is_accepted_and_refused_from_its_exp_on_even_when_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exp = int(time.time()) + 120
    token = issue_token(SECRET, sub="d-2", role=Role.DISPATCHER, ttl_seconds=120)
    monkeypatch.setattr(auth.time, "time", lambda: float(exp - 1))
    assert verify_token(token, SECRET, issuer="caseloop", audience="caseloop").sub == "d-2"
    monkeypatch.setattr(auth.time, "time", lambda: float(exp))
    assert refusal(token) == TokenRefusal.EXPIRED  # the remembered answer ends at exp too


def test_an_issuer_clock_ahead_by_less_than_the_leeway_is_accepted() -> None:
    token = signed(claims(iat=int(time.time()) + LEEWAY // 2))
    assert verify_token(token, SECRET, issuer="caseloop", audience="caseloop").sub == "d-1"
