-- verification: the list of verifications, kept from the log (disposable: rebuilt by folding each case).

CREATE TABLE verification_view (
    verification_id uuid PRIMARY KEY,
    case_id         uuid NOT NULL,
    round           integer NOT NULL,
    kind            text NOT NULL,            -- "grid_worker" | "reporter"
    grid            text,                     -- NULL: a case located by coordinates only
    outcome         text NOT NULL,            -- "pending" | "passed" | "failed" | "withdrawn"
    respond_by      timestamptz,              -- reporter confirmations: closed by default after this
    created_by      text NOT NULL,            -- the backend that reported the case
    category        text NOT NULL,
    case_version    integer NOT NULL,
    requested_at    timestamptz NOT NULL,     -- when the row was first written; the list's order
    updated_at      timestamptz NOT NULL
);
CREATE INDEX verification_view_grid ON verification_view (grid, outcome, requested_at, verification_id);
CREATE INDEX verification_view_created_by ON verification_view (created_by, requested_at, verification_id);
CREATE INDEX verification_view_order ON verification_view (requested_at, verification_id);
-- The timer's question: which reporter confirmations are due.
CREATE INDEX verification_view_due ON verification_view (respond_by)
    WHERE outcome = 'pending' AND kind = 'reporter';
GRANT SELECT, INSERT, UPDATE, DELETE ON verification_view TO caseloop_service;
GRANT SELECT ON verification_view TO caseloop_auditor;
