-- Least privilege per service: each service connects as its own role, which may append to and
-- read the log and the shared consumer tables, but write only its own read models.
--
-- The roles are made (with LOGIN and a password) before migrations run: by `caseloop up`'s
-- bootstrap, or by a superuser (deploy/postgres/init-roles.sh). The owner that runs the migrations
-- cannot create roles; a superuser running them makes any that are missing, NOLOGIN.
-- caseloop_service keeps its rights: one shared DATABASE_URL for every service still works.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['caseloop_intake', 'caseloop_routing', 'caseloop_handling',
                                'caseloop_verification', 'caseloop_relay'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
    END LOOP;
END
$$;

-- Common to every service: the log (append and read, never change), idempotent consumers, dead
-- letters, and signed calls (any service's auth middleware verifies them). The relay only reads
-- the log: it appends nothing and consumes nothing.
GRANT SELECT, INSERT ON events, inbox, dead_letters
    TO caseloop_intake, caseloop_routing, caseloop_handling, caseloop_verification;
GRANT SELECT ON events TO caseloop_relay;
GRANT SELECT ON backend_keys
    TO caseloop_intake, caseloop_routing, caseloop_handling, caseloop_verification, caseloop_relay;
GRANT SELECT, INSERT, DELETE ON signature_nonces
    TO caseloop_intake, caseloop_routing, caseloop_handling, caseloop_verification, caseloop_relay;

-- intake: the case list, open alarms, idempotent POSTs, reporters' keys and quotas, PII reads.
GRANT SELECT, INSERT, UPDATE, DELETE ON case_view, reporter_quota TO caseloop_intake;
GRANT SELECT, INSERT, DELETE ON open_alarms, idempotency_keys TO caseloop_intake;
GRANT SELECT, INSERT, UPDATE ON reporter_keys TO caseloop_intake;
GRANT SELECT, INSERT ON pii_reads TO caseloop_intake;

-- routing: its task index and the dispatcher's queue.
GRANT SELECT, INSERT, UPDATE, DELETE ON routing_tasks, dispatch_queue TO caseloop_routing;

-- handling: the task list.
GRANT SELECT, INSERT, UPDATE, DELETE ON task_view TO caseloop_handling;

-- verification: the list of verifications.
GRANT SELECT, INSERT, UPDATE, DELETE ON verification_view TO caseloop_verification;

-- relay: where it has got to, and the signed checkpoints over the log.
GRANT SELECT, INSERT, UPDATE ON checkpoints TO caseloop_relay;
GRANT SELECT, INSERT ON log_checkpoints TO caseloop_relay;
