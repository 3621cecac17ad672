-- Trust holes in the line (issue 21, items 3–6 and 8): a fenced job lease, abandoned job devices,
-- write-ahead escrow for the RMA bench, `keys doctor` intents, and registrations the database
-- itself requires to be backed by an escrow the protocol recorded. Every name below is qualified
-- and every function pins its search_path, so nothing a login creates can stand in for them.

-- 1. The job lease, fenced (item 4). Taking a job's lease (the advisory lock of Registry's
-- JobLease) bumps `lease_epoch`; every later state write of the job must present the current
-- epoch in the transaction-local setting `keyline.job_lease` ('<job>:<epoch>'). After a database
-- restart a second run takes the lease anew, and the first run's next write is refused.
ALTER TABLE public.jobs ADD COLUMN lease_epoch bigint CHECK (lease_epoch > 0);
GRANT UPDATE (lease_epoch) ON public.jobs TO keyline_station;

-- Whether this transaction presents the current lease of `job` (a job never leased needs none).
CREATE FUNCTION public.keyline_job_lease_presented(job bigint, epoch bigint) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT epoch IS NULL
        OR pg_catalog.current_setting('keyline.job_lease', true) IS NOT DISTINCT FROM job::text || ':' || epoch::text
$$;

CREATE FUNCTION public.keyline_job_lease_refusal(job bigint, epoch bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'job % is leased to another run (lease %); this session presented %', job, epoch,
        coalesce(nullif(pg_catalog.current_setting('keyline.job_lease', true), ''), 'no lease')
        USING ERRCODE = 'lock_not_available', CONSTRAINT = 'job_lease_fence', DETAIL = job::text,
              HINT = 'Another keyline process took the job over (a second --resume, e.g. after a database restart); this one must stop.';
END
$$;

-- jobs: a new epoch only one above the last, and only from the session holding the job's advisory
-- lock (class 0x6B6C6A62 "kljb", JobLease.lockClass); any other change presents the current epoch.
CREATE FUNCTION public.keyline_jobs_lease_fence() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.lease_epoch IS DISTINCT FROM OLD.lease_epoch THEN
        IF NEW.lease_epoch IS DISTINCT FROM coalesce(OLD.lease_epoch, 0) + 1 OR NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_locks l
            WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted
              AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
              AND l.classid = 1802267234::oid AND l.objsubid = 2
              AND l.objid::text::bigint = (NEW.id & 4294967295)) THEN
            RAISE EXCEPTION 'job % lease % may be taken only as % by the session holding the job''s lock', NEW.id,
                NEW.lease_epoch, coalesce(OLD.lease_epoch, 0) + 1
                USING ERRCODE = 'lock_not_available', CONSTRAINT = 'job_lease_fence';
        END IF;
        RETURN NEW;
    END IF;
    IF NOT public.keyline_job_lease_presented(OLD.id, OLD.lease_epoch) THEN
        PERFORM public.keyline_job_lease_refusal(OLD.id, OLD.lease_epoch);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_lease_fence BEFORE UPDATE ON public.jobs
    FOR EACH ROW EXECUTE FUNCTION public.keyline_jobs_lease_fence();

-- A job's rows (device states, escrow intents, step timings): the job row is share-locked, so a
-- lease being taken waits for the write, and a write waiting on it then sees the new epoch.
CREATE FUNCTION public.keyline_job_rows_lease_fence() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    epoch bigint;
BEGIN
    SELECT j.lease_epoch INTO epoch FROM public.jobs j WHERE j.id = NEW.job_id FOR SHARE;
    IF NOT public.keyline_job_lease_presented(NEW.job_id, epoch) THEN
        PERFORM public.keyline_job_lease_refusal(NEW.job_id, epoch);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_devices_lease_fence BEFORE INSERT OR UPDATE ON public.job_devices
    FOR EACH ROW EXECUTE FUNCTION public.keyline_job_rows_lease_fence();
CREATE TRIGGER escrow_intents_lease_fence BEFORE INSERT OR UPDATE ON public.escrow_intents
    FOR EACH ROW EXECUTE FUNCTION public.keyline_job_rows_lease_fence();
CREATE TRIGGER job_device_steps_lease_fence BEFORE INSERT ON public.job_device_steps
    FOR EACH ROW EXECUTE FUNCTION public.keyline_job_rows_lease_fence();

-- 2. Abandoned job devices (item 3). An operator abandons a device a job cannot finish (its key
-- damaged or changed since key_ready), or re-opens it, with a reason; the same transaction appends
-- the `job_device.abandoned` / `job_device.reopened` event (who, where, when: the database's). An
-- abandoned device keeps its state and moves no further; resumes and later jobs pass it by.
ALTER TABLE public.job_devices
    ADD COLUMN abandoned_at timestamptz,
    ADD COLUMN abandon_reason text CHECK (abandon_reason <> ''),
    ADD CONSTRAINT job_devices_abandon_has_reason CHECK ((abandoned_at IS NULL) = (abandon_reason IS NULL)),
    ADD CONSTRAINT job_devices_done_not_abandoned CHECK (state <> 'done' OR abandoned_at IS NULL);
GRANT UPDATE (abandoned_at, abandon_reason) ON public.job_devices TO keyline_station;

CREATE FUNCTION public.keyline_job_device_abandonment() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.abandoned_at IS NOT NULL AND OLD.abandoned_at IS NOT NULL AND NEW.state IS DISTINCT FROM OLD.state THEN
        RAISE EXCEPTION 'device % in job % is abandoned (%): re-open it before it moves', OLD.device_id, OLD.job_id,
            OLD.abandon_reason
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_abandoned';
    END IF;
    IF NEW.abandoned_at IS NOT NULL AND OLD.abandoned_at IS NULL THEN
        NEW.abandoned_at := pg_catalog.now();   -- the database's clock, not the client's
    ELSIF NEW.abandoned_at IS NOT NULL THEN
        NEW.abandoned_at := OLD.abandoned_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_devices_abandonment BEFORE UPDATE ON public.job_devices
    FOR EACH ROW EXECUTE FUNCTION public.keyline_job_device_abandonment();

-- Abandoning or re-opening is audited: checked at commit, the transaction holds the event.
CREATE FUNCTION public.keyline_job_device_abandonment_audited() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    expected_kind text := CASE WHEN NEW.abandoned_at IS NULL THEN 'job_device.reopened' ELSE 'job_device.abandoned' END;
BEGIN
    IF (OLD.abandoned_at IS NULL) = (NEW.abandoned_at IS NULL) THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.events e WHERE e.job_id = NEW.job_id AND e.device_id = NEW.device_id
                   AND e.kind = expected_kind AND e.occurred_at = pg_catalog.now() AND e.detail ? 'reason') THEN
        RAISE EXCEPTION 'device % in job %: % without its event', NEW.device_id, NEW.job_id, expected_kind
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_abandonment_audited';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER job_devices_abandonment_audited AFTER UPDATE OF abandoned_at ON public.job_devices
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.keyline_job_device_abandonment_audited();

-- 3. Write-ahead escrow at the RMA bench (item 5): the object key and ciphertext hash are recorded
-- before the object is written, as the line records a job device's intent; the object row and the
-- intent's commit are one transaction. `generation` > 1 names an object written beside an
-- unrecorded one the bench could not check (`<spki>.g<N>.age`); the blocked one stays for audit.
CREATE TABLE public.bench_escrow_intents (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id           text NOT NULL REFERENCES public.products (id),
    device_id            public.particle_device_id NOT NULL,
    public_key_sha256    public.sha256_hex NOT NULL,
    store_uri            text NOT NULL CHECK (store_uri <> ''),
    object_key           text NOT NULL CHECK (object_key <> ''),
    ciphertext_sha256    public.sha256_hex NOT NULL,
    size_bytes           bigint NOT NULL CHECK (size_bytes > 0),
    recipients           text[] NOT NULL CHECK (cardinality(recipients) > 0),
    reason               text NOT NULL CHECK (reason <> ''),
    station              text NOT NULL CHECK (station <> ''),
    committed_object_id  bigint REFERENCES public.escrow_objects (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- One pending intent per object key; a new seal after a crash replaces it (age output is random).
CREATE UNIQUE INDEX bench_escrow_intents_pending ON public.bench_escrow_intents (store_uri, object_key)
    WHERE committed_object_id IS NULL;
CREATE INDEX bench_escrow_intents_device ON public.bench_escrow_intents (device_id, created_at);

-- `keys doctor` (item 6): before the new key is written to the device, the intent (device, new
-- key and its escrow object, the key it replaces) is recorded; finishing (registered, or found
-- never loaded) closes it. An open intent is an interrupted doctor: the device may hold a key
-- nobody registered. The next doctor on the device, and the audit, find it.
CREATE TABLE public.key_doctor_intents (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id            text NOT NULL REFERENCES public.products (id),
    device_id             public.particle_device_id NOT NULL,
    new_fingerprint       public.sha256_hex NOT NULL,
    previous_fingerprint  public.sha256_hex,
    escrow_object_id      bigint NOT NULL,
    station               text NOT NULL CHECK (station <> ''),
    created_at            timestamptz NOT NULL DEFAULT now(),
    outcome               text CHECK (outcome IN ('registered', 'not_loaded')),
    registration_id       bigint REFERENCES public.key_registrations (id),
    finished_at           timestamptz,
    CONSTRAINT key_doctor_intents_escrowed FOREIGN KEY (escrow_object_id, product_id, device_id, new_fingerprint)
        REFERENCES public.escrow_objects (id, product_id, device_id, public_key_sha256),
    CONSTRAINT key_doctor_intents_finished CHECK ((outcome IS NULL) = (finished_at IS NULL)),
    CONSTRAINT key_doctor_intents_registered CHECK ((outcome IS NOT DISTINCT FROM 'registered') = (registration_id IS NOT NULL))
);
CREATE UNIQUE INDEX key_doctor_intents_open ON public.key_doctor_intents (device_id) WHERE outcome IS NULL;

-- Rows of the bench's tables: the bound bench, the database's clock; a finished intent is final.
CREATE FUNCTION public.keyline_bench_row() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bound text;
BEGIN
    IF TG_OP = 'UPDATE' AND (pg_catalog.to_jsonb(OLD)->>'committed_object_id' IS NOT NULL
                             OR pg_catalog.to_jsonb(OLD)->>'outcome' IS NOT NULL) THEN
        RAISE EXCEPTION '% % is final', TG_TABLE_NAME, OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.station IS DISTINCT FROM OLD.station THEN
        RAISE EXCEPTION '% % keeps its station', TG_TABLE_NAME, OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF NOT public.keyline_session_trusted(TG_RELID) THEN
        SELECT s.station INTO bound FROM public.station_logins s WHERE s.login = session_user;
        IF bound IS NULL OR bound IS DISTINCT FROM NEW.station THEN
            RAISE EXCEPTION 'login % is bound to %; it cannot write % as station %', session_user,
                coalesce(bound, 'no station or bench'), TG_TABLE_NAME, NEW.station
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.created_at := pg_catalog.now();
    ELSE
        NEW.created_at := OLD.created_at;
    END IF;
    IF TG_TABLE_NAME = 'bench_escrow_intents' THEN
        NEW.updated_at := pg_catalog.now();
    ELSIF NEW.outcome IS NOT NULL THEN
        NEW.finished_at := pg_catalog.now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER bench_escrow_intents_row BEFORE INSERT OR UPDATE ON public.bench_escrow_intents
    FOR EACH ROW EXECUTE FUNCTION public.keyline_bench_row();
CREATE TRIGGER bench_escrow_intents_no_delete BEFORE DELETE ON public.bench_escrow_intents
    FOR EACH ROW EXECUTE FUNCTION public.keyline_reject_change();
CREATE TRIGGER key_doctor_intents_row BEFORE INSERT OR UPDATE ON public.key_doctor_intents
    FOR EACH ROW EXECUTE FUNCTION public.keyline_bench_row();
CREATE TRIGGER key_doctor_intents_no_delete BEFORE DELETE ON public.key_doctor_intents
    FOR EACH ROW EXECUTE FUNCTION public.keyline_reject_change();

GRANT SELECT ON public.bench_escrow_intents, public.key_doctor_intents
    TO keyline_station, keyline_rma, keyline_auditor;
GRANT INSERT ON public.bench_escrow_intents, public.key_doctor_intents TO keyline_rma;
GRANT UPDATE (product_id, public_key_sha256, ciphertext_sha256, size_bytes, recipients, reason, station,
              committed_object_id, updated_at) ON public.bench_escrow_intents TO keyline_rma;
GRANT UPDATE (outcome, registration_id, finished_at) ON public.key_doctor_intents TO keyline_rma;

-- 4. What backs an escrow object and a registration (item 8), for every login but the
-- administrator's: an escrow object is the commit of a pending intent naming exactly it (a job
-- device's, in a job of the login's station; else a bench intent of the login's bench), and a
-- registration names an object committed for that very key — by an escrowed job device of the job
-- it names, or (outside jobs, RMA benches only) by a bench or line intent.
CREATE FUNCTION public.keyline_escrow_object_backed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF public.keyline_session_trusted(TG_RELID) THEN
        RETURN NEW;
    END IF;
    IF NEW.job_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM public.escrow_intents i
                       WHERE i.job_id = NEW.job_id AND i.device_id = NEW.device_id AND i.committed_object_id IS NULL
                         AND (i.product_id, i.public_key_sha256, i.store_uri, i.object_key, i.ciphertext_sha256, i.size_bytes)
                           = (NEW.product_id, NEW.public_key_sha256, NEW.store_uri, NEW.object_key, NEW.ciphertext_sha256,
                              NEW.size_bytes)) THEN
            RAISE EXCEPTION 'escrow object % for device % in job % has no pending escrow intent naming it', NEW.object_key,
                NEW.device_id, NEW.job_id
                USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'escrow_objects_backed_by_intent';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM public.bench_escrow_intents b
                      WHERE b.committed_object_id IS NULL AND b.station = NEW.station
                        AND (b.product_id, b.device_id, b.public_key_sha256, b.store_uri, b.object_key,
                             b.ciphertext_sha256, b.size_bytes)
                          = (NEW.product_id, NEW.device_id, NEW.public_key_sha256, NEW.store_uri, NEW.object_key,
                             NEW.ciphertext_sha256, NEW.size_bytes)) THEN
        RAISE EXCEPTION 'escrow object % outside any job has no pending bench escrow intent of % naming it',
            NEW.object_key, NEW.station
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'escrow_objects_backed_by_intent';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER escrow_objects_backed BEFORE INSERT ON public.escrow_objects
    FOR EACH ROW EXECUTE FUNCTION public.keyline_escrow_object_backed();

CREATE FUNCTION public.keyline_registration_backed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    login_role text;
BEGIN
    IF public.keyline_session_trusted(TG_RELID) THEN
        RETURN NEW;
    END IF;
    IF NEW.job_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM public.job_devices d
                       JOIN public.jobs j ON j.id = d.job_id
                       JOIN public.escrow_intents i ON i.job_id = d.job_id AND i.device_id = d.device_id
                       WHERE d.job_id = NEW.job_id AND d.device_id = NEW.device_id AND d.state = 'escrowed'
                         AND d.key_fingerprint = NEW.fingerprint AND j.product_id = NEW.product_id
                         AND i.committed_object_id = NEW.escrow_object_id) THEN
            RAISE EXCEPTION 'registration of key % for device % in job % is not backed by that job device''s escrow of it',
                NEW.fingerprint, NEW.device_id, NEW.job_id
                USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'key_registrations_backed';
        END IF;
        RETURN NEW;
    END IF;
    SELECT s.role INTO login_role FROM public.station_logins s WHERE s.login = session_user;
    IF login_role IS DISTINCT FROM 'rma' THEN
        RAISE EXCEPTION 'login % registers keys inside its jobs only', session_user
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'key_registrations_backed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.bench_escrow_intents b WHERE b.committed_object_id = NEW.escrow_object_id)
       AND NOT EXISTS (SELECT 1 FROM public.escrow_intents i WHERE i.committed_object_id = NEW.escrow_object_id) THEN
        RAISE EXCEPTION 'registration of key % for device % names escrow object %, which no escrow intent committed',
            NEW.fingerprint, NEW.device_id, NEW.escrow_object_id
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'key_registrations_backed';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER key_registrations_backed BEFORE INSERT ON public.key_registrations
    FOR EACH ROW EXECUTE FUNCTION public.keyline_registration_backed();

-- Looked up by what each check and each bench reads.
CREATE INDEX escrow_intents_committed_object ON public.escrow_intents (committed_object_id);
CREATE INDEX bench_escrow_intents_committed_object ON public.bench_escrow_intents (committed_object_id);
