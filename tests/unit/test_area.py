"""The grid → street rule, one function for intake (no area data) and routing (the policy's)."""

from __future__ import annotations

from services.intake.decide import ReportCase, decide
from shared.domain import events as ev
from shared.domain.area import street_of
from shared.domain.case import NO_CASE
from tests import examples

GRIDS = {"wenfeng-tianehu-01": "wenfeng", "lakeside-07": "hanfeng"}
STREETS = ("wenfeng", "hanfeng", "zhaojia")


def test_a_grid_belongs_to_the_street_its_code_starts_with() -> None:
    assert street_of("wenfeng-tianehu-01") == "wenfeng"
    assert street_of("zhaojia-unlisted-17", GRIDS, STREETS) == "zhaojia"


def test_the_area_datas_own_entry_for_a_grid_comes_first() -> None:
    assert street_of("lakeside-07", GRIDS, STREETS) == "hanfeng"
    assert street_of("lakeside-07") == "lakeside"  # without the area data: the convention alone


def test_given_the_known_streets_a_code_that_starts_with_none_is_no_street() -> None:
    assert street_of("atlantis-01", GRIDS, STREETS) is None
    assert street_of("atlantis-01") == "atlantis"


def test_no_grid_is_no_street() -> None:
    assert street_of(None) is None
    assert street_of("", GRIDS, STREETS) is None


def report(location: ev.Location) -> ReportCase:
    reported = examples.case_reported()
    return ReportCase(
        case_id=reported.case_id,
        source=reported.source,
        category=reported.category,
        description=reported.description,
        location=location,
        reported_at=reported.reported_at,
        created_by=reported.created_by,
    )


def test_a_report_from_a_grid_is_recorded_with_the_grids_street() -> None:
    [reported] = decide(NO_CASE, report(ev.Location(grid="zhendong-zhendong-02", address="镇东社区")))
    assert isinstance(reported, ev.CaseReported)
    assert reported.location == ev.Location(grid="zhendong-zhendong-02", street="zhendong", address="镇东社区")


def test_a_report_by_coordinates_alone_has_no_street() -> None:
    [reported] = decide(NO_CASE, report(ev.Location(lat=31.16, lon=108.39)))
    assert isinstance(reported, ev.CaseReported)
    assert reported.location.street is None
