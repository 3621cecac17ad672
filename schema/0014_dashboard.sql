-- The dashboard (issue 23): state writes announce themselves on channel `keyline_floor`, and each
-- station's runner keeps a heartbeat row (`station_status`) the dashboard reads for its alarms.

-- A small JSON note per written row: which table, job, device and station (and an event's kind).
-- Never key material, never an event's detail: a viewer re-reads what it may see.
-- NOTIFY is sent at COMMIT, and PostgreSQL folds identical payloads of one transaction into one.
CREATE FUNCTION public.keyline_floor_notify() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fields jsonb := pg_catalog.to_jsonb(NEW);
    note   jsonb;
BEGIN
    note := pg_catalog.jsonb_build_object(
        'table', TG_TABLE_NAME,
        'job', CASE WHEN TG_TABLE_NAME = 'jobs' THEN fields->'id' ELSE fields->'job_id' END,
        'device', fields->'device_id',
        'station', fields->'station');
    IF TG_TABLE_NAME = 'events' THEN
        note := note || pg_catalog.jsonb_build_object('kind', fields->'kind');
    END IF;
    PERFORM pg_catalog.pg_notify('keyline_floor', note::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER job_devices_floor_notify AFTER INSERT OR UPDATE ON job_devices
    FOR EACH ROW EXECUTE FUNCTION public.keyline_floor_notify();
CREATE TRIGGER job_device_steps_floor_notify AFTER INSERT ON job_device_steps
    FOR EACH ROW EXECUTE FUNCTION public.keyline_floor_notify();
CREATE TRIGGER jobs_floor_notify AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION public.keyline_floor_notify();
CREATE TRIGGER cloud_uploads_floor_notify AFTER INSERT OR UPDATE ON cloud_uploads
    FOR EACH ROW EXECUTE FUNCTION public.keyline_floor_notify();
CREATE TRIGGER events_floor_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION public.keyline_floor_notify();

-- One row per station, rewritten every few seconds by its runner while it runs or waits.
CREATE TABLE station_status (
    station       text PRIMARY KEY CHECK (station <> ''),
    -- The job it runs (NULL between jobs).
    job_id        bigint REFERENCES jobs (id),
    -- The database's clock at the last heartbeat.
    seen_at       timestamptz NOT NULL DEFAULT now(),
    -- The escrow store as the runner sees it: 'ok', or 'holding' while an outage holds new devices.
    store_state   text NOT NULL DEFAULT 'ok' CHECK (store_state ~ '^[a-z][a-z_]*$'),
    store_detail  text,
    -- The jig's ports: [{"path": "1-1.2", "name": "slot 1"}]; [] when every port is permitted.
    ports         jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (pg_catalog.jsonb_typeof(ports) = 'array')
);

-- A station login writes its own station's row only (the binding of 0008), for its own jobs, and
-- the time is the database's. The administrator's sessions are trusted, as elsewhere.
CREATE FUNCTION public.keyline_station_status_row() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    binding     public.station_logins%ROWTYPE;
    job_station text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.station IS DISTINCT FROM OLD.station THEN
        RAISE EXCEPTION 'station_status of % keeps its station', OLD.station USING ERRCODE = 'check_violation';
    END IF;
    IF NOT public.keyline_session_trusted(TG_RELID) THEN
        SELECT * INTO binding FROM public.station_logins l WHERE l.login = session_user;
        IF NOT FOUND OR binding.role <> 'station' OR binding.station IS DISTINCT FROM NEW.station THEN
            RAISE EXCEPTION 'login % is bound to %; it cannot write the heartbeat of station %', session_user,
                coalesce(binding.station, 'no station'), NEW.station
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.job_id IS NOT NULL THEN
            SELECT j.station INTO job_station FROM public.jobs j WHERE j.id = NEW.job_id;
            IF job_station IS DISTINCT FROM NEW.station THEN
                RAISE EXCEPTION 'job % belongs to station %; login % (station %) cannot name it in its heartbeat',
                    NEW.job_id, coalesce(job_station, 'none'), session_user, binding.station
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
        END IF;
    END IF;
    NEW.seen_at := pg_catalog.now();
    RETURN NEW;
END
$$;

CREATE TRIGGER station_status_row BEFORE INSERT OR UPDATE ON station_status
    FOR EACH ROW EXECUTE FUNCTION public.keyline_station_status_row();

-- A heartbeat that changes nothing but its time is not news; a change of job, store or ports is.
CREATE FUNCTION public.keyline_station_status_notify() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('keyline_floor', pg_catalog.jsonb_build_object(
        'table', 'station_status', 'job', NEW.job_id, 'device', NULL, 'station', NEW.station)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER station_status_inserted AFTER INSERT ON station_status
    FOR EACH ROW EXECUTE FUNCTION public.keyline_station_status_notify();
CREATE TRIGGER station_status_changed AFTER UPDATE ON station_status
    FOR EACH ROW WHEN ((OLD.job_id, OLD.store_state, OLD.store_detail, OLD.ports)
                       IS DISTINCT FROM (NEW.job_id, NEW.store_state, NEW.store_detail, NEW.ports))
    EXECUTE FUNCTION public.keyline_station_status_notify();

GRANT SELECT, INSERT ON station_status TO keyline_station;
GRANT UPDATE (job_id, seen_at, store_state, store_detail, ports) ON station_status TO keyline_station;
GRANT SELECT ON station_status TO keyline_auditor;
