-- The append-only event log, the relay's checkpoint, the consumers' inbox and dead letters.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'caseloop_service') THEN
        CREATE ROLE caseloop_service NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'caseloop_auditor') THEN
        CREATE ROLE caseloop_auditor NOLOGIN;
    END IF;
END
$$;

CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction's id: readers take only rows below the snapshot's xmin
    -- horizon and order by (tx, position); see shared/eventstore.py.
    tx             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid NOT NULL,
    stream_id      text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    type           text NOT NULL,
    schema_version smallint NOT NULL DEFAULT 1,
    -- json (not jsonb) keeps the exact bytes that the hash chain covers.
    data           json NOT NULL,
    metadata       json NOT NULL,
    recorded_at    timestamptz NOT NULL,
    hash           bytea NOT NULL,
    CONSTRAINT events_stream_version PRIMARY KEY (stream_id, version),
    CONSTRAINT events_event_id UNIQUE (event_id),
    CONSTRAINT events_position UNIQUE (position)
);
CREATE INDEX events_tx_position ON events (tx, position);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- The log is append-only: the database itself refuses to change or remove an event.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT, INSERT ON events TO caseloop_service;
GRANT SELECT ON events TO caseloop_auditor;

-- Where each relay (or log reader) has got to: the (tx, position) pair, never position alone.
CREATE TABLE checkpoints (
    name       text PRIMARY KEY,
    tx         xid8 NOT NULL DEFAULT '0',
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON checkpoints TO caseloop_service;

-- Idempotent consumers: a row per (consumer, event) handled, written with the handler's effects.
CREATE TABLE inbox (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
GRANT SELECT, INSERT ON inbox TO caseloop_service;

-- Messages a consumer gave up on: kept whole so they can be inspected and replayed.
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer    text NOT NULL,
    stream_seq  bigint NOT NULL,
    subject     text NOT NULL,
    event_id    text,
    headers     jsonb NOT NULL,
    payload     bytea NOT NULL,
    deliveries  integer NOT NULL,
    error       text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, stream_seq)
);
GRANT SELECT, INSERT ON dead_letters TO caseloop_service;
GRANT SELECT ON dead_letters, checkpoints, inbox TO caseloop_auditor;
