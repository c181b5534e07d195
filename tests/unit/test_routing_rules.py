"""Unit tests for the routing policy shipped as data: who gets a case, and by when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import pytest

from shared.domain.calendar import WorkingCalendar
from shared.domain.rules import STREET_TEAM, Policy, load_policy

CST = timezone(timedelta(hours=8))
SHIPPED = (resources.files("shared.domain") / "data" / "rules.toml").read_text(encoding="utf-8")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=CST)


# --- the shipped data ---------------------------------------------------------------------


def test_the_shipped_policy_covers_kaizhous_forty_streets_and_thirty_categories(policy: Policy) -> None:
    assert len(policy.streets) == 40
    assert len(policy.categories) >= 30
    assert policy.streets["zhen_an"] == "镇安镇"
    assert policy.categories["facade_tile_loose"].zh == "外墙瓷砖松动"


def test_every_rule_names_known_departments(policy: Policy) -> None:
    for rule in policy.rules:
        for department in (*rule.departments, *rule.fallbacks):
            assert department == STREET_TEAM or department in policy.departments, (rule.category, department)


def test_every_street_has_its_own_enforcement_team(policy: Policy) -> None:
    assert all(f"enforcement_{street}" in policy.departments for street in policy.streets)
    assert policy.departments["enforcement_wenfeng"] == "文峰街道综合行政执法大队"


def test_every_grid_maps_to_a_known_street(policy: Policy) -> None:
    assert policy.grids
    assert all(street in policy.streets for street in policy.grids.values())


def test_a_working_day_in_the_rules_is_a_working_day_in_the_calendar(policy: Policy, calendar: WorkingCalendar) -> None:
    rule = policy.route("facade_tile_loose", None)
    assert rule is not None
    assert rule.complete_hours == 2 * calendar.hours_per_day


def test_the_policy_version_changes_when_the_data_does(policy: Policy, tmp_path: Path) -> None:
    changed = tmp_path / "rules.toml"
    changed.write_text(SHIPPED.replace("complete_hours = 4\n", "complete_hours = 5\n", 1), encoding="utf-8")
    assert policy.version.startswith("kaizhou-2026.11-1+")
    assert load_policy(str(changed)).version != policy.version
    assert load_policy().version == policy.version


# --- routing ------------------------------------------------------------------------------


def test_a_street_specific_rule_beats_the_district_wide_one(policy: Policy) -> None:
    in_the_core = policy.route("street_trading", "wenfeng")
    in_a_town = policy.route("street_trading", "nanya")
    assert in_the_core is not None and in_a_town is not None
    assert in_the_core.priority == "high" and in_the_core.streets == ("hanfeng", "wenfeng")
    assert in_a_town.priority == "normal" and in_a_town.streets == ()


def test_an_unknown_category_routes_nowhere(policy: Policy) -> None:
    assert policy.route("alien_landing", "wenfeng") is None


def test_the_street_team_is_the_team_of_the_case_street(policy: Policy) -> None:
    rule = policy.route("stairwell_clutter", "zhendong")
    assert rule is not None
    assert rule.departments == ("enforcement_zhendong", "emergency_management")


def test_without_a_known_street_the_street_team_work_goes_to_city_management(policy: Policy) -> None:
    for street in (None, "atlantis"):
        rule = policy.route("street_trading", street)
        assert rule is not None
        assert rule.lead == "city_management"
        assert "city_management" not in rule.fallbacks


def test_a_gas_alarm_goes_to_the_gas_company_with_emergency_and_police(policy: Policy) -> None:
    rule = policy.route("gas_alarm", "yunfeng")
    assert rule is not None
    assert rule.departments == ("gas_utility", "emergency_management", "police")
    assert (rule.priority, rule.natural_time, rule.accept_hours, rule.complete_hours) == ("urgent", True, 0.25, 4)


def test_a_background_check_goes_to_the_six_fixed_units_plus_x(policy: Policy) -> None:
    rule = policy.route("background_check", None)
    assert rule is not None
    six = {"police", "discipline_inspection", "court", "procuratorate", "organization", "political_legal"}
    assert six < set(rule.departments)


def test_complaints_are_verified_by_the_reporter_and_faults_by_the_grid_worker(policy: Policy) -> None:
    complaint, fault = policy.route("noise_complaint", None), policy.route("pothole", None)
    assert complaint is not None and fault is not None
    assert (complaint.verify_by, fault.verify_by) == ("reporter", "grid_worker")


def test_a_listed_grid_belongs_to_its_street(policy: Policy) -> None:
    assert policy.street_of("wenfeng-tianehu-01") == "wenfeng"
    assert policy.street_of("yunfeng-zhaiziping-01") == "yunfeng"


def test_an_unlisted_grid_belongs_to_the_street_its_code_starts_with(policy: Policy) -> None:
    assert policy.street_of("zhaojia-unlisted-17") == "zhaojia"


def test_an_unknown_or_missing_grid_has_no_street(policy: Policy) -> None:
    assert policy.street_of("atlantis-01") is None
    assert policy.street_of(None) is None
    assert policy.street_of("") is None


def test_next_department_walks_the_fallbacks_in_order(policy: Policy) -> None:
    dispatched = {"water", "city_management"}
    assert policy.next_department("manhole_cover_displaced", None, dispatched) == "power_utility"
    assert policy.next_department("manhole_cover_displaced", None, dispatched | {"power_utility"}) == "gas_utility"


def test_next_department_returns_none_when_every_department_was_tried(policy: Policy) -> None:
    rule = policy.route("manhole_cover_displaced", None)
    assert rule is not None
    assert policy.next_department("manhole_cover_displaced", None, {*rule.departments, *rule.fallbacks}) is None
    assert policy.next_department("alien_landing", None, ()) is None


def test_next_department_resolves_the_street_team(policy: Policy) -> None:
    assert policy.next_department("illegal_parking", "baihe", {"police"}) == "enforcement_baihe"


# --- deadlines ----------------------------------------------------------------------------


def test_deadlines_over_a_weekend_skip_it(policy: Policy, calendar: WorkingCalendar) -> None:
    rule = policy.route("facade_tile_loose", "wenfeng")
    assert rule is not None
    due = policy.deadlines(rule, local(2026, 11, 27, 16, 0), calendar)  # a Friday
    assert due.accept_by == local(2026, 11, 27, 18, 0)
    assert due.complete_by == local(2026, 12, 1, 16, 0)


def test_deadlines_over_a_holiday_skip_it_and_count_the_make_up_day(policy: Policy, calendar: WorkingCalendar) -> None:
    rule = policy.route("pothole", None)  # accept within 4 working hours
    assert rule is not None
    due = policy.deadlines(rule, local(2026, 9, 30, 17, 0), calendar)
    assert due.accept_by == local(2026, 10, 8, 12, 0)
    before_spring_festival = policy.deadlines(rule, local(2026, 2, 13, 17, 0), calendar)
    assert before_spring_festival.accept_by == local(2026, 2, 14, 12, 0)  # Saturday 14 Feb works


def test_natural_time_deadlines_ignore_weekends_and_holidays(policy: Policy, calendar: WorkingCalendar) -> None:
    rule = policy.route("gas_alarm", "wenfeng")
    assert rule is not None
    national_day_night = local(2026, 10, 3, 23, 0)
    due = policy.deadlines(rule, national_day_night, calendar)
    assert due.accept_by == local(2026, 10, 3, 23, 15)
    assert due.complete_by == local(2026, 10, 4, 3, 0)
    assert due.complete_warn_at == local(2026, 10, 4, 2, 12)


@pytest.mark.parametrize("category", ["facade_tile_loose", "gas_alarm", "background_check", "street_uncleaned"])
def test_warnings_fall_strictly_between_start_and_deadline_at_the_right_share(
    policy: Policy, calendar: WorkingCalendar, category: str
) -> None:
    rule = policy.route(category, None)
    assert rule is not None
    now = local(2026, 11, 27, 17, 40)
    due = policy.deadlines(rule, now, calendar, warn_share=0.75)
    for warn, deadline, hours in (
        (due.accept_warn_at, due.accept_by, rule.accept_hours),
        (due.complete_warn_at, due.complete_by, rule.complete_hours),
    ):
        assert now < warn < deadline
        passed = calendar.working_hours_between(now, warn, natural=rule.natural_time)
        assert passed == pytest.approx(0.75 * hours)


def test_deadlines_are_given_in_utc(policy: Policy, calendar: WorkingCalendar) -> None:
    rule = policy.route("pothole", None)
    assert rule is not None
    due = policy.deadlines(rule, local(2026, 11, 25, 9, 0), calendar)
    assert due.accept_by.tzinfo == UTC


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.2])
def test_a_warn_share_outside_zero_and_one_is_refused(policy: Policy, calendar: WorkingCalendar, share: float) -> None:
    rule = policy.route("pothole", None)
    assert rule is not None
    with pytest.raises(ValueError, match="warn_share"):
        policy.deadlines(rule, local(2026, 11, 25, 9, 0), calendar, warn_share=share)


# --- bad data -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('lead = "transport"\npriority = "normal"', 'lead = "transprot"\npriority = "normal"', "'transprot'"),
        ('category = "pothole"', 'category = "pothol"', "'pothol'"),
        ('nanya-nanya-01 = "nanya"', 'nanya-nanya-01 = "nanyang"', "'nanyang'"),
        ('category = "pothole"\nlead', 'category = "pothole"\naccept_days = 1\nlead', "pothole.*exactly one"),
        ('priority = "low"', 'priority = "whenever"', "'whenever'"),
        ('verify_by = "reporter"', 'verify_by = "nobody"', "'nobody'"),
        ('streets = ["hanfeng", "wenfeng"]', 'streets = ["hanfeng", "narnia"]', "street_trading.*'narnia'"),
        ("accept_hours = 0.25\ncomplete_hours = 4", "accept_hours = 5\ncomplete_hours = 4", "gas_alarm.*exceeds"),
        ('category = "water_main_burst"', 'category = "blocked_drain"', "two rules for category 'blocked_drain'"),
        ('category = "pothole"\nlead', 'category = "pothole"\ndeadline = 3\nlead', "pothole.*'deadline'"),
        ('version = "kaizhou-2026.11-1"', "", "version"),
        ("[streets]", "[streets", "not valid"),
    ],
)
def test_a_bad_policy_file_is_refused_naming_the_problem(tmp_path: Path, old: str, new: str, problem: str) -> None:
    assert old in SHIPPED
    path = tmp_path / "rules.toml"
    path.write_text(SHIPPED.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        load_policy(str(path))
