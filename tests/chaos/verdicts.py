"""Pure judgements over what the clients recorded and what the log holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    found: str  # what the check saw, in a few words


def reports(outcomes: dict[str, list[tuple[str, str | None]]], cases: dict[str, list[str]]) -> list[str]:
    """Problems with the reports: key -> [(outcome, case id answered)]; key -> case ids in the log.

    An acknowledged report has exactly one case, the one every ok answer named; a report whose
    every attempt was unknown has at most one; a definitely refused one has none.
    """
    problems = []
    for key, attempts in sorted(outcomes.items()):
        kinds = {outcome for outcome, _ in attempts}
        logged = cases.get(key, [])
        answered = {case_id for outcome, case_id in attempts if outcome == "ok" and case_id is not None}
        if "ok" in kinds:
            if len(logged) != 1:
                problems.append(f"{key}: acknowledged, {len(logged)} cases in the log")
            elif answered != set(logged):
                problems.append(f"{key}: answered {sorted(answered)}, the log has {logged}")
        elif "unknown" in kinds:
            if len(logged) > 1:
                problems.append(f"{key}: outcome unknown, {len(logged)} cases in the log")
        elif logged:
            problems.append(f"{key}: refused, yet {len(logged)} cases in the log")
    for key in sorted(set(cases) - set(outcomes)):
        problems.append(f"{key}: in the log, never sent")
    return problems


def tally(outcomes: dict[str, list[tuple[str, str | None]]]) -> Counter[str]:
    """Per key, the best thing the client learned: ok, else unknown, else failed."""
    counts: Counter[str] = Counter()
    for attempts in outcomes.values():
        kinds = {outcome for outcome, _ in attempts}
        counts["ok" if "ok" in kinds else "unknown" if "unknown" in kinds else "failed"] += 1
    return counts


def dead_letters(expected: Iterable[tuple[str, str]], found: Iterable[tuple[str, str | None]]) -> list[str]:
    """(consumer, poison id) expected once each; (consumer, ce-id) recorded in dead_letters."""
    want: Counter[tuple[str, str]] = Counter(expected)
    have: Counter[tuple[str, str]] = Counter((consumer, pid or "") for consumer, pid in found)
    problems = [f"{consumer} never dead-lettered poison {pid}" for (consumer, pid) in sorted(want - have)]
    for (consumer, pid), n in sorted((have - want).items(), key=str):
        what = "poison" if (consumer, pid) in want else "message"
        problems.append(f"{consumer} dead-lettered {what} {pid} {n} more time(s) than expected")
    return problems


def statuses_at_rest(final: dict[str, str], by_design: set[str]) -> list[str]:
    """Every case terminal, or waiting in the queue because it was meant to (case -> phase)."""
    problems = []
    for case_id, phase in sorted(final.items()):
        if phase in ("closed", "rejected", "merged", "cancelled"):
            continue
        if phase == "queued" and case_id in by_design:
            continue
        problems.append(f"{case_id}: left {phase}")
    return problems
