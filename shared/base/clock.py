"""The one source of "now": the system clock, or one that tests can move from outside."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class OffsetFileClock:
    """The system clock moved forward by the seconds written in a file.

    Lets a test move time for services running as separate processes: it writes
    `3600` to the file and every process's clock is an hour ahead. A missing or
    empty file means no offset.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._mtime = -1.0
        self._offset = timedelta()

    def __call__(self) -> datetime:
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            return datetime.now(UTC)
        if mtime != self._mtime:
            text = self._path.read_text().strip()
            self._offset = timedelta(seconds=float(text or 0))
            self._mtime = mtime
        return datetime.now(UTC) + self._offset


def clock_from(path: str | None) -> Clock:
    return OffsetFileClock(path) if path else system_clock
