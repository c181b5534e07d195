-- Security: backends' public keys and used nonces (signed calls), who read personal data,
-- per-reporter daily counts by blind index, and least privilege for the roles.

-- One row per key a mini-program backend signs with (RFC 9421, Ed25519): public keys only.
CREATE TABLE backend_keys (
    keyid      text PRIMARY KEY CHECK (length(keyid) BETWEEN 1 AND 128),
    sub        text NOT NULL CHECK (length(sub) BETWEEN 1 AND 64),
    public_key bytea NOT NULL CHECK (length(public_key) = 32),  -- raw Ed25519
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
-- Registered by the owner (`caseloop backends register`); services only look keys up.
GRANT SELECT ON backend_keys TO caseloop_service, caseloop_auditor;

-- A signature's nonce is accepted once: kept until its signature could no longer be fresh.
CREATE TABLE signature_nonces (
    keyid      text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (keyid, nonce)
);
CREATE INDEX signature_nonces_expiry ON signature_nonces (expires_at);
GRANT SELECT, INSERT, DELETE ON signature_nonces TO caseloop_service;

-- Every unmasked read of a reporter's name or phone: who, which case, why.
CREATE TABLE pii_reads (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    read_at    timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    case_id    uuid NOT NULL,
    purpose    text NOT NULL,
    request_id text NOT NULL DEFAULT ''
);
CREATE INDEX pii_reads_case ON pii_reads (case_id, read_at);
-- Services add rows and serve them to auditors; nobody changes or removes one.
GRANT SELECT, INSERT ON pii_reads TO caseloop_service;
GRANT SELECT ON pii_reads TO caseloop_auditor;

-- Reports per reporter per day, keyed by the phone's blind index (never the phone itself).
CREATE TABLE reporter_quota (
    phone_index bytea NOT NULL,
    day         date NOT NULL,
    reports     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (phone_index, day)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON reporter_quota TO caseloop_service;

-- Least privilege: nothing for PUBLIC; the auditor reads, never writes.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
