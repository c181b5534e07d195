-- intake: reporters' data keys, idempotency keys, open sensor alarms, the case list read model.

CREATE TABLE reporter_keys (
    ref         uuid PRIMARY KEY,
    phone_index bytea,            -- HMAC of the phone number (blind index); NULL once erased
    wrapped_key bytea,            -- the reporter's data key, wrapped by PII_KEY; NULL once erased
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz
);
CREATE UNIQUE INDEX reporter_keys_phone ON reporter_keys (phone_index) WHERE wrapped_key IS NOT NULL;
GRANT SELECT, INSERT, UPDATE ON reporter_keys TO caseloop_service;

-- A retried POST with the same Idempotency-Key gets the first answer back.
CREATE TABLE idempotency_keys (
    caller      text NOT NULL,
    key         text NOT NULL,
    fingerprint bytea NOT NULL,
    status      integer NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO caseloop_service;

-- One open case per sensor device and alarm: repeats merge into it.
CREATE TABLE open_alarms (
    device_key text PRIMARY KEY,
    case_id    uuid NOT NULL
);
CREATE INDEX open_alarms_case ON open_alarms (case_id);
GRANT SELECT, INSERT, DELETE ON open_alarms TO caseloop_service;

-- The case list, kept from the log (disposable: rebuilt by folding each case's events).
CREATE TABLE case_view (
    case_id      uuid PRIMARY KEY,
    version      integer NOT NULL,
    status       text NOT NULL,
    source       text NOT NULL,
    category     text NOT NULL,
    grid         text,
    street       text,
    created_by   text NOT NULL,
    departments  text[] NOT NULL DEFAULT '{}',
    round        integer NOT NULL DEFAULT 0,
    repeat_count integer NOT NULL DEFAULT 1,
    reported_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX case_view_status ON case_view (status, reported_at, case_id);
CREATE INDEX case_view_grid ON case_view (grid, reported_at, case_id);
CREATE INDEX case_view_category ON case_view (category, reported_at, case_id);
CREATE INDEX case_view_created_by ON case_view (created_by, reported_at, case_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON case_view TO caseloop_service;
GRANT SELECT ON case_view TO caseloop_auditor;
