"""Unit tests for the working-time calendar that deadlines are counted in."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from shared.domain.calendar import WorkingCalendar, load_calendar

CST = timezone(timedelta(hours=8))


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=CST)


def test_the_shipped_calendar_has_seven_office_hours_a_day(calendar: WorkingCalendar) -> None:
    assert calendar.hours_per_day == 7


def test_a_short_deadline_inside_office_hours_stays_on_the_same_morning(calendar: WorkingCalendar) -> None:
    assert calendar.add_working(local(2026, 11, 25, 9, 30), 2) == local(2026, 11, 25, 11, 30)


def test_the_lunch_break_does_not_count(calendar: WorkingCalendar) -> None:
    assert calendar.add_working(local(2026, 11, 25, 11, 0), 2) == local(2026, 11, 25, 15, 0)


def test_a_deadline_over_a_weekend_skips_it(calendar: WorkingCalendar) -> None:
    friday_afternoon = local(2026, 11, 27, 17, 0)
    assert calendar.add_working(friday_afternoon, 2) == local(2026, 11, 30, 10, 0)


def test_a_report_at_night_starts_counting_when_the_office_opens(calendar: WorkingCalendar) -> None:
    assert calendar.add_working(local(2026, 11, 24, 22, 15), 1) == local(2026, 11, 25, 10, 0)


def test_a_deadline_ending_at_closing_time_is_not_pushed_to_the_next_morning(calendar: WorkingCalendar) -> None:
    assert calendar.add_working(local(2026, 11, 25, 9, 0), 7) == local(2026, 11, 25, 18, 0)


def test_a_deadline_over_national_day_skips_the_whole_holiday(calendar: WorkingCalendar) -> None:
    # 1-7 October 2026 are off, and Saturday 10 October is a make-up working day.
    assert calendar.add_working(local(2026, 9, 30, 17, 0), 2) == local(2026, 10, 8, 10, 0)


def test_a_make_up_working_day_on_a_saturday_counts(calendar: WorkingCalendar) -> None:
    # Saturday 14 February 2026 works to make up for the Spring Festival that follows.
    assert calendar.is_working_day(local(2026, 2, 14, 12, 0).date())
    assert calendar.add_working(local(2026, 2, 13, 17, 0), 2) == local(2026, 2, 14, 10, 0)


def test_the_spring_festival_holiday_is_skipped_to_the_day_after_it(calendar: WorkingCalendar) -> None:
    assert calendar.add_working(local(2026, 2, 14, 17, 0), 2) == local(2026, 2, 24, 10, 0)


def test_the_provisional_2027_spring_festival_days_are_off(calendar: WorkingCalendar) -> None:
    assert not calendar.is_working_day(local(2027, 2, 5, 12, 0).date())  # 除夕, a Friday
    assert not calendar.is_working_day(local(2027, 2, 8, 12, 0).date())  # 初三, a Monday
    assert calendar.is_working_day(local(2027, 2, 9, 12, 0).date())


def test_natural_time_ignores_the_calendar(calendar: WorkingCalendar) -> None:
    saturday_night = local(2026, 10, 3, 23, 50)
    assert calendar.add_working(saturday_night, 0.25, natural=True) == local(2026, 10, 4, 0, 5)
    assert calendar.working_hours_between(saturday_night, local(2026, 10, 4, 3, 50), natural=True) == 4


def test_results_are_utc_whatever_zone_the_input_is_in(calendar: WorkingCalendar) -> None:
    due = calendar.add_working(datetime(2026, 11, 25, 1, 0, tzinfo=UTC), 1)
    assert due.utcoffset() == timedelta(0)
    assert due == local(2026, 11, 25, 10, 0)


def test_naive_datetimes_are_refused(calendar: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.add_working(datetime(2026, 11, 25, 9, 0), 1)


def test_zero_hours_is_the_start_itself(calendar: WorkingCalendar) -> None:
    sunday = local(2026, 11, 29, 12, 0)
    assert calendar.add_working(sunday, 0) == sunday


def test_working_hours_between_measures_what_add_working_added(calendar: WorkingCalendar) -> None:
    start = local(2026, 9, 28, 16, 20)
    for hours in (0.5, 3, 7, 15.25, 40):
        due = calendar.add_working(start, hours)
        assert calendar.working_hours_between(start, due) == pytest.approx(hours)


def test_working_hours_between_a_weekend_is_zero(calendar: WorkingCalendar) -> None:
    assert calendar.working_hours_between(local(2026, 11, 27, 18, 0), local(2026, 11, 30, 9, 0)) == 0


def test_working_hours_backwards_are_negative(calendar: WorkingCalendar) -> None:
    assert calendar.working_hours_between(local(2026, 11, 25, 11, 0), local(2026, 11, 25, 10, 0)) == -1


def test_a_calendar_without_office_hours_is_refused() -> None:
    with pytest.raises(ValueError, match="working period"):
        WorkingCalendar(periods=[])


def test_a_calendar_with_overlapping_periods_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        WorkingCalendar(periods=[(time(9), time(12)), (time(11), time(14))])


def test_a_holiday_ending_before_it_starts_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "calendar.toml"
    path.write_text(
        "periods = [{ start = 09:00:00, end = 12:00:00 }]\n"
        '[[holidays]]\nname = "国庆节"\nfirst = 2026-10-07\nlast = 2026-10-01\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="国庆节"):
        load_calendar(str(path))
