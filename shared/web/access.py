"""Object-level rules: which case, task or verification a caller may see or act on, and what
it may see of a case's reporter."""

from __future__ import annotations

import msgspec

from shared.domain.case import Case
from shared.web.auth import Principal, Role

SEE_ALL_CASES = frozenset({Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR})
# Who may read a reporter's name and phone unmasked, each time stating why: the command centre.
SEE_PERSONAL_DATA = frozenset({Role.DISPATCHER, Role.SUPERVISOR})
# Roles the token's `pii` grant admits to the same rule (a purpose, and the read recorded).
# The grant alone unmasks nothing; for any other role it changes nothing.
PII_GRANT_ROLES = frozenset({Role.AUDITOR})
# The backend that reported the case is that person's own channel: it needs no purpose, and
# its reads are recorded under this one.
PURPOSE_LENGTH = 200  # what of a stated purpose is kept


def can_read_case(principal: Principal, case: Case) -> bool:
    match principal.role:
        case role if role in SEE_ALL_CASES:
            return True
        case Role.REPORTER_BACKEND:
            return case.created_by == principal.sub
        case Role.HANDLER:
            return any(t.department == principal.department for t in case.tasks)
        case Role.GRID_WORKER:
            return case.location.grid in principal.grids
        case _:
            return False


class PersonalDataRead(msgspec.Struct, frozen=True, kw_only=True):
    """What one response may show of a case's reporter, and the record the read leaves."""

    unmask: bool
    record: str | None = None  # the purpose to write to pii_reads when the reporter is shown; None: nothing


MASKED = PersonalDataRead(unmask=False)


def personal_data_read(principal: Principal, case: Case, purpose: str | None) -> PersonalDataRead:
    """The one rule for every response that can carry a reporter (a case, its history, lists, exports).

    Unmasked only for a caller who may read the case, is allowed personal data (the backend that
    reported it, dispatchers and supervisors, auditors with the `pii` grant) and states a purpose;
    every unmasked read is recorded. Everyone else, and everyone without a purpose, sees the
    reporter masked, and nothing is recorded.
    """
    purpose = (purpose or "").strip()[:PURPOSE_LENGTH]
    if case.reporter is None or not can_read_case(principal, case):
        return MASKED
    # The backend that reported the case (can_read_case) holds its citizen's data already; it too
    # states why it reads it unmasked, so that every unmasked read, by anyone, is on record.
    allowed = (
        principal.role is Role.REPORTER_BACKEND
        or principal.role in SEE_PERSONAL_DATA
        or (principal.pii and principal.role in PII_GRANT_ROLES)
    )
    if allowed and purpose:
        return PersonalDataRead(unmask=True, record=purpose)
    return MASKED


def can_act_for_department(principal: Principal, department: str) -> bool:
    return principal.role is Role.HANDLER and principal.department == department


def can_verify_in(principal: Principal, grid: str | None) -> bool:
    return principal.role is Role.GRID_WORKER and grid is not None and grid in principal.grids
