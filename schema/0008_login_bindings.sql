-- The audit trail's who, where and when come from the database, not from the client (issue 12).
-- The administrator binds each login to its role and its station or bench (`keyline db grant`);
-- for every row a station or RMA login writes, a trigger sets the login (actor, operator) and the
-- times from the session, and refuses a station other than the bound one, another station's job
-- and an id chosen by the client (INSERT … OVERRIDING SYSTEM VALUE). The administrator's sessions
-- (superuser, or a member of the role owning the tables: migrations, `make demo`) are trusted.

CREATE TABLE station_logins (
    -- A PostgreSQL login (cluster-wide); the binding is per database.
    login       text PRIMARY KEY CHECK (login <> ''),
    role        text NOT NULL CHECK (role IN ('station', 'rma', 'auditor')),
    -- The station or bench the login writes as; auditors write nothing, so have none.
    station     text CHECK (station <> ''),
    granted_by  text NOT NULL DEFAULT session_user,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT station_logins_station_for_writers CHECK ((role = 'auditor') = (station IS NULL))
);

-- Only the administrator (the owner) changes bindings; everyone may see who is bound where.
GRANT SELECT ON station_logins TO keyline_station, keyline_rma, keyline_auditor;

-- Trusted: a superuser, or a member of the role owning `relation` (who could disable the triggers
-- anyway). SECURITY DEFINER callers still see the login in session_user.
CREATE FUNCTION keyline_session_trusted(relation oid) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = session_user), false)
        OR pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = relation), 'MEMBER')
$$;

-- The function below runs as the schema owner with `public` on its search_path (the keyline tables
-- live there). On PostgreSQL 14 and older every login may create objects in `public`, so a station
-- login could plant a better-matching `public.format(...)` and have it run with the owner's rights.
-- PostgreSQL 15's default, made explicit for every server (a warning, not an error, where the
-- migrating login does not own the schema).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Who, where and when for a row a bound login writes. SECURITY DEFINER: it reads the bindings, the
-- jobs and the identity sequences whatever the login may read; the fixed search_path, with nobody
-- but the owner able to create in it, keeps a login's own objects out of it.
CREATE FUNCTION keyline_who_where_when() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    binding   station_logins%ROWTYPE;
    fields    jsonb := to_jsonb(NEW);
    claimed   text := fields->>'station';
    named_job bigint := (fields->>'job_id')::bigint;
    job_station text;
    sequence  text;
    issued    bigint;
BEGIN
    IF keyline_session_trusted(TG_RELID) THEN
        RETURN NEW;
    END IF;
    SELECT * INTO binding FROM station_logins WHERE login = session_user;
    IF NOT FOUND OR binding.station IS NULL THEN
        RAISE EXCEPTION 'login % is not bound to a station or bench, so it cannot write to %', session_user, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('An administrator runs `keyline db grant %s --role station|rma --station NAME`.', session_user);
    END IF;

    -- Ids come from the identity sequence: its value for this row is the session's currval.
    IF TG_OP = 'INSERT' AND fields ? 'id' THEN
        sequence := pg_get_serial_sequence(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'id');
        BEGIN
            issued := currval(sequence);
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            issued := NULL;
        END;
        IF issued IS DISTINCT FROM (fields->>'id')::bigint THEN
            RAISE EXCEPTION 'login % may not choose the id of a row in % (OVERRIDING SYSTEM VALUE)', session_user, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;

    -- A station finishes its own jobs only.
    IF TG_TABLE_NAME = 'jobs' AND TG_OP = 'UPDATE' AND OLD.station IS DISTINCT FROM binding.station THEN
        RAISE EXCEPTION 'job % belongs to station %; login % (station %) cannot change it', OLD.id, OLD.station,
            session_user, binding.station
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    -- Which station: the bound one. An event may leave it out; every other row names it.
    IF TG_TABLE_NAME = 'events' AND claimed IS NULL THEN
        NEW.station := binding.station;
    ELSIF claimed IS DISTINCT FROM binding.station THEN
        RAISE EXCEPTION 'login % is bound to station %; it cannot write % as station %', session_user, binding.station,
            TG_TABLE_NAME, coalesce(claimed, 'NULL')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Run keyline with --station ' || binding.station || ', or have an administrator rebind the login (`keyline db grant`).';
    END IF;

    -- Which job: only one of the bound station's own.
    IF named_job IS NOT NULL THEN
        SELECT j.station INTO job_station FROM jobs j WHERE j.id = named_job;
        IF FOUND AND job_station IS DISTINCT FROM binding.station THEN
            RAISE EXCEPTION 'job % belongs to station %; login % (station %) cannot write to it in %', named_job, job_station,
                session_user, binding.station, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;

    -- Who and when: the session's login and the database's clock.
    CASE TG_TABLE_NAME
    WHEN 'jobs' THEN
        IF TG_OP = 'INSERT' THEN
            NEW.started_at := now();
        ELSE
            NEW.started_at := OLD.started_at;
        END IF;
        IF NEW.status = 'running' THEN
            NEW.finished_at := NULL;
        ELSIF TG_OP = 'UPDATE' AND NEW.status = OLD.status THEN
            NEW.finished_at := OLD.finished_at;
        ELSE
            NEW.finished_at := now();
        END IF;
    WHEN 'job_devices', 'escrow_intents' THEN
        IF TG_OP = 'INSERT' THEN
            NEW.created_at := now();
        ELSE
            NEW.created_at := OLD.created_at;
        END IF;
        NEW.updated_at := now();
    WHEN 'escrow_objects' THEN
        NEW.created_at := now();
    WHEN 'key_registrations' THEN
        NEW.registered_at := now();
    WHEN 'restorations' THEN
        NEW.operator := session_user;
        NEW.restored_at := now();
    WHEN 'events' THEN
        NEW.actor := session_user;
        NEW.occurred_at := now();
    WHEN 'job_device_steps' THEN
        NEW.recorded_at := now();
    END CASE;
    RETURN NEW;
END
$$;

-- Named to fire after the tables' other BEFORE triggers (they fire in name order), so the values
-- set here are the ones stored.
CREATE TRIGGER jobs_who_where_when BEFORE INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();
CREATE TRIGGER job_devices_who_where_when BEFORE INSERT OR UPDATE ON job_devices
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();
CREATE TRIGGER escrow_intents_who_where_when BEFORE INSERT OR UPDATE ON escrow_intents
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();
CREATE TRIGGER escrow_objects_who_where_when BEFORE INSERT ON escrow_objects
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();
CREATE TRIGGER key_registrations_who_where_when BEFORE INSERT ON key_registrations
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();
CREATE TRIGGER restorations_who_where_when BEFORE INSERT ON restorations
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();
CREATE TRIGGER events_who_where_when BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();
CREATE TRIGGER job_device_steps_who_where_when BEFORE INSERT ON job_device_steps
    FOR EACH ROW EXECUTE FUNCTION keyline_who_where_when();

-- Escrow objects are written once, like registrations, restorations and events: no role, the
-- owner included, rewrites or deletes one.
CREATE TRIGGER escrow_objects_append_only BEFORE UPDATE OR DELETE ON escrow_objects
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER escrow_objects_no_truncate BEFORE TRUNCATE ON escrow_objects
    FOR EACH STATEMENT EXECUTE FUNCTION keyline_reject_change();
