-- How often each consumer's handler has itself failed on an event: the count that decides when a
-- message is dead-lettered. JetStream's delivery count cannot decide it: it also counts the
-- redeliveries after an outage (the database unreachable, a nak with a delay) and after a
-- consumer died holding the message (ack_wait ran out), which are not the message's fault.
--
-- Written only when a handler raises something that is not an outage; deleted when the message
-- is finally handled (in the handling transaction's COMMIT) or dead-lettered (with the dead
-- letter), so the table holds just the messages that are failing now.
CREATE TABLE consumer_failures (
    consumer        text NOT NULL,
    event_id        uuid NOT NULL,
    failures        integer NOT NULL CHECK (failures > 0),
    last_error      text NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Every consuming role counts, and clears, its own consumer's failures; the relay consumes nothing.
GRANT SELECT, INSERT, UPDATE, DELETE ON consumer_failures
    TO caseloop_service, caseloop_intake, caseloop_routing, caseloop_handling, caseloop_verification;
-- Auditors see what is failing, as they see the inbox and the dead letters.
GRANT SELECT ON consumer_failures TO caseloop_auditor;
