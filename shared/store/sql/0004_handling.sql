-- handling: the task list read model (disposable: rebuilt by folding each case's events).

CREATE TABLE task_view (
    task_id      uuid PRIMARY KEY,
    case_id      uuid NOT NULL,
    department   text NOT NULL,
    round        integer NOT NULL,
    lead         boolean NOT NULL,
    status       text NOT NULL,
    accept_by    timestamptz NOT NULL,
    complete_by  timestamptz NOT NULL,
    category     text NOT NULL,
    grid         text,
    case_version integer NOT NULL,  -- the case version this row was folded from
    updated_at   timestamptz NOT NULL
);
-- A department's queue, most urgent first (the listing's keyset order).
CREATE INDEX task_view_department_status ON task_view (department, status, complete_by, task_id);
CREATE INDEX task_view_status ON task_view (status, complete_by, task_id);
CREATE INDEX task_view_case ON task_view (case_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON task_view TO caseloop_service;
GRANT SELECT ON task_view TO caseloop_auditor;
