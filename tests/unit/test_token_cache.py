"""Verified tokens are remembered until they expire, and only for the secret that verified them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.web import auth
from shared.web.auth import Role, issue_token, verify_token
from shared.web.http import ProblemError

SECRET = "s" * 32
OTHER = "o" * 32


def test_a_remembered_token_is_verified_afresh_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = issue_token(SECRET, sub="gw", role=Role.GRID_WORKER, grids=("g1",), ttl_seconds=60)
    verified = 0
    real = auth._verify

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal verified
        verified += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(auth, "_verify", counting)
    for _ in range(3):
        assert verify_token(token, SECRET, issuer="caseloop", audience="caseloop").sub == "gw"
    assert verified == 1  # remembered

    later = time.time() + 60 + auth.LEEWAY + 5
    monkeypatch.setattr(auth.time, "time", lambda: later)
    monkeypatch.setattr(auth, "_verify", lambda *a, **k: (_ for _ in ()).throw(auth.unauthorized("expired")))
    with pytest.raises(ProblemError):  # not answered from memory: checked again (here: refused)
        verify_token(token, SECRET, issuer="caseloop", audience="caseloop")


def test_a_remembered_token_is_still_checked_against_another_secret_or_audience() -> None:
    token = issue_token(SECRET, sub="gw", role=Role.GRID_WORKER, grids=("g1",))
    verify_token(token, SECRET, issuer="caseloop", audience="caseloop")

    with pytest.raises(ProblemError):
        verify_token(token, OTHER, issuer="caseloop", audience="caseloop")
    with pytest.raises(ProblemError):
        verify_token(token, SECRET, issuer="caseloop", audience="someone-else")
