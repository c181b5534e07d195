-- Which case a task or a verification belongs to, written with the event that creates the id.
--
-- A command names a task or a verification; it loads the case from the log, so it needs the case
-- id first. Looked up in a service's read model, a task the log already holds would be "not
-- found" until that service's consumer caught up. Here the INSERT INTO events itself fills the
-- index (a trigger), in the same transaction: every append path (one stream, group commit, a
-- consumer's) goes through that INSERT, so whoever can read the event can find its case.
CREATE TABLE case_index (
    id      uuid PRIMARY KEY,
    kind    text NOT NULL CHECK (kind IN ('task', 'verification')),
    case_id uuid NOT NULL
);

-- SECURITY DEFINER: the index changes only with the log, so no service role may write it itself.
-- The search path is pinned, as a definer's function must have it.
CREATE FUNCTION case_index_add() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NEW.type = 'TaskDispatched' THEN
        INSERT INTO public.case_index (id, kind, case_id)
        VALUES ((NEW.data -> 'task' ->> 'task_id')::uuid, 'task', (NEW.data ->> 'case_id')::uuid)
        ON CONFLICT (id) DO NOTHING;
    ELSE
        INSERT INTO public.case_index (id, kind, case_id)
        VALUES ((NEW.data ->> 'verification_id')::uuid, 'verification', (NEW.data ->> 'case_id')::uuid)
        ON CONFLICT (id) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION case_index_add() FROM PUBLIC;

-- The WHEN clause is checked without calling the function: other events cost nothing.
CREATE TRIGGER events_case_index AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.type IN ('TaskDispatched', 'VerificationRequested'))
    EXECUTE FUNCTION case_index_add();

-- The ids already in the log. The trigger exists first and locks out writers until this
-- migration commits, so no event falls between the backfill and the trigger.
INSERT INTO case_index (id, kind, case_id)
SELECT id, kind, case_id FROM (
    SELECT position, (data -> 'task' ->> 'task_id')::uuid AS id, 'task' AS kind, (data ->> 'case_id')::uuid AS case_id
    FROM events WHERE type = 'TaskDispatched'
    UNION ALL
    SELECT position, (data ->> 'verification_id')::uuid, 'verification', (data ->> 'case_id')::uuid
    FROM events WHERE type = 'VerificationRequested'
) AS created
ORDER BY position
ON CONFLICT (id) DO NOTHING;

-- Read by the services whose commands name a task or a verification, and by auditors.
GRANT SELECT ON case_index
    TO caseloop_service, caseloop_routing, caseloop_handling, caseloop_verification, caseloop_auditor;
