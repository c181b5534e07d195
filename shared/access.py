"""Object-level rules: which case, task or verification a caller may see or act on."""

from __future__ import annotations

from shared.auth import Principal, Role
from shared.case import Case

SEE_ALL_CASES = frozenset({Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR})
# Who may read a reporter's name and phone unmasked: the command centre, and the
# backend that reported the case for that person.
SEE_PERSONAL_DATA = frozenset({Role.DISPATCHER, Role.SUPERVISOR})


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


def sees_personal_data(principal: Principal, case: Case) -> bool:
    if principal.role in SEE_PERSONAL_DATA:
        return True
    return principal.role is Role.REPORTER_BACKEND and case.created_by == principal.sub


def can_act_for_department(principal: Principal, department: str) -> bool:
    return principal.role is Role.HANDLER and principal.department == department


def can_verify_in(principal: Principal, grid: str | None) -> bool:
    return principal.role is Role.GRID_WORKER and grid is not None and grid in principal.grids
