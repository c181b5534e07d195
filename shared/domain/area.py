"""Where a case is: the street a grid belongs to (pure)."""

from __future__ import annotations

from collections.abc import Container, Mapping

GRID_SEPARATOR = "-"  # grid codes are <street>-<community>-<nn> (wenfeng-tianehu-01)


def street_of(
    grid: str | None, grids: Mapping[str, str] | None = None, streets: Container[str] | None = None
) -> str | None:
    """The street of a grid: the area data's own entry for it, else the street its code starts with.

    Given the known `streets`, a code that starts with none of them has no street (None);
    without them (intake keeps no area data) the code's first part is taken as it is.
    """
    if not grid:
        return None
    if grids is not None and grid in grids:
        return grids[grid]
    prefix = grid.split(GRID_SEPARATOR, 1)[0]
    return prefix if streets is None or prefix in streets else None
