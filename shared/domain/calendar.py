"""The working-time calendar: office hours, weekends, public holidays and make-up working days."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from importlib import resources
from typing import Any

_HOUR = timedelta(hours=1)


class WorkingCalendar:
    """Counts time the way deadlines (时限) do: only inside office hours on working days."""

    def __init__(
        self,
        periods: Iterable[tuple[time, time]],
        workdays: Iterable[int] = (1, 2, 3, 4, 5),
        holidays: Iterable[date] = (),
        makeup_workdays: Iterable[date] = (),
        utc_offset: timedelta = timedelta(hours=8),
    ) -> None:
        self.periods = tuple(sorted(periods))
        self.workdays = frozenset(workdays)
        self.holidays = frozenset(holidays)
        self.makeup_workdays = frozenset(makeup_workdays)
        self.tz = timezone(utc_offset)
        # Without these checks add_working() could search forever for working time.
        if not self.periods:
            raise ValueError("calendar: at least one working period is needed")
        for start, end in self.periods:
            if not start < end:
                raise ValueError(f"calendar: period {start}-{end} ends before it starts")
        for (_, end), (start, _) in zip(self.periods, self.periods[1:], strict=False):
            if start < end:
                raise ValueError(f"calendar: periods overlap at {start}")
        if not self.workdays or not self.workdays <= set(range(1, 8)):
            raise ValueError(f"calendar: workdays must be ISO weekdays 1-7, got {sorted(self.workdays)}")
        clash = self.holidays & self.makeup_workdays
        if clash:
            raise ValueError(f"calendar: {min(clash)} is both a holiday and a make-up working day")

    @property
    def hours_per_day(self) -> float:
        return sum((_span(start, end) for start, end in self.periods), timedelta()) / _HOUR

    def is_working_day(self, day: date) -> bool:
        # A make-up working day (调休上班) is a weekend day that works, so it wins over the weekday rule.
        if day in self.makeup_workdays:
            return True
        return day not in self.holidays and day.isoweekday() in self.workdays

    def add_working(self, start: datetime, hours: float, *, natural: bool = False) -> datetime:
        """The instant `hours` of working time (or of plain time, if natural) after `start`, in UTC."""
        _require_aware(start)
        if hours < 0:
            raise ValueError(f"hours must not be negative, got {hours}")
        if natural or hours == 0:
            return (start + timedelta(hours=hours)).astimezone(UTC)
        remaining = timedelta(hours=hours)
        for opens, closes in self._open_intervals(start.astimezone(self.tz)):
            if remaining <= closes - opens:
                return (opens + remaining).astimezone(UTC)
            remaining -= closes - opens
        raise AssertionError("unreachable: _open_intervals never ends")

    def working_hours_between(self, a: datetime, b: datetime, *, natural: bool = False) -> float:
        """Working (or, if natural, plain) hours from `a` to `b`; negative when `b` is before `a`."""
        _require_aware(a)
        _require_aware(b)
        if natural:
            return (b - a) / _HOUR
        if b < a:
            return -self.working_hours_between(b, a)
        total = timedelta()
        for opens, closes in self._open_intervals(a.astimezone(self.tz)):
            if opens >= b:
                break
            total += min(closes, b) - opens
        return total / _HOUR

    def _open_intervals(self, cursor: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Office-hour intervals from `cursor` onwards, the first one clipped to start at `cursor`."""
        day = cursor.date()
        while True:
            if self.is_working_day(day):
                for start, end in self.periods:
                    opens = max(datetime.combine(day, start, self.tz), cursor)
                    closes = datetime.combine(day, end, self.tz)
                    if opens < closes:
                        yield opens, closes
            day += timedelta(days=1)


def load_calendar(path: str | None = None) -> WorkingCalendar:
    """Read a calendar TOML file; None reads the shipped shared/domain/data/calendar.toml."""
    if path is None:
        text = (resources.files("shared.domain") / "data" / "calendar.toml").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"calendar: not valid TOML: {e}") from e
    return _calendar_from(data)


def _calendar_from(data: dict[str, Any]) -> WorkingCalendar:
    periods: list[tuple[time, time]] = []
    for i, period in enumerate(data.get("periods", [])):
        start, end = period.get("start"), period.get("end")
        if not isinstance(start, time) or not isinstance(end, time):
            raise ValueError(f"calendar: periods[{i}] needs start and end as TOML times (09:00:00)")
        periods.append((start, end))
    holidays: set[date] = set()
    makeup: set[date] = set()
    for i, holiday in enumerate(data.get("holidays", [])):
        where = f"calendar: holidays[{i}] ({holiday.get('name', '?')})"
        first, last = holiday.get("first"), holiday.get("last")
        if not _is_date(first) or not _is_date(last) or last < first:
            raise ValueError(f"{where}: needs dates first <= last")
        holidays.update(first + timedelta(days=n) for n in range((last - first).days + 1))
        for day in holiday.get("makeup_workdays", []):
            if not _is_date(day):
                raise ValueError(f"{where}: makeup_workdays holds {day!r}, not a date")
            makeup.add(day)
    offset = data.get("utc_offset_hours", 8)
    if not isinstance(offset, int | float) or not -14 <= offset <= 14:
        raise ValueError(f"calendar: utc_offset_hours must be a number of hours, got {offset!r}")
    return WorkingCalendar(periods, data.get("workdays", (1, 2, 3, 4, 5)), holidays, makeup, timedelta(hours=offset))


def _is_date(value: object) -> bool:
    # tomllib gives datetime for "2026-01-01T00:00", and datetime is a date subclass.
    return isinstance(value, date) and not isinstance(value, datetime)


def _span(start: time, end: time) -> timedelta:
    return datetime.combine(date.min, end) - datetime.combine(date.min, start)


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment.isoformat()}")
