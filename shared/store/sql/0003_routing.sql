-- routing: its view of tasks (deadline index, task -> case) and the dispatcher's queue.

CREATE TABLE routing_tasks (
    task_id      uuid PRIMARY KEY,
    case_id      uuid NOT NULL,
    department   text NOT NULL,
    status       text NOT NULL,
    case_version integer NOT NULL,
    next_check   timestamptz  -- when a warning or overdue of this task's case is next due
);
CREATE INDEX routing_tasks_case ON routing_tasks (case_id);
CREATE INDEX routing_tasks_due ON routing_tasks (next_check) WHERE next_check IS NOT NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON routing_tasks TO caseloop_service;

CREATE TABLE dispatch_queue (
    case_id      uuid PRIMARY KEY,
    category     text NOT NULL,
    grid         text,
    street       text,
    reason       text NOT NULL,
    queued_at    timestamptz NOT NULL,
    case_version integer NOT NULL
);
CREATE INDEX dispatch_queue_age ON dispatch_queue (queued_at, case_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON dispatch_queue TO caseloop_service;
GRANT SELECT ON routing_tasks, dispatch_queue TO caseloop_auditor;
