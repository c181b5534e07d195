"""The routing policy: which departments get a case of a category in an area, and by when."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import msgspec

from shared.domain.area import street_of
from shared.domain.calendar import WorkingCalendar, load_calendar
from shared.domain.events import VERIFIERS

__all__ = ["STREET_TEAM", "Category", "Deadlines", "Policy", "Rule", "WorkingCalendar", "load_calendar", "load_policy"]

STREET_TEAM = "enforcement_{street}"  # resolved to the case's street's own enforcement team
NO_STREET_TEAM = "city_management"  # who takes street-team work when the street is unknown
PRIORITIES = ("urgent", "high", "normal", "low")


class Category(msgspec.Struct, frozen=True):
    zh: str
    en: str


class Rule(msgspec.Struct, frozen=True):
    category: str
    lead: str
    co: tuple[str, ...]
    priority: str  # "urgent" | "high" | "normal" | "low"
    accept_hours: float
    complete_hours: float
    natural_time: bool
    verify_by: str  # "grid_worker" | "reporter"
    fallbacks: tuple[str, ...]  # departments to try, in order, when a task is returned "not ours"
    streets: tuple[str, ...] = ()  # empty = the whole district

    @property
    def departments(self) -> tuple[str, ...]:
        """Lead first, then the co-handling departments: everyone who gets a task at dispatch."""
        return (self.lead, *self.co)


class Deadlines(msgspec.Struct, frozen=True):
    accept_by: datetime
    complete_by: datetime
    accept_warn_at: datetime
    complete_warn_at: datetime


class Policy:
    def __init__(
        self,
        version: str,
        rules: Sequence[Rule],
        categories: Mapping[str, Category],
        streets: Mapping[str, str],
        grids: Mapping[str, str],
        departments: Mapping[str, str],
    ) -> None:
        self.version = version
        self.rules = tuple(rules)
        self.categories = dict(categories)
        self.streets = dict(streets)
        self.grids = dict(grids)
        self.departments = dict(departments)
        # Indexed once: route() runs for every case, the rules change only with a new file.
        self._district: dict[str, Rule] = {}
        self._by_street: dict[tuple[str, str], Rule] = {}
        for rule in self.rules:
            if not rule.streets:
                self._district[rule.category] = rule
            for street in rule.streets:
                self._by_street[(rule.category, street)] = rule

    def route(self, category: str, street: str | None) -> Rule | None:
        """The most specific rule, with the street team resolved; None when nothing applies."""
        known = street if street in self.streets else None
        rule = self._by_street.get((category, known)) if known else None
        rule = rule or self._district.get(category)
        if rule is None:
            return None
        lead = self._resolve(rule.lead, known)
        co = tuple(dict.fromkeys(d for d in (self._resolve(c, known) for c in rule.co) if d != lead))
        named = {lead, *co}
        fallbacks = tuple(dict.fromkeys(d for d in (self._resolve(f, known) for f in rule.fallbacks) if d not in named))
        return msgspec.structs.replace(rule, lead=lead, co=co, fallbacks=fallbacks)

    def street_of(self, grid: str | None) -> str | None:
        """The street of a grid; an unlisted grid named <street>-… belongs to that street."""
        return street_of(grid, self.grids, self.streets)

    def next_department(self, category: str, street: str | None, tried: Collection[str]) -> str | None:
        """The first department the rule names (lead, co, then fallbacks) not in `tried`.

        `tried` should hold every department that has held a task for the case, so a task
        returned "not ours" moves on down the fallbacks; None means a dispatcher must decide.
        """
        rule = self.route(category, street)
        if rule is None:
            return None
        return next((d for d in (*rule.departments, *rule.fallbacks) if d not in tried), None)

    def deadlines(self, rule: Rule, now: datetime, calendar: WorkingCalendar, warn_share: float = 0.8) -> Deadlines:
        """Accept and complete deadlines from `now`, with warnings once `warn_share` of each has passed."""
        if not 0 < warn_share < 1:
            raise ValueError(f"warn_share must lie strictly between 0 and 1, got {warn_share}")

        def after(hours: float) -> datetime:
            return calendar.add_working(now, hours, natural=rule.natural_time)

        return Deadlines(
            accept_by=after(rule.accept_hours),
            complete_by=after(rule.complete_hours),
            accept_warn_at=after(rule.accept_hours * warn_share),
            complete_warn_at=after(rule.complete_hours * warn_share),
        )

    @staticmethod
    def _resolve(department: str, street: str | None) -> str:
        if department != STREET_TEAM:
            return department
        return f"enforcement_{street}" if street else NO_STREET_TEAM


def load_policy(path: str | None = None) -> Policy:
    """Read a policy TOML file; None reads the shipped shared/domain/data/rules.toml."""
    if path is None:
        raw = (resources.files("shared.domain") / "data" / "rules.toml").read_bytes()
    else:
        with open(path, "rb") as f:
            raw = f.read()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"rules: not valid UTF-8 TOML: {e}") from e
    # The digest makes the recorded policy version change whenever the data does.
    return _policy_from(data, digest=hashlib.sha256(raw).hexdigest()[:12])


def _policy_from(data: dict[str, Any], digest: str) -> Policy:
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise ValueError("rules: top-level `version` (a non-empty string) is missing")
    day_hours = _number(data, "working_day_hours", "rules")
    streets = _str_table(data, "streets")
    departments = _str_table(data, "departments")
    team_name = data.get("enforcement_team_name", "{street}综合行政执法大队")
    for code, name in streets.items():
        departments.setdefault(f"enforcement_{code}", str(team_name).format(street=name))
    grids = _str_table(data, "grids")
    for grid, street in grids.items():
        if street not in streets:
            raise ValueError(f"rules: grid {grid!r} belongs to unknown street {street!r}")
    categories: dict[str, Category] = {}
    for code, label in _table(data, "categories").items():
        try:
            categories[code] = msgspec.convert(label, Category)
        except msgspec.ValidationError as e:
            raise ValueError(f"rules: category {code!r}: {e} (expected {{ zh = …, en = … }})") from e

    rules: list[Rule] = []
    entries = data.get("rules", [])
    if not isinstance(entries, list):
        raise ValueError("rules: `rules` must be an array of [[rules]] tables")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"rules: [[rules]] #{i + 1} is not a table")
        where = f"rules: [[rules]] #{i + 1} ({entry.get('category', '?')!s})"
        rules.append(_rule_from(entry, where, day_hours, categories, streets, departments))
    _check_coverage(rules, categories)
    return Policy(f"{version}+{digest}", rules, categories, streets, grids, departments)


def _rule_from(
    entry: dict[str, Any],
    where: str,
    day_hours: float,
    categories: Mapping[str, Category],
    streets: Mapping[str, str],
    departments: Mapping[str, str],
) -> Rule:
    known = {"category", "lead", "co", "priority", "natural_time", "verify_by", "fallbacks", "streets"}
    known |= {f"{what}_{unit}" for what in ("accept", "complete") for unit in ("hours", "days")}
    unexpected = set(entry) - known
    if unexpected:
        raise ValueError(f"{where}: unknown key(s) {sorted(unexpected)}")
    natural = entry.get("natural_time", False)
    if not isinstance(natural, bool):
        raise ValueError(f"{where}: natural_time must be true or false")
    per_day = 24.0 if natural else day_hours
    try:
        rule = msgspec.convert(
            {
                **{k: v for k, v in entry.items() if not k.endswith(("_hours", "_days"))},
                "co": entry.get("co", []),
                "fallbacks": entry.get("fallbacks", []),
                "natural_time": natural,
                "verify_by": entry.get("verify_by", "grid_worker"),
                "accept_hours": _duration(entry, "accept", per_day, where),
                "complete_hours": _duration(entry, "complete", per_day, where),
            },
            Rule,
        )
    except msgspec.ValidationError as e:
        raise ValueError(f"{where}: {e}") from e
    if rule.category not in categories:
        raise ValueError(f"{where}: unknown category {rule.category!r}; add it under [categories]")
    if rule.priority not in PRIORITIES:
        raise ValueError(f"{where}: priority {rule.priority!r} is not one of {PRIORITIES}")
    if rule.verify_by not in VERIFIERS:
        raise ValueError(f"{where}: verify_by {rule.verify_by!r} is not one of {VERIFIERS}")
    if rule.accept_hours > rule.complete_hours:
        raise ValueError(f"{where}: accept time exceeds complete time")
    for department in (*rule.departments, *rule.fallbacks):
        if department != STREET_TEAM and department not in departments:
            raise ValueError(f"{where}: unknown department {department!r}")
    if len(set(rule.departments)) != len(rule.departments):
        raise ValueError(f"{where}: a department appears twice in lead and co")
    for street in rule.streets:
        if street not in streets:
            raise ValueError(f"{where}: unknown street {street!r}")
    return rule


def _duration(entry: dict[str, Any], what: str, per_day: float, where: str) -> float:
    hours, days = entry.get(f"{what}_hours"), entry.get(f"{what}_days")
    if (hours is None) == (days is None):
        raise ValueError(f"{where}: give exactly one of {what}_hours and {what}_days")
    value = hours if days is None else days
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{where}: {what} time must be a positive number, got {value!r}")
    return float(value) if days is None else float(value) * per_day


def _check_coverage(rules: Sequence[Rule], categories: Mapping[str, Category]) -> None:
    seen: set[tuple[str, str]] = set()
    for rule in rules:
        for street in rule.streets or ("(district-wide)",):
            if (rule.category, street) in seen:
                raise ValueError(f"rules: two rules for category {rule.category!r} in {street}: which one applies?")
            seen.add((rule.category, street))
    # A category with no rule at all is almost always a typo in a rule's category.
    unrouted = sorted(set(categories) - {category for category, _ in seen})
    if unrouted:
        raise ValueError(f"rules: categories without any rule: {unrouted}")


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise ValueError(f"rules: [{key}] table is missing or empty")
    return value


def _str_table(data: dict[str, Any], key: str) -> dict[str, str]:
    table = _table(data, key)
    for code, value in table.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"rules: [{key}] {code!r} must be a non-empty string, got {value!r}")
    return dict(table)


def _number(data: dict[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{where}: `{key}` must be a positive number, got {value!r}")
    return float(value)
