"""The one personal-data rule (shared.web.access.personal_data_read): given a caller, a case and a purpose."""

from __future__ import annotations

from uuid import UUID

import pytest

from shared.domain.case import Case, replay
from shared.domain.events import ReporterErased, SealedReporter
from shared.web.access import MASKED, PersonalDataRead, personal_data_read
from shared.web.auth import Principal, Role
from tests import examples as ex

SEALED = SealedReporter(ref=UUID(int=1), alg="AES-256-GCM", nonce="bm9uY2U=", ciphertext="c2VhbGVk")
CASE = replay([ex.case_reported(reporter=SEALED), ex.case_dispatched(), ex.task_dispatched()])
GRID = "wenfeng-tianehu-01"
CALLERS = {
    "own backend": Principal(sub="backend:wechat", role=Role.REPORTER_BACKEND),
    "handler": Principal(sub="h", role=Role.HANDLER, department="sanitation"),
    "grid worker": Principal(sub="g", role=Role.GRID_WORKER, grids=(GRID,)),
    "dispatcher": Principal(sub="d", role=Role.DISPATCHER),
    "supervisor": Principal(sub="s", role=Role.SUPERVISOR),
    "auditor": Principal(sub="a", role=Role.AUDITOR),
    "auditor with the pii grant": Principal(sub="a", role=Role.AUDITOR, pii=True),
    "handler with the pii grant": Principal(sub="h", role=Role.HANDLER, department="sanitation", pii=True),
    "grid worker with the pii grant": Principal(sub="g", role=Role.GRID_WORKER, grids=(GRID,), pii=True),
}
WITH_A_PURPOSE = {"own backend", "dispatcher", "supervisor", "auditor with the pii grant"}


@pytest.mark.parametrize("who", sorted(CALLERS))
def test_without_a_purpose_nobody_reads_it_unmasked_not_even_the_backend_that_reported_it(who: str) -> None:
    read = personal_data_read(CALLERS[who], CASE, None)
    assert read == MASKED
    assert personal_data_read(CALLERS[who], CASE, "   ") == read  # blank is no purpose


@pytest.mark.parametrize("who", sorted(CALLERS))
def test_with_a_purpose_the_allowed_roles_read_it_unmasked_and_the_read_is_recorded(who: str) -> None:
    read = personal_data_read(CALLERS[who], CASE, " 回访核实 ")
    if who in WITH_A_PURPOSE:
        assert read == PersonalDataRead(unmask=True, record="回访核实")
    else:
        assert read == MASKED


def test_the_pii_grant_alone_unmasks_nothing() -> None:
    for who, principal in CALLERS.items():
        if principal.pii:
            assert personal_data_read(principal, CASE, None) == MASKED, who


def test_a_kept_purpose_is_at_most_200_characters() -> None:
    read = personal_data_read(CALLERS["dispatcher"], CASE, "因" * 500)
    assert read.record == "因" * 200


def test_a_backend_that_did_not_report_the_case_and_a_caller_who_may_not_read_it_see_nothing_unmasked() -> None:
    other_backend = Principal(sub="backend:other", role=Role.REPORTER_BACKEND)
    other_handler = Principal(sub="h", role=Role.HANDLER, department="water")
    for principal in (other_backend, other_handler):
        assert personal_data_read(principal, CASE, "回访") == MASKED


def test_a_case_without_a_reporter_or_whose_reporter_was_erased_records_nothing() -> None:
    erased = replay([ReporterErased(case_id=ex.CASE_ID, ref=SEALED.ref)], CASE)
    for case in (replay([ex.case_reported()]), erased, Case()):
        for principal in CALLERS.values():
            assert personal_data_read(principal, case, "回访") == MASKED
