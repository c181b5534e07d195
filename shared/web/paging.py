"""Keyset pagination over a read-model table: filters, a (sort key, id) order, an opaque cursor."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import UUID

from shared.web.http import ProblemError


def encode_cursor(at: datetime, ident: UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        at, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), UUID(ident)
    except ValueError:
        raise ProblemError(400, "Invalid cursor", "use next_cursor from a previous page", kind="cursor") from None


class Page:
    """One page of `table`, ordered by (`sort`, `ident`); table and column names come from code only."""

    def __init__(self, table: str, sort: str, ident: str, *, descending: bool = False) -> None:
        self.table, self.sort, self.ident, self.descending = table, sort, ident, descending
        self.clauses: list[str] = ["true"]
        self.args: list[Any] = []

    def where(self, clause: str, value: Any) -> None:
        """Add a filter: `{}` in `clause` stands for the value's parameter."""
        self.args.append(value)
        self.clauses.append(clause.format(f"${len(self.args)}"))

    async def fetch(self, pool: Any, cursor: str | None, size: int) -> tuple[list[Any], str | None]:
        """The rows of this page and the cursor of the next one (None on the last page)."""
        args = list(self.args)
        clauses = list(self.clauses)
        if cursor:
            at, after = decode_cursor(cursor)
            args.extend([at, after])
            direction = "<" if self.descending else ">"
            clauses.append(f"({self.sort}, {self.ident}) {direction} (${len(args) - 1}, ${len(args)})")
        args.append(size + 1)
        order = " DESC" if self.descending else ""
        rows = await pool.fetch(
            f"""SELECT * FROM {self.table} WHERE {" AND ".join(clauses)}
                ORDER BY {self.sort}{order}, {self.ident}{order} LIMIT ${len(args)}""",
            *args,
        )
        if len(rows) <= size:
            return list(rows), None
        last = rows[size - 1]
        return list(rows[:size]), encode_cursor(last[self.sort], last[self.ident])
