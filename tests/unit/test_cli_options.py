"""The CLI's two shared rules: how a time option is read, and which stack folder a command uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ops.cli_options import NoStack, find_root, parse_time, stack_root, up_root

CST = timezone(timedelta(hours=8))


def test_z_is_utc() -> None:
    assert parse_time("2026-11-26T09:30:00Z") == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def test_an_offset_is_kept_and_names_the_same_moment() -> None:
    moment = parse_time("2026-11-26T17:30:00+08:00")
    assert moment == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert moment.utcoffset() == timedelta(hours=8)


def test_a_time_without_a_zone_is_asia_shanghai_local_time() -> None:
    expected = datetime(2026, 11, 26, 17, 30, tzinfo=CST)
    assert parse_time("2026-11-26T17:30:00") == expected
    assert parse_time("2026-11-26 17:30:00") == expected
    assert parse_time("2026-11-26T17:30") == expected
    assert parse_time("2026-11-26") == datetime(2026, 11, 26, tzinfo=CST)


def test_lower_case_letters_fractions_and_negative_offsets_are_rfc_3339_too() -> None:
    assert parse_time("2026-11-26t09:30:00.250z") == datetime(2026, 11, 26, 9, 30, 0, 250_000, tzinfo=UTC)
    assert parse_time(" 2026-11-26T04:30:00-05:00 ") == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["garbage", "", "26/11/2026 09:30", "2026-11-26T09:30:00+0800", "2026-W48-4", "1764149400", "2026-11-26T09"],
)
def test_anything_else_is_refused_with_the_forms_that_are_taken(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a time: use RFC 3339, e\.g\. 2026-11-26T09:30:00Z"):
        parse_time(text)


def test_a_well_formed_but_impossible_time_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'2026-13-01T00:00:00Z' is not a valid time: month must be in 1\.\.12"):
        parse_time("2026-13-01T00:00:00Z")


def test_root_is_the_option_then_caseloop_home(tmp_path: Path) -> None:
    given = tmp_path / "given"
    assert find_root(given, env={"CASELOOP_HOME": str(tmp_path / "home")}, cwd=tmp_path) == given
    assert find_root(None, env={"CASELOOP_HOME": str(tmp_path / "home")}, cwd=tmp_path) == tmp_path / "home"


def test_without_caseloop_home_the_nearest_stack_folder_above_is_found(tmp_path: Path) -> None:
    (tmp_path / ".caseloop").mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(None, env={}, cwd=deep) == tmp_path.resolve() / ".caseloop"
    (tmp_path / "a" / ".caseloop").mkdir()
    assert find_root(None, env={}, cwd=deep) == tmp_path.resolve() / "a" / ".caseloop"


def test_no_stack_anywhere_names_caseloop_home_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(NoStack, match=r"CASELOOP_HOME is not set and there is no \.caseloop/ folder in"):
        find_root(None, env={}, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_secrets_is_no_stack_for_commands_other_than_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(NoStack, match=r"not a caseloop stack .* CASELOOP_HOME names it"):
        stack_root(None, env={"CASELOOP_HOME": str(home)})
    assert not home.exists()
    home.mkdir()
    (home / "secrets.json").write_text("{}")
    assert stack_root(None, env={"CASELOOP_HOME": str(home)}) == home


def test_up_uses_the_stack_found_else_makes_one_in_the_current_folder(tmp_path: Path) -> None:
    assert up_root(None, env={}, cwd=tmp_path) == tmp_path / ".caseloop"
    (tmp_path / ".caseloop").mkdir()
    (tmp_path / "sub").mkdir()
    assert up_root(None, env={}, cwd=tmp_path / "sub") == tmp_path.resolve() / ".caseloop"
