-- Trust holes in the roles (issue 21, items 7, 9 and 10).
--
-- 7. A key registration's status changes only through `keyline_change_key_status` (or an
--    administrator's own UPDATE), and every change records who (the login), where (the station or
--    bench), when and why (reason, ticket) on the row and as a `key.superseded`/`key.revoked` event
--    written by a trigger, so no path skips it. The RMA role loses its UPDATE grant: a bench
--    supersedes through the function, which requires a login bound as a bench and names its bench.
-- 9. SECURITY DEFINER functions name every object by schema and search only pg_catalog (and
--    pg_temp last, which functions are never looked up in); the migration fails when a keyline
--    role, or a login in one, could create objects in a schema such a function searches.
-- 10. A restoration recorded `restored` needs the registration still active, read under a share
--    lock in the inserting transaction: a revoke in between is refused, not recorded restored.

-- 7: who, where and why of a status change, on the row.
ALTER TABLE key_registrations
    ADD COLUMN status_ticket text CHECK (status_ticket <> ''),
    ADD COLUMN status_station text CHECK (status_station <> ''),
    ADD COLUMN status_changed_by text,
    -- For a supersede: the key that replaced this one, where known.
    ADD COLUMN replaced_by sha256_hex;

REVOKE UPDATE (status, status_reason) ON key_registrations FROM keyline_rma;
DROP POLICY key_registrations_rma_supersede ON key_registrations;

-- The one move (active -> superseded or revoked, once), now with a reason and a place required and
-- the login and time set by the database.
CREATE OR REPLACE FUNCTION keyline_key_registration_status_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bound_station text;
BEGIN
    IF (NEW.id, NEW.product_id, NEW.device_id, NEW.algorithm, NEW.spki_der, NEW.fingerprint,
        NEW.escrow_object_id, NEW.job_id, NEW.station, NEW.registered_at)
       IS DISTINCT FROM
       (OLD.id, OLD.product_id, OLD.device_id, OLD.algorithm, OLD.spki_der, OLD.fingerprint,
        OLD.escrow_object_id, OLD.job_id, OLD.station, OLD.registered_at) THEN
        RAISE EXCEPTION 'key registration % is append-only: only its status may change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status <> 'active' OR NEW.status NOT IN ('superseded', 'revoked') THEN
        RAISE EXCEPTION 'key registration % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'Only an active key can be superseded or revoked, once.';
    END IF;
    IF NEW.status_reason IS NULL OR btrim(NEW.status_reason) = '' THEN
        RAISE EXCEPTION 'key registration % is % only with a reason', OLD.id, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'key_registrations_status_reason';
    END IF;
    IF NEW.status_station IS NULL THEN
        SELECT l.station INTO bound_station FROM public.station_logins l WHERE l.login = session_user;
        NEW.status_station := coalesce(bound_station, 'administrator');
    END IF;
    NEW.status_changed_by := session_user;
    NEW.status_changed_at := now();
    RETURN NEW;
END
$$;

-- The event for every status change, whoever made it and however.
CREATE FUNCTION keyline_key_registration_status_event() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO public.events (kind, station, product_id, device_id, job_id, detail)
    VALUES ('key.' || NEW.status, NEW.status_station, NEW.product_id, NEW.device_id, NULL,
            jsonb_strip_nulls(jsonb_build_object(
                'fingerprint', NEW.fingerprint, 'reason', NEW.status_reason, 'ticket', NEW.status_ticket,
                'registration_id', NEW.id::text, 'replaced_by', NEW.replaced_by)));
    RETURN NULL;
END
$$;

CREATE TRIGGER key_registrations_status_event AFTER UPDATE OF status ON key_registrations
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION keyline_key_registration_status_event();

-- Supersede (a bench, or an administrator) or revoke (an administrator only) the device's active
-- key in a product; returns the changed registration, or nothing when there is no active key
-- (none other than `except_fingerprint`, for a re-key registering that very key).
CREATE FUNCTION keyline_change_key_status(p_product text, p_device text, p_status text, p_reason text,
                                          p_ticket text, p_station text, p_replaced_by text DEFAULT NULL)
    RETURNS SETOF public.key_registrations
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    binding public.station_logins%ROWTYPE;
BEGIN
    IF NOT public.keyline_session_trusted('public.key_registrations'::regclass) THEN
        SELECT * INTO binding FROM public.station_logins l WHERE l.login = session_user;
        IF NOT FOUND OR binding.role <> 'rma' OR binding.station IS NULL THEN
            RAISE EXCEPTION 'login % is not bound to an RMA bench, so it cannot change key registrations', session_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('An administrator runs `keyline db grant %s --role rma --station BENCH`.', session_user);
        END IF;
        IF p_status IS DISTINCT FROM 'superseded' THEN
            RAISE EXCEPTION 'login % (bench %) may supersede keys, not mark them %', session_user, binding.station, p_status
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Revoking a key is an administrator''s call.';
        END IF;
        IF p_station IS DISTINCT FROM binding.station THEN
            RAISE EXCEPTION 'login % is bound to bench %; it cannot change keys as %', session_user, binding.station,
                coalesce(p_station, 'NULL')
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    RETURN QUERY
        UPDATE public.key_registrations r
        SET status = p_status, status_reason = p_reason, status_ticket = nullif(p_ticket, ''),
            status_station = p_station, replaced_by = p_replaced_by
        WHERE r.product_id = p_product AND r.device_id = p_device AND r.status = 'active'
            AND (p_replaced_by IS NULL OR r.fingerprint <> p_replaced_by)
        RETURNING r.*;
END
$$;

REVOKE ALL ON FUNCTION keyline_change_key_status(text, text, text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keyline_change_key_status(text, text, text, text, text, text, text) TO keyline_rma;

-- 9: the who/where/when trigger of 0008, every name qualified, searching pg_catalog only.
CREATE OR REPLACE FUNCTION keyline_who_where_when() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    binding   public.station_logins%ROWTYPE;
    fields    jsonb := pg_catalog.to_jsonb(NEW);
    claimed   text := fields->>'station';
    named_job bigint := (fields->>'job_id')::bigint;
    job_station text;
    sequence  text;
    issued    bigint;
BEGIN
    IF public.keyline_session_trusted(TG_RELID) THEN
        RETURN NEW;
    END IF;
    SELECT * INTO binding FROM public.station_logins l WHERE l.login = session_user;
    IF NOT FOUND OR binding.station IS NULL THEN
        RAISE EXCEPTION 'login % is not bound to a station or bench, so it cannot write to %', session_user, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('An administrator runs `keyline db grant %s --role station|rma --station NAME`.', session_user);
    END IF;

    -- Ids come from the identity sequence: its value for this row is the session's currval.
    IF TG_OP = 'INSERT' AND fields ? 'id' THEN
        sequence := pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'id');
        BEGIN
            issued := pg_catalog.currval(sequence::pg_catalog.regclass);
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
        SELECT j.station INTO job_station FROM public.jobs j WHERE j.id = named_job;
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
            NEW.started_at := pg_catalog.now();
        ELSE
            NEW.started_at := OLD.started_at;
        END IF;
        IF NEW.status = 'running' THEN
            NEW.finished_at := NULL;
        ELSIF TG_OP = 'UPDATE' AND NEW.status = OLD.status THEN
            NEW.finished_at := OLD.finished_at;
        ELSE
            NEW.finished_at := pg_catalog.now();
        END IF;
    WHEN 'job_devices', 'escrow_intents' THEN
        IF TG_OP = 'INSERT' THEN
            NEW.created_at := pg_catalog.now();
        ELSE
            NEW.created_at := OLD.created_at;
        END IF;
        NEW.updated_at := pg_catalog.now();
    WHEN 'escrow_objects' THEN
        NEW.created_at := pg_catalog.now();
    WHEN 'key_registrations' THEN
        NEW.registered_at := pg_catalog.now();
    WHEN 'restorations' THEN
        NEW.operator := session_user;
        NEW.restored_at := pg_catalog.now();
    WHEN 'events' THEN
        NEW.actor := session_user;
        NEW.occurred_at := pg_catalog.now();
    WHEN 'job_device_steps' THEN
        NEW.recorded_at := pg_catalog.now();
    END CASE;
    RETURN NEW;
END
$$;

-- 10: `restored` only while the registration is active, read under a share lock (a revoke that is
-- in flight is waited for and then seen; one that comes later waits for this restoration).
-- SECURITY DEFINER: the lock needs an UPDATE grant the bench no longer has.
CREATE FUNCTION keyline_restoration_needs_active_key() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_status text;
BEGIN
    IF NEW.outcome <> 'restored' THEN
        RETURN NEW;
    END IF;
    SELECT r.status INTO current_status FROM public.key_registrations r WHERE r.id = NEW.registration_id FOR SHARE;
    IF current_status IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'key registration % is %, not active: its key is not recorded restored',
            NEW.registration_id, coalesce(current_status, 'missing')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'restorations_registration_active',
                  HINT = 'The key was superseded or revoked while the restore ran; check the device.';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER restorations_registration_active BEFORE INSERT ON restorations
    FOR EACH ROW EXECUTE FUNCTION keyline_restoration_needs_active_key();

-- 9: no keyline role, nor a login in one (unless it can act as the schema's owner anyway), may
-- create in a schema a SECURITY DEFINER function searches, or in `public`, where the tables its
-- qualified names point at live.
CREATE FUNCTION public.keyline_require_safe_definer_paths() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    offender record;
BEGIN
    FOR offender IN
        WITH RECURSIVE keyline_roles AS (
            SELECT r.oid FROM pg_catalog.pg_roles r
            WHERE r.rolname IN ('keyline_station', 'keyline_rma', 'keyline_auditor')
            UNION
            SELECT m.member FROM pg_catalog.pg_auth_members m JOIN keyline_roles k ON m.roleid = k.oid
        ), searched AS (
            SELECT DISTINCT btrim(s, ' "') AS schema_name
            FROM pg_catalog.pg_proc p,
                 LATERAL pg_catalog.unnest(coalesce(
                     (SELECT pg_catalog.string_to_array(pg_catalog.substr(c, 13), ',')
                      FROM pg_catalog.unnest(p.proconfig) c WHERE c LIKE 'search_path=%'),
                     ARRAY['public']) || ARRAY['public']) s
            WHERE p.prosecdef
        )
        SELECT r.rolname, n.nspname
        FROM keyline_roles k JOIN pg_catalog.pg_roles r ON r.oid = k.oid
        CROSS JOIN searched s JOIN pg_catalog.pg_namespace n ON n.nspname = s.schema_name
        WHERE NOT r.rolsuper
          AND NOT pg_catalog.pg_has_role(r.oid, n.nspowner, 'MEMBER')
          AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
        ORDER BY 1, 2
    LOOP
        RAISE EXCEPTION 'role % can create objects in schema %, which keyline''s SECURITY DEFINER functions use',
            offender.rolname, offender.nspname
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM %I (and from PUBLIC), then migrate again.',
                                           offender.nspname, offender.rolname);
    END LOOP;
END
$$;
-- Every later migration that adds a SECURITY DEFINER function calls it again (0012 does).
SELECT public.keyline_require_safe_definer_paths();
