-- The cloud outbox (issue 20): a device connects only if Particle's cloud holds its public key, so
-- every key the cloud must learn is queued here in the transaction that registers it, and an
-- outbox drainer (inside `keyline provision`, `keyline cloud push`, the bench's key commands) sends
-- it with particle-cli's call, `POST /v1/provisioning/{deviceId}`. One row per device and key.
-- The public key itself is the registration's SPKI DER; the token is never stored anywhere.
CREATE TABLE cloud_uploads (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_id  bigint NOT NULL UNIQUE REFERENCES key_registrations (id),
    product_id       text NOT NULL,
    device_id        particle_device_id NOT NULL,
    fingerprint      sha256_hex NOT NULL,
    algorithm        text NOT NULL CHECK (algorithm IN ('rsa', 'ec')),
    job_id           bigint REFERENCES jobs (id),
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'parked')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- The last attempt: HTTP status (NULL when no reply came), the cloud's X-Request-Id, and for a
    -- parked upload the cloud's reason (or keyline's, for a reply it could not read).
    last_status      integer,
    last_request_id  text,
    reason           text,
    -- A pending upload is due at this time; a drainer that takes it moves it ahead by its lease,
    -- so a drainer that dies mid-request leaves it due again later (re-sending is harmless).
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    queued_by        text NOT NULL DEFAULT session_user,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cloud_uploads_one_per_key UNIQUE (device_id, fingerprint),
    CHECK ((state = 'sent') = (sent_at IS NOT NULL)),
    CHECK (state <> 'parked' OR reason IS NOT NULL)
);

-- (next_attempt_at, id): the claim's ORDER BY, so a claim reads LIMIT rows of the index, not a sorted backlog.
CREATE INDEX cloud_uploads_due ON cloud_uploads (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX cloud_uploads_job ON cloud_uploads (job_id) WHERE job_id IS NOT NULL;

-- A key recorded as sent is never sent again: no role, the owner included, moves an upload out
-- of `sent` or changes which key it names; and uploads are not deleted (they are the evidence).
CREATE FUNCTION keyline_cloud_upload_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'cloud uploads are not deleted (upload %)', OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.state = 'sent' AND (NEW.state IS DISTINCT FROM 'sent' OR NEW.sent_at IS DISTINCT FROM OLD.sent_at) THEN
        RAISE EXCEPTION 'upload % of device % was accepted by the cloud; it is never sent again', OLD.id, OLD.device_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.registration_id, NEW.product_id, NEW.device_id, NEW.fingerprint, NEW.algorithm, NEW.job_id,
        NEW.queued_by, NEW.queued_at)
       IS DISTINCT FROM
       (OLD.registration_id, OLD.product_id, OLD.device_id, OLD.fingerprint, OLD.algorithm, OLD.job_id,
        OLD.queued_by, OLD.queued_at) THEN
        RAISE EXCEPTION 'upload % names its key for good', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER cloud_uploads_guard BEFORE UPDATE OR DELETE ON cloud_uploads
    FOR EACH ROW EXECUTE FUNCTION keyline_cloud_upload_guard();

-- The upload names exactly its registration's key.
CREATE FUNCTION keyline_cloud_upload_matches() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM public.key_registrations r
     WHERE r.id = NEW.registration_id AND r.product_id = NEW.product_id AND r.device_id = NEW.device_id
       AND r.fingerprint = NEW.fingerprint AND r.algorithm = NEW.algorithm;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upload of device % does not match registration %', NEW.device_id, NEW.registration_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    NEW.queued_by := session_user;
    NEW.queued_at := now();
    NEW.state := 'pending';
    NEW.attempts := 0;
    NEW.sent_at := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER cloud_uploads_matches BEFORE INSERT ON cloud_uploads
    FOR EACH ROW EXECUTE FUNCTION keyline_cloud_upload_matches();

-- Who may do what. Stations queue (registering a job's keys) and drain (`provision`, `cloud
-- push` on the station); the RMA bench queues and drains the keys it registers (`keys send`,
-- `keys doctor`, `keys load`); auditors read. Draining changes only the delivery columns.
GRANT SELECT ON cloud_uploads TO keyline_station, keyline_rma, keyline_auditor;
GRANT INSERT (registration_id, product_id, device_id, fingerprint, algorithm, job_id)
    ON cloud_uploads TO keyline_station, keyline_rma;
GRANT UPDATE (state, attempts, last_status, last_request_id, reason, next_attempt_at, sent_at, updated_at)
    ON cloud_uploads TO keyline_station, keyline_rma;
