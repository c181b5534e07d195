"""The case events' codec: every type round-trips, and a CaseDispatched stored as v1 names its verifier.

A v1 CaseDispatched did not record who verifies; verification looked it up in the routing
rule of the case's category. Decoded today it gets the verifier the rules of the policy
version it records give a dispatch of its departments and priority.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec
import pytest

from shared.domain import events as ev
from shared.domain.case import replay
from shared.domain.rules import Policy, load_policy
from shared.domain.upcasters import REPORTER_VERIFIED
from shared.domain.versioning import SchemaError
from tests import examples

CASE_ID = examples.CASE_ID
TASK_ID = examples.TASK_ID
NOW = examples.NOW
SHIPPED = "kaizhou-2026.11-1+4bdb8df254ff"  # the one version of the rules ever shipped before v2
PHOTO = ev.Attachment(url="https://files.example/after.jpg", sha256="ab" * 32, media_type="image/jpeg")
SEALED = ev.SealedReporter(ref=UUID(int=5), alg="AES-256-GCM", nonce="bm9uY2U=", ciphertext="c2VhbGVk")

EVERY_TYPE: list[ev.CaseEvent] = [
    examples.case_reported(
        source=ev.Source.SENSOR,
        occurred_at=NOW - timedelta(minutes=3),
        reporter=SEALED,
        attachments=(PHOTO,),
        device=ev.Device(id="gas-0042", alarm="leak"),
    ),
    ev.AlarmRepeated(case_id=CASE_ID, repeat_count=2, occurred_at=NOW),
    ev.CaseCancelled(case_id=CASE_ID, reason="报错了", by="backend:wechat"),
    ev.CaseRated(case_id=CASE_ID, score=5, comment="很快"),
    ev.CaseRejected(case_id=CASE_ID, reason="不属实", by="dispatcher:d"),
    ev.CaseMerged(case_id=CASE_ID, into=UUID(int=9), by="dispatcher:d"),
    ev.CaseQueued(case_id=CASE_ID, reason="no rule"),
    examples.case_dispatched("water", "environment", verifier="reporter"),
    ev.TaskDispatched(case_id=CASE_ID, round=1, task=examples.assignment(), replaces=UUID(int=3)),
    ev.DeadlineWarned(case_id=CASE_ID, task_id=TASK_ID, department="water", kind="accept", due_at=NOW),
    ev.TaskOverdue(case_id=CASE_ID, task_id=TASK_ID, department="water", kind="complete", due_at=NOW),
    ev.CaseEscalated(case_id=CASE_ID, task_id=TASK_ID, department="water", kind="complete"),
    examples.task_accepted(),
    ev.TaskNoted(case_id=CASE_ID, task_id=TASK_ID, department="water", by="h", note="在路上"),
    examples.task_completed(),
    examples.task_returned(),
    ev.TaskWithdrawn(case_id=CASE_ID, task_id=TASK_ID, department="water", by="d", reason="merged"),
    examples.case_handled(),
    ev.VerificationRequested(
        case_id=CASE_ID,
        verification_id=examples.VERIFICATION_ID,
        round=1,
        kind="reporter",
        grid=None,
        respond_by=NOW + timedelta(hours=72),
    ),
    ev.VerificationPassed(
        case_id=CASE_ID, verification_id=examples.VERIFICATION_ID, by="gw", evidence=(PHOTO,), note="ok"
    ),
    ev.VerificationFailed(case_id=CASE_ID, verification_id=examples.VERIFICATION_ID, by="gw", reason="积水仍在"),
    ev.CaseClosed(case_id=CASE_ID, by_default=True),
    ev.CaseReopened(case_id=CASE_ID, round=2, departments=("water",)),
    ev.ReporterErased(case_id=CASE_ID, ref=SEALED.ref),
]


def test_the_examples_cover_every_event_type() -> None:
    assert sorted(ev.type_name(e) for e in EVERY_TYPE) == sorted(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", EVERY_TYPE, ids=ev.type_name)
def test_every_event_decodes_to_itself_from_its_stored_bytes_and_version(event: ev.CaseEvent) -> None:
    stored = ev.encode(event)
    assert ev.decode(stored) == event
    assert ev.decode(stored, event.schema_version) == event
    assert ev.decode(stored.decode(), ev.SCHEMA_VERSIONS[ev.type_name(event)]) == event


def test_only_the_dispatch_has_moved_past_schema_version_1() -> None:
    assert {name: v for name, v in ev.SCHEMA_VERSIONS.items() if v != 1} == {"CaseDispatched": 2}


def test_a_dispatch_written_today_cannot_leave_out_its_verifier() -> None:
    stored = ev.encode(examples.case_dispatched()).replace(b',"verifier":"grid_worker"', b"")
    with pytest.raises(msgspec.ValidationError, match="verifier"):
        ev.decode(stored, 2)


# --- CaseDispatched v1 -> v2 -------------------------------------------------------------


def v1_dispatch(departments: list[str], priority: str, policy_version: str = SHIPPED, round: int = 1) -> bytes:
    """The bytes the code before v2 stored for a dispatch: no verifier."""
    return (
        f'{{"type":"CaseDispatched","case_id":"{CASE_ID}","round":{round},'
        f'"departments":{msgspec.json.encode(departments).decode()},"priority":"{priority}",'
        f'"policy_version":"{policy_version}","by":"rules"}}'
    ).encode()


@pytest.mark.parametrize(
    ("departments", "priority", "verifier"),
    [
        (["environment", "police"], "normal", "reporter"),  # noise_complaint
        (["market_regulation", "enforcement_wenfeng"], "normal", "reporter"),  # unlicensed_business in wenfeng
        (["market_regulation", "city_management"], "normal", "reporter"),  # …where the street is not known
        (["police"], "low", "reporter"),  # dog_nuisance
        (["police"], "high", "grid_worker"),  # illegal_parking: the same department, another rule
        (["housing", "environment"], "normal", "grid_worker"),  # construction_dust, not night noise
        (["water"], "normal", "grid_worker"),  # blocked_drain
    ],
)
def test_a_v1_dispatch_gets_the_verifier_of_the_shipped_rule_that_made_it(
    departments: list[str], priority: str, verifier: str
) -> None:
    event = ev.decode(v1_dispatch(departments, priority), 1)
    assert event == ev.CaseDispatched(
        case_id=CASE_ID,
        round=1,
        departments=tuple(departments),
        priority=priority,
        policy_version=SHIPPED,
        verifier=verifier,
        by="rules",
    )


def test_the_case_folded_from_a_v1_log_names_the_verifier_its_policy_did() -> None:
    reported = examples.case_reported(category="noise_complaint")
    stored = [(ev.encode(reported), 1), (v1_dispatch(["environment", "police"], "normal"), 1)]
    assert replay(ev.decode(data, version) for data, version in stored).verifier == "reporter"


def test_a_v1_dispatch_no_shipped_rule_explains_gets_the_rules_default_verifier() -> None:
    # An operator's own rules file (its version was never shipped), or a dispatcher's own choice.
    assert ev.decode(v1_dispatch(["environment", "police"], "normal", "our-rules-3+0123456789ab"), 1).verifier == (
        "grid_worker"
    )
    assert ev.decode(v1_dispatch(["environment", "police"], "urgent"), 1).verifier == "grid_worker"


def test_a_dispatch_version_newer_than_this_code_is_refused() -> None:
    with pytest.raises(SchemaError, match="CaseDispatched v3 is newer"):
        ev.decode(ev.encode(examples.case_dispatched()), 3)


@pytest.fixture(scope="module")
def shipped() -> Policy:
    policy = load_policy()
    # The table is history: it describes the rules as they were at SHIPPED. When the rules file
    # changes, its version changes and its dispatches record their verifier (v2); this test
    # then needs a copy of the rules as shipped at SHIPPED to compare against.
    assert policy.version == SHIPPED, "the shipped rules changed: compare REPORTER_VERIFIED with the old file"
    return policy


def test_the_table_of_the_shipped_version_gives_every_rule_its_own_verifier(shipped: Policy) -> None:
    assert set(REPORTER_VERIFIED) == {SHIPPED}
    for category in shipped.categories:
        for street in (None, *shipped.streets):
            rule = shipped.route(category, street)
            assert rule is not None
            # The dispatch routing made from that rule before v2, then and on reopening.
            for round_ in (1, 2):
                stored = v1_dispatch(list(rule.departments), rule.priority, shipped.version, round_)
                assert ev.decode(stored, 1).verifier == rule.verify_by, (category, street)
