-- audit: signed checkpoints over the whole log, kept outside the events table.
--
-- Each row covers every event up to (tx, position) in the log's (tx, position) order: `head` is
-- the running SHA-256 over each event's hash, `streams` the last (version, hash) of every stream
-- that moved since the previous checkpoint, `streams_root` the Merkle root over every stream's
-- head so far. The Ed25519 signature is made with a key the database roles cannot read (a file
-- outside the database); a checkpoint someone writes here without that key does not verify.
CREATE TABLE log_checkpoints (
    seq          bigint PRIMARY KEY CHECK (seq >= 1),
    tx           xid8 NOT NULL,
    position     bigint NOT NULL,
    count        bigint NOT NULL,        -- events covered, from the start of the log
    head         bytea NOT NULL,
    streams_root bytea NOT NULL,
    streams      jsonb NOT NULL,         -- {stream_id: [version, hash hex]} moved since seq - 1
    at           timestamptz NOT NULL,
    key_id       text NOT NULL,          -- the signing key's fingerprint
    signature    bytea NOT NULL
);
GRANT SELECT, INSERT ON log_checkpoints TO caseloop_service;
GRANT SELECT ON log_checkpoints TO caseloop_auditor;
-- Auditors read every stream's events and the relay's progress; nothing else needs granting.
