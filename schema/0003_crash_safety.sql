-- Crash safety (issue 9; design.md, "What makes resume possible"): job device states move only
-- forward and a failure keeps the last good state; `key_ready` records the fingerprint of the key
-- the device holds; escrow is write-ahead (the intent is recorded before the object is written).
-- The triggers below enforce the workflow order for every role, the owner included.

ALTER TABLE job_devices
    -- While `failed`: the state a resume continues from (set by the trigger, never by clients).
    ADD COLUMN last_good_state text,
    -- SHA-256 (hex) of the SPKI DER of the key read back from the device at `key_ready`; fixed from then on.
    ADD COLUMN key_fingerprint sha256_hex,
    ADD COLUMN platform text;

-- Rows from before this migration: a failed device without a known last good state starts over
-- (key writes are guarded, so a key already on the device is re-read, not replaced); a fingerprint
-- is taken from the escrow object recorded for the device in that job, where there is one.
UPDATE job_devices SET last_good_state = 'detected' WHERE state = 'failed';
UPDATE job_devices d SET key_fingerprint = (
        SELECT e.public_key_sha256 FROM escrow_objects e
        WHERE e.job_id = d.job_id AND e.device_id = d.device_id ORDER BY e.id DESC LIMIT 1)
    WHERE state IN ('escrowed', 'registered', 'done');
UPDATE job_devices
    SET state = 'failed', last_good_state = 'server_key',
        last_error = 'registry migration 0003: the key fingerprint is unknown; resume to read the key again'
    WHERE state IN ('key_ready', 'escrowed', 'registered', 'done') AND key_fingerprint IS NULL;

ALTER TABLE job_devices
    ADD CONSTRAINT job_devices_last_good_state
        CHECK ((state = 'failed') = (last_good_state IS NOT NULL)
               AND (last_good_state IS NULL OR last_good_state IN
                    ('detected', 'dfu', 'flashed', 'server_key', 'key_ready', 'escrowed', 'registered'))),
    -- From key_ready on (also while failed there), the registry knows which key the device holds.
    ADD CONSTRAINT job_devices_key_ready_has_fingerprint
        CHECK (key_fingerprint IS NOT NULL OR NOT (
               state IN ('key_ready', 'escrowed', 'registered', 'done')
               OR last_good_state IN ('key_ready', 'escrowed', 'registered')));

-- Position in the workflow; NULL for `failed` (outside the order).
CREATE FUNCTION keyline_workflow_position(state text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_position(ARRAY['detected', 'dfu', 'flashed', 'server_key', 'key_ready', 'escrowed',
                                'registered', 'done'], state)
$$;

-- Allowed: enter as `detected`; one step forward; any state but `done` → `failed` (remembering the
-- state it failed from); `failed` → its last good state (resume). A lost race or a replayed move
-- therefore cannot silently overwrite a newer state, and a recorded key fingerprint never changes.
CREATE FUNCTION keyline_job_device_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state IS DISTINCT FROM 'detected' THEN
            RAISE EXCEPTION 'device % enters job % as detected, not %', NEW.device_id, NEW.job_id, NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_forward_only';
        END IF;
        NEW.last_good_state := NULL;
        RETURN NEW;
    END IF;
    IF (NEW.job_id, NEW.device_id, NEW.created_at) IS DISTINCT FROM (OLD.job_id, OLD.device_id, OLD.created_at) THEN
        RAISE EXCEPTION 'job device % in job % cannot change its identity', OLD.device_id, OLD.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_forward_only';
    END IF;
    IF OLD.key_fingerprint IS NOT NULL AND NEW.key_fingerprint IS DISTINCT FROM OLD.key_fingerprint THEN
        RAISE EXCEPTION 'device % in job % holds key %; refusing to record key %', OLD.device_id, OLD.job_id,
            OLD.key_fingerprint, NEW.key_fingerprint
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_key_fingerprint_fixed';
    END IF;
    IF NEW.state = OLD.state THEN
        NEW.last_good_state := OLD.last_good_state;   -- not a move: other columns only
        RETURN NEW;
    END IF;
    IF NEW.state = 'failed' AND OLD.state <> 'done' THEN
        NEW.last_good_state := OLD.state;
        RETURN NEW;
    END IF;
    IF OLD.state = 'failed' AND NEW.state = OLD.last_good_state THEN
        NEW.last_good_state := NULL;
        RETURN NEW;
    END IF;
    IF keyline_workflow_position(NEW.state) = keyline_workflow_position(OLD.state) + 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'device % in job % cannot move from % to %', OLD.device_id, OLD.job_id, OLD.state, NEW.state
        USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_forward_only',
              HINT = 'States move one step forward, to failed, or from failed back to the last good state.';
END
$$;

-- Fires before job_devices_state_evidence (triggers fire in name order).
CREATE TRIGGER job_devices_forward_only BEFORE INSERT OR UPDATE ON job_devices
    FOR EACH ROW EXECUTE FUNCTION keyline_job_device_forward_only();

-- Write-ahead escrow: what a station is about to write to the store, recorded before the write,
-- so a crash between the write and the commit is redone (the store adopts an object whose bytes
-- match `ciphertext_sha256`). One intent per job device; replaced only while uncommitted.
CREATE TABLE escrow_intents (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id               bigint NOT NULL,
    device_id            particle_device_id NOT NULL,
    product_id           text NOT NULL REFERENCES products (id),
    public_key_sha256    sha256_hex NOT NULL,
    store_uri            text NOT NULL CHECK (store_uri <> ''),
    object_key           text NOT NULL CHECK (object_key <> ''),
    ciphertext_sha256    sha256_hex NOT NULL,
    size_bytes           bigint NOT NULL CHECK (size_bytes > 0),
    recipients           text[] NOT NULL CHECK (cardinality(recipients) > 0),
    station              text NOT NULL CHECK (station <> ''),
    -- Set by the commit, in the transaction that moves the device to escrowed.
    committed_object_id  bigint REFERENCES escrow_objects (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT escrow_intents_job_device UNIQUE (job_id, device_id),
    FOREIGN KEY (job_id, device_id) REFERENCES job_devices (job_id, device_id)
);

-- An intent is recorded for the key the device holds at key_ready, for the job's product, and is
-- final once committed (to an object with exactly its bytes and key).
CREATE FUNCTION keyline_escrow_intent_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device record;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.committed_object_id IS NOT NULL THEN
        RAISE EXCEPTION 'the escrow intent of device % in job % is committed', OLD.device_id, OLD.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'escrow_intents_committed_final';
    END IF;
    IF NEW.committed_object_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM escrow_objects e WHERE e.id = NEW.committed_object_id
                AND (e.product_id, e.device_id, e.public_key_sha256, e.store_uri, e.object_key,
                     e.ciphertext_sha256, e.size_bytes)
                  = (NEW.product_id, NEW.device_id, NEW.public_key_sha256, NEW.store_uri, NEW.object_key,
                     NEW.ciphertext_sha256, NEW.size_bytes)) THEN
            RAISE EXCEPTION 'escrow object % is not the one intended for device % in job %',
                NEW.committed_object_id, NEW.device_id, NEW.job_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'escrow_intents_committed_object';
        END IF;
        RETURN NEW;
    END IF;
    SELECT d.state, d.key_fingerprint, j.product_id INTO device
        FROM job_devices d JOIN jobs j ON j.id = d.job_id
        WHERE d.job_id = NEW.job_id AND d.device_id = NEW.device_id;
    IF NOT FOUND OR device.state <> 'key_ready' THEN
        RAISE EXCEPTION 'device % in job % is not key_ready', NEW.device_id, NEW.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'escrow_intents_device_key_ready';
    END IF;
    IF device.key_fingerprint <> NEW.public_key_sha256 THEN
        RAISE EXCEPTION 'device % in job % holds key %, not %', NEW.device_id, NEW.job_id,
            device.key_fingerprint, NEW.public_key_sha256
            USING ERRCODE = 'check_violation', CONSTRAINT = 'escrow_intents_device_key';
    END IF;
    IF device.product_id <> NEW.product_id THEN
        RAISE EXCEPTION 'job % is for product %, not %', NEW.job_id, device.product_id, NEW.product_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'escrow_intents_job_product';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER escrow_intents_check BEFORE INSERT OR UPDATE ON escrow_intents
    FOR EACH ROW EXECUTE FUNCTION keyline_escrow_intent_check();
CREATE TRIGGER escrow_intents_no_delete BEFORE DELETE ON escrow_intents
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();

-- Evidence for escrowed also accepts an identical object reused through a committed intent, and
-- registered/done need the registration of the very key recorded at key_ready.
CREATE OR REPLACE FUNCTION keyline_job_device_state_evidence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'escrowed' AND NOT EXISTS (
            SELECT 1 FROM escrow_objects WHERE job_id = NEW.job_id AND device_id = NEW.device_id)
        AND NOT EXISTS (
            SELECT 1 FROM escrow_intents WHERE job_id = NEW.job_id AND device_id = NEW.device_id
                AND committed_object_id IS NOT NULL) THEN
        RAISE EXCEPTION 'device % in job % cannot be escrowed: no escrow object is recorded for it',
            NEW.device_id, NEW.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_escrowed_has_object';
    END IF;
    IF NEW.state IN ('registered', 'done') AND NOT EXISTS (
        SELECT 1 FROM key_registrations
        WHERE job_id = NEW.job_id AND device_id = NEW.device_id AND status = 'active'
            AND (NEW.key_fingerprint IS NULL OR fingerprint = NEW.key_fingerprint)) THEN
        RAISE EXCEPTION 'device % in job % cannot be %: no active key registration from this job',
            NEW.device_id, NEW.job_id, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_registered_has_key';
    END IF;
    RETURN NEW;
END
$$;

-- unfinishedJobs(station:) and deviceRecords(deviceID:).
CREATE INDEX jobs_running_station ON jobs (station, started_at) WHERE status = 'running';
DROP INDEX job_devices_device;
CREATE INDEX job_devices_device ON job_devices (device_id, created_at);

-- The station runs the whole workflow: the new columns, and write-ahead escrow.
GRANT SELECT ON escrow_intents TO keyline_station, keyline_rma, keyline_auditor;
GRANT INSERT ON escrow_intents TO keyline_station;
GRANT UPDATE (product_id, public_key_sha256, store_uri, object_key, ciphertext_sha256, size_bytes, recipients,
              station, committed_object_id, updated_at) ON escrow_intents TO keyline_station;
GRANT UPDATE (last_good_state, key_fingerprint, platform) ON job_devices TO keyline_station;
