"""The chaos checker's judgements over recorded outcomes, dead letters and resting states."""

from __future__ import annotations

from tests.chaos import verdicts
from tests.chaos.faults import subject_matches


def test_an_acknowledged_report_has_exactly_the_case_it_was_told() -> None:
    assert verdicts.reports({"k": [("unknown", None), ("ok", "c1"), ("ok", "c1")]}, {"k": ["c1"]}) == []
    assert verdicts.reports({"k": [("ok", "c1")]}, {}) == ["k: acknowledged, 0 cases in the log"]
    assert verdicts.reports({"k": [("ok", "c1")]}, {"k": ["c1", "c2"]}) == ["k: acknowledged, 2 cases in the log"]
    assert verdicts.reports({"k": [("ok", "c1"), ("ok", "c9")]}, {"k": ["c1"]})  # two answers, two ids


def test_an_unknown_outcome_may_have_happened_once_at_most_and_a_refusal_never() -> None:
    assert verdicts.reports({"k": [("unknown", None)]}, {}) == []
    assert verdicts.reports({"k": [("unknown", None)]}, {"k": ["c1"]}) == []
    assert verdicts.reports({"k": [("unknown", None)]}, {"k": ["c1", "c2"]})
    assert verdicts.reports({"k": [("failed", None)]}, {"k": ["c1"]}) == ["k: refused, yet 1 cases in the log"]
    assert verdicts.reports({}, {"x": ["c1"]}) == ["x: in the log, never sent"]


def test_tally_counts_the_best_outcome_per_report() -> None:
    outcomes: dict[str, list[tuple[str, str | None]]] = {
        "a": [("unknown", None), ("ok", "c")],
        "b": [("unknown", None)],
        "c": [("failed", None)],
    }
    assert verdicts.tally(outcomes) == {"ok": 1, "unknown": 1, "failed": 1}


def test_dead_letters_hold_exactly_the_poison() -> None:
    expected = [("intake", "p1"), ("routing", "p1"), ("intake", "p2")]
    assert verdicts.dead_letters(expected, list(expected)) == []
    missing = verdicts.dead_letters(expected, expected[:2])
    assert missing == ["intake never dead-lettered poison p2"]
    extra = verdicts.dead_letters(expected, [*expected, ("handling", "e7"), ("intake", "p1")])
    assert len(extra) == 2 and any("message e7" in p for p in extra) and any("poison p1" in p for p in extra)


def test_cases_at_rest_are_terminal_or_queued_by_design() -> None:
    final = {"a": "closed", "b": "cancelled", "c": "queued", "d": "queued", "e": "dispatched"}
    assert verdicts.statuses_at_rest(final, {"c"}) == ["d: left queued", "e: left dispatched"]


def test_nats_subject_wildcards() -> None:
    assert subject_matches("case.>", "case.CaseReported._.x")
    assert subject_matches("case.CaseReported.>", "case.CaseReported._.x")
    assert subject_matches("case.*.*.x", "case.TaskCompleted.water.x")
    assert not subject_matches("case.*.water.>", "case.TaskCompleted._.x")
    assert not subject_matches("case.>", "case")
    assert not subject_matches("case.*", "case.a.b")
