// Generated from schema/*.sql by `make schema-embed`; do not edit. RegistryTests checks it.
enum EmbeddedMigrations {
    static let all: [Migration] = [
        Migration(version: 1, name: "registry_tables", sql: #"""
-- keyline registry: products, jobs, per-device workflow state, escrow objects, key registrations,
-- restorations and the audit trail (design.md, "Registry" and "The provisioning workflow").
-- Applied by `keyline db migrate` inside one transaction.

CREATE TABLE products (
    -- The Particle product ID or slug; also the first path segment of escrow object keys.
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name        text NOT NULL CHECK (name <> ''),
    platform    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id   text NOT NULL REFERENCES products (id),
    station      text NOT NULL CHECK (station <> ''),
    pipeline     text NOT NULL CHECK (pipeline <> ''),
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CHECK ((status = 'running') = (finished_at IS NULL))
);

-- Particle device IDs are 24 lowercase hex digits (the USB serial number in DFU mode).
CREATE DOMAIN particle_device_id AS text CHECK (VALUE ~ '^[0-9a-f]{24}$');
-- SHA-256 values are stored as 64 lowercase hex digits, as DeviceKeys prints fingerprints.
CREATE DOMAIN sha256_hex AS text CHECK (VALUE ~ '^[0-9a-f]{64}$');

CREATE TABLE job_devices (
    job_id      bigint NOT NULL REFERENCES jobs (id),
    device_id   particle_device_id NOT NULL,
    -- The states of Pipeline's DeviceWorkflowState, in workflow order.
    state       text NOT NULL CHECK (state IN ('detected', 'dfu', 'flashed', 'server_key',
                    'key_ready', 'escrowed', 'registered', 'done', 'failed')),
    attempts    integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    last_error  text,
    port_path   text,
    station     text NOT NULL CHECK (station <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, device_id),
    -- A failed device always says why.
    CONSTRAINT job_devices_failed_has_error CHECK (state <> 'failed' OR last_error IS NOT NULL)
);
CREATE INDEX job_devices_device ON job_devices (device_id);

CREATE TABLE escrow_objects (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id         text NOT NULL REFERENCES products (id),
    device_id          particle_device_id NOT NULL,
    -- SHA-256 of the escrowed key's SubjectPublicKeyInfo DER: ties the backup to one public key.
    public_key_sha256  sha256_hex NOT NULL,
    store_uri          text NOT NULL CHECK (store_uri <> ''),
    object_key         text NOT NULL CHECK (object_key <> ''),
    -- Lets an audit detect loss or tampering without decrypting (design.md, "Escrow format").
    ciphertext_sha256  sha256_hex NOT NULL,
    size_bytes         bigint NOT NULL CHECK (size_bytes > 0),
    recipients         text[] NOT NULL CHECK (cardinality(recipients) > 0),
    job_id             bigint REFERENCES jobs (id),
    station            text NOT NULL CHECK (station <> ''),
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Objects are written once, never overwritten.
    CONSTRAINT escrow_objects_store_object_key UNIQUE (store_uri, object_key),
    -- Target of key_registrations' composite foreign key.
    CONSTRAINT escrow_objects_identity UNIQUE (id, product_id, device_id, public_key_sha256)
);
CREATE INDEX escrow_objects_device ON escrow_objects (product_id, device_id);

CREATE TABLE key_registrations (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id         text NOT NULL REFERENCES products (id),
    device_id          particle_device_id NOT NULL,
    algorithm          text NOT NULL CHECK (algorithm IN ('rsa', 'ec')),
    spki_der           bytea NOT NULL CHECK (octet_length(spki_der) > 0),
    fingerprint        sha256_hex NOT NULL,
    escrow_object_id   bigint NOT NULL,
    job_id             bigint REFERENCES jobs (id),
    station            text NOT NULL CHECK (station <> ''),
    registered_at      timestamptz NOT NULL DEFAULT now(),
    status             text NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'superseded', 'revoked')),
    status_changed_at  timestamptz,
    status_reason      text,
    -- The fingerprint is what the key's SPKI DER hashes to, never merely what a client claims.
    CONSTRAINT key_registrations_fingerprint_matches_spki
        CHECK (fingerprint = encode(sha256(spki_der), 'hex')),
    -- A public key belongs to one device, ever.
    CONSTRAINT key_registrations_fingerprint_unique UNIQUE (fingerprint),
    -- Every registered key has an escrow object for the same product, device and public key.
    CONSTRAINT key_registrations_escrow_object
        FOREIGN KEY (escrow_object_id, product_id, device_id, fingerprint)
        REFERENCES escrow_objects (id, product_id, device_id, public_key_sha256),
    CHECK ((status = 'active') = (status_changed_at IS NULL))
);
-- At most one active key per product and device.
CREATE UNIQUE INDEX key_registrations_one_active_per_device
    ON key_registrations (product_id, device_id) WHERE status = 'active';
CREATE INDEX key_registrations_product ON key_registrations (product_id, registered_at);

CREATE TABLE restorations (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_id  bigint NOT NULL REFERENCES key_registrations (id),
    product_id       text NOT NULL REFERENCES products (id),
    device_id        particle_device_id NOT NULL,
    escrow_object_id bigint NOT NULL REFERENCES escrow_objects (id),
    station          text NOT NULL CHECK (station <> ''),
    operator         text NOT NULL DEFAULT session_user,
    outcome          text NOT NULL CHECK (outcome IN ('restored', 'failed')),
    detail           text,
    restored_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX restorations_device ON restorations (product_id, device_id);

CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    -- Who: the database login that wrote the event, and the station it ran on.
    actor        text NOT NULL DEFAULT session_user,
    station      text,
    kind         text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]*$'),
    product_id   text REFERENCES products (id),
    device_id    particle_device_id,
    job_id       bigint REFERENCES jobs (id),
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_device ON events (device_id, occurred_at);
CREATE INDEX events_job ON events (job_id);

-- Append-only tables: rows are never deleted, and a registration changes only its status, once,
-- from active to superseded or revoked. Triggers apply to every role, the owner included.
CREATE FUNCTION keyline_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'Append a new row instead (a new event, a new registration).';
END
$$;

CREATE FUNCTION keyline_key_registration_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
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
    NEW.status_changed_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER key_registrations_status_only BEFORE UPDATE ON key_registrations
    FOR EACH ROW EXECUTE FUNCTION keyline_key_registration_status_change();
CREATE TRIGGER key_registrations_no_delete BEFORE DELETE ON key_registrations
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER key_registrations_no_truncate BEFORE TRUNCATE ON key_registrations
    FOR EACH STATEMENT EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER restorations_append_only BEFORE UPDATE OR DELETE ON restorations
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER restorations_no_truncate BEFORE TRUNCATE ON restorations
    FOR EACH STATEMENT EXECUTE FUNCTION keyline_reject_change();

-- The workflow's safety argument in the database (design.md, "The provisioning workflow"): a job
-- device is `escrowed` only with an escrow object recorded for it in that job, and `registered` or
-- `done` only with an active registration from that job.
CREATE FUNCTION keyline_job_device_state_evidence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'escrowed' AND NOT EXISTS (
        SELECT 1 FROM escrow_objects WHERE job_id = NEW.job_id AND device_id = NEW.device_id) THEN
        RAISE EXCEPTION 'device % in job % cannot be escrowed: no escrow object is recorded for it',
            NEW.device_id, NEW.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_escrowed_has_object';
    END IF;
    IF NEW.state IN ('registered', 'done') AND NOT EXISTS (
        SELECT 1 FROM key_registrations
        WHERE job_id = NEW.job_id AND device_id = NEW.device_id AND status = 'active') THEN
        RAISE EXCEPTION 'device % in job % cannot be %: no active key registration from this job',
            NEW.device_id, NEW.job_id, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_devices_registered_has_key';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_devices_state_evidence BEFORE INSERT OR UPDATE OF state ON job_devices
    FOR EACH ROW EXECUTE FUNCTION keyline_job_device_state_evidence();

"""#),
        Migration(version: 2, name: "roles", sql: #"""
-- Roles (design.md, "Registry"): stations provision, the RMA bench restores, auditors read.
-- Roles are cluster-wide, so creating them tolerates another database (or a concurrent migration)
-- having created them first. Logins are granted membership: `GRANT keyline_station TO station_07`.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['keyline_station', 'keyline_rma', 'keyline_auditor'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO keyline_station, keyline_rma, keyline_auditor;

-- Everyone who may use the registry may read it.
GRANT SELECT ON products, jobs, job_devices, escrow_objects, key_registrations, restorations,
    events, schema_migrations TO keyline_station, keyline_rma, keyline_auditor;

-- Stations: jobs, per-device workflow state, escrow objects, registrations, events.
GRANT INSERT ON jobs, job_devices, escrow_objects, key_registrations, events TO keyline_station;
GRANT UPDATE (status, finished_at) ON jobs TO keyline_station;
GRANT UPDATE (state, attempts, last_error, port_path, station, updated_at) ON job_devices
    TO keyline_station;

-- RMA bench: restorations, events, and superseding a key (status columns only; the policy below
-- limits it to active -> superseded).
GRANT INSERT ON restorations, events TO keyline_rma;
GRANT UPDATE (status, status_reason) ON key_registrations TO keyline_rma;

-- Row-level security on registrations narrows what those grants allow. The table owner (who runs
-- migrations and administers revocations) is not subject to it.
ALTER TABLE key_registrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY key_registrations_read ON key_registrations FOR SELECT
    TO keyline_station, keyline_rma, keyline_auditor USING (true);
CREATE POLICY key_registrations_station_insert ON key_registrations FOR INSERT
    TO keyline_station WITH CHECK (status = 'active');
CREATE POLICY key_registrations_rma_supersede ON key_registrations FOR UPDATE
    TO keyline_rma USING (status = 'active') WITH CHECK (status = 'superseded');

"""#),
        Migration(version: 3, name: "crash_safety", sql: #"""
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

"""#),
        Migration(version: 4, name: "audit_and_step_timings", sql: #"""
-- Audits and job reports (issue 11): what `keyline audit` streams through, and the timing of every
-- workflow step a station runs, for `keyline report JOB`.

-- One row per step a device ran in a job, written by the station when the step ends (done or
-- failed): when it started, how long it took, how many attempts it needed, and why it failed.
-- A resumed device adds rows for the steps it runs again; nothing is updated or deleted.
CREATE TABLE job_device_steps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL,
    device_id   particle_device_id NOT NULL,
    step        text NOT NULL CHECK (step ~ '^[a-z][a-z_]*$'),
    started_at  timestamptz NOT NULL,
    seconds     double precision NOT NULL CHECK (seconds >= 0),
    attempts    integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    outcome     text NOT NULL CHECK (outcome IN ('done', 'failed')),
    reason      text,
    port_path   text,
    station     text NOT NULL DEFAULT current_user CHECK (station <> ''),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (job_id, device_id) REFERENCES job_devices (job_id, device_id),
    CONSTRAINT job_device_steps_failed_has_reason CHECK (outcome <> 'failed' OR reason IS NOT NULL)
);
CREATE INDEX job_device_steps_job ON job_device_steps (job_id, device_id, started_at);

CREATE TRIGGER job_device_steps_append_only BEFORE UPDATE OR DELETE ON job_device_steps
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();

GRANT SELECT ON job_device_steps TO keyline_station, keyline_rma, keyline_auditor;
GRANT INSERT ON job_device_steps TO keyline_station;

-- `keyline audit --job J`, and the listing of all products in registration order.
CREATE INDEX key_registrations_job ON key_registrations (job_id);
CREATE INDEX key_registrations_registered ON key_registrations (registered_at, id);
-- One public key on two devices: grouped in key order straight from the index.
CREATE INDEX escrow_objects_public_key ON escrow_objects (public_key_sha256, device_id);
-- --check-store: a store's objects in object-key order, merged with the store's listing.
CREATE INDEX escrow_objects_store_key ON escrow_objects (store_uri, object_key COLLATE "C");
-- Devices a stopped job left holding a key that was never registered (few rows, a small index).
CREATE INDEX job_devices_unregistered_keys ON job_devices (job_id)
    WHERE state IN ('key_ready', 'escrowed')
       OR (state = 'failed' AND last_good_state IN ('key_ready', 'escrowed'));

"""#),
        Migration(version: 5, name: "restore_and_bench_keys", sql: #"""
-- RMA restore and bench re-keys (issue 10; design.md, "Who uses it": the RMA bench).
-- A restoration records why and for whom it ran (reason, ticket), how long it took, what the
-- device held before (the original key, a blank or corrupt slot, or another valid key) and, for
-- another valid key, the escrow object that key was saved to before it was overwritten: no key
-- is ever lost, not even a wrong one. Such an object has no registration: it is a superseded key.

ALTER TABLE restorations
    ADD COLUMN reason text CHECK (reason <> ''),
    ADD COLUMN ticket text CHECK (ticket <> ''),
    ADD COLUMN duration_ms bigint CHECK (duration_ms >= 0),
    -- What the device's key slot held before the restore wrote anything.
    ADD COLUMN found_key text CHECK (found_key IN ('original', 'blank', 'corrupt', 'other')),
    ADD COLUMN superseded_escrow_object_id bigint REFERENCES escrow_objects (id),
    -- Another valid key is always escrowed before the original is written back.
    ADD CONSTRAINT restorations_other_key_escrowed
        CHECK (found_key IS DISTINCT FROM 'other' OR outcome <> 'restored' OR superseded_escrow_object_id IS NOT NULL);

-- The RMA bench escrows the key it finds on a returned device (a superseded key): an escrow
-- object outside any job. It registers nothing (`keys send --supersede` and `keys doctor`, which
-- will, are not built yet: their grants come with them, least privilege until then).
GRANT INSERT ON escrow_objects TO keyline_rma;

-- An RMA login may not name a job on an escrow object: the line's evidence triggers trust a job's
-- escrow objects, and a row at a job's object key would block the station's own commit. Nobody
-- sets an object's time but the database.
CREATE FUNCTION keyline_escrow_object_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.job_id IS NOT NULL AND pg_has_role(current_user, 'keyline_rma', 'MEMBER')
       AND NOT pg_has_role(current_user, 'keyline_station', 'MEMBER') THEN
        RAISE EXCEPTION 'an RMA bench records escrow objects outside jobs only (job % given)', NEW.job_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.created_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER escrow_objects_insert BEFORE INSERT ON escrow_objects
    FOR EACH ROW EXECUTE FUNCTION keyline_escrow_object_insert();

"""#),
        Migration(version: 6, name: "bench_registrations", sql: #"""
-- `keyline keys send` and `keyline keys doctor` (issue 10): an engineer fixing one device at a
-- bench leaves the same records as the line — an escrow object (with a `key.escrowed` event), a
-- registration and its `key.registered` event, and `key.superseded` for the key it replaces.
-- The RMA role may now register keys: active ones, outside jobs only (a job's registrations are
-- the stations' evidence). Superseding stays limited to active -> superseded (0002).
GRANT INSERT ON key_registrations TO keyline_rma;
CREATE POLICY key_registrations_rma_insert ON key_registrations FOR INSERT
    TO keyline_rma WITH CHECK (status = 'active' AND job_id IS NULL);

"""#),
        Migration(version: 7, name: "audit_covering_indexes", sql: #"""
-- `keyline audit` at a million registrations (issue 11): the listing joins each registration to
-- its job device only for the platform; with the platform in the index, that join is an
-- index-only probe instead of a heap fetch per row.
CREATE INDEX job_devices_platform ON job_devices (job_id, device_id) INCLUDE (platform);

-- --check-store no longer merges a sorted listing of the store with the records (it looks paths
-- up by the store's unique key instead, in constant memory), so the C-collation order index of
-- 0004 only costs every escrow write.
DROP INDEX escrow_objects_store_key;

"""#),
        Migration(version: 8, name: "login_bindings", sql: #"""
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

"""#),
        Migration(version: 9, name: "cloud_outbox", sql: #"""
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

"""#),
        Migration(version: 10, name: "trust_line", sql: #"""
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

"""#),
        Migration(version: 11, name: "trust_roles", sql: #"""
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

"""#),
        Migration(version: 12, name: "custody", sql: #"""
-- Escrow custody (issue 22; design.md, "Custody of the escrow identity"; ../shared/docs/custody.md).
-- Backups stay plain age files to an escrow epoch's recipient. The epoch's X25519 identity is made
-- in memory and exists only as M-of-N Shamir shares, each an age file to one custodian; the
-- registry records the epoch, each share set and share (the custodian, the SHA-256 of the share
-- file, and of the share inside it: Shamir has no integrity, these are its commitments), every
-- ceremony (who ran it, which shares were brought, what was done under it), and each object
-- generation a rotation wrote. Ceremonies are run by an RMA/officer login (keyline_rma), never a
-- station; auditors read everything; stations read only the epochs (their recipients).

CREATE DOMAIN age_x25519_recipient AS text CHECK (VALUE ~ '^age1[02-9ac-hj-np-z]{58}$');

CREATE TABLE escrow_epochs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    -- The commitment a recovery is checked against: the recipient the combined identity must have.
    recipient   age_x25519_recipient NOT NULL UNIQUE,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_by  text NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    CHECK ((status = 'active') = (retired_at IS NULL))
);

CREATE TABLE custody_ceremonies (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('create', 'recovery', 'reshare', 'rotate')),
    epoch_id      bigint NOT NULL REFERENCES escrow_epochs (id),
    -- A rotation's new epoch.
    new_epoch_id  bigint REFERENCES escrow_epochs (id),
    -- A rotation's scope (NULL: every product).
    product_id    text REFERENCES products (id),
    station       text NOT NULL CHECK (station <> ''),
    operator      text NOT NULL DEFAULT session_user,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CHECK ((kind = 'rotate') = (new_epoch_id IS NOT NULL))
);
CREATE INDEX custody_ceremonies_epoch ON custody_ceremonies (epoch_id);

-- The shares of an epoch are made in sets: the creation's, then each reshare's. One set is
-- active; a reshare retires the one before it (its files can no longer be matched to a live set).
CREATE TABLE custody_share_sets (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    epoch_id     bigint NOT NULL REFERENCES escrow_epochs (id),
    ceremony_id  bigint NOT NULL REFERENCES custody_ceremonies (id),
    threshold    integer NOT NULL CHECK (threshold >= 2),
    share_count  integer NOT NULL CHECK (share_count >= threshold AND share_count <= 255),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    CHECK ((status = 'active') = (retired_at IS NULL))
);
CREATE UNIQUE INDEX custody_share_sets_one_active ON custody_share_sets (epoch_id) WHERE status = 'active';

CREATE TABLE custody_shares (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    share_set_id         bigint NOT NULL REFERENCES custody_share_sets (id),
    -- The share's x coordinate: "share 3".
    x                    integer NOT NULL CHECK (x BETWEEN 1 AND 255),
    custodian            text NOT NULL CHECK (custodian ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    custodian_recipient  age_x25519_recipient NOT NULL,
    -- The age file handed to the custodian, and the share document inside it (never the share).
    file_sha256          sha256_hex NOT NULL UNIQUE,
    share_sha256         sha256_hex NOT NULL UNIQUE,
    UNIQUE (share_set_id, x),
    UNIQUE (share_set_id, custodian)
);

-- A share whose custodian can no longer bring it (left, lost the key, the file is gone): the audit
-- counts what is left of each epoch's active set against its threshold. Reported, never undone:
-- a share found again is re-issued by a reshare.
CREATE TABLE custody_share_losses (
    share_id     bigint PRIMARY KEY REFERENCES custody_shares (id),
    reason       text NOT NULL CHECK (reason <> ''),
    reported_by  text NOT NULL DEFAULT session_user,
    reported_at  timestamptz NOT NULL DEFAULT now()
);

-- Which shares (so which custodians) were brought to a ceremony.
CREATE TABLE custody_ceremony_shares (
    ceremony_id  bigint NOT NULL REFERENCES custody_ceremonies (id),
    share_id     bigint NOT NULL REFERENCES custody_shares (id),
    PRIMARY KEY (ceremony_id, share_id)
);

-- Which devices were restored under a recovery.
CREATE TABLE custody_ceremony_restorations (
    ceremony_id     bigint NOT NULL REFERENCES custody_ceremonies (id),
    restoration_id  bigint NOT NULL UNIQUE REFERENCES restorations (id),
    PRIMARY KEY (ceremony_id, restoration_id)
);

-- Object generations. Generation 1 of a registration is the object it was registered with
-- (key_registrations.escrow_object_id, append-only, never rewritten); a rotation writes a new
-- object (the store is write-once: the old one stays until its retention ends) and records it
-- here as the next generation, in the transaction that records the object. The registration's
-- current object is its highest generation (keyline_current_escrow_object).
CREATE TABLE escrow_object_generations (
    registration_id   bigint NOT NULL REFERENCES key_registrations (id),
    generation        integer NOT NULL CHECK (generation >= 2),
    escrow_object_id  bigint NOT NULL UNIQUE REFERENCES escrow_objects (id),
    epoch_id          bigint NOT NULL REFERENCES escrow_epochs (id),
    ceremony_id       bigint NOT NULL REFERENCES custody_ceremonies (id),
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (registration_id, generation)
);

-- Rotation's write-ahead record (as escrow_intents for the line): the object key and ciphertext
-- SHA-256 about to be written, so a rotation killed at any point adopts the object it wrote.
CREATE TABLE custody_rotation_intents (
    ceremony_id        bigint NOT NULL REFERENCES custody_ceremonies (id),
    registration_id    bigint NOT NULL REFERENCES key_registrations (id),
    generation         integer NOT NULL CHECK (generation >= 2),
    store_uri          text NOT NULL CHECK (store_uri <> ''),
    object_key         text NOT NULL CHECK (object_key <> ''),
    ciphertext_sha256  sha256_hex NOT NULL,
    size_bytes         bigint NOT NULL CHECK (size_bytes > 0),
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ceremony_id, registration_id)
);

-- The registration's current escrow object: its latest generation, else the one it was
-- registered with. Restores and audits read through this, so a rotation moves every reader.
CREATE FUNCTION keyline_current_escrow_object(registration bigint) RETURNS bigint
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(
        (SELECT g.escrow_object_id FROM public.escrow_object_generations g
         WHERE g.registration_id = registration ORDER BY g.generation DESC LIMIT 1),
        (SELECT r.escrow_object_id FROM public.key_registrations r WHERE r.id = registration))
$$;

-- A generation names an object of the same product, device and public key as its registration,
-- and is exactly the next one; the database, not the client, says when.
CREATE FUNCTION keyline_escrow_object_generation_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    latest integer;
    ceremony public.custody_ceremonies%ROWTYPE;
    binding public.station_logins%ROWTYPE;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.key_registrations r JOIN public.escrow_objects e
                   ON e.product_id = r.product_id AND e.device_id = r.device_id AND e.public_key_sha256 = r.fingerprint
                   WHERE r.id = NEW.registration_id AND e.id = NEW.escrow_object_id) THEN
        RAISE EXCEPTION 'escrow object % is not a backup of registration %''s key', NEW.escrow_object_id, NEW.registration_id
            USING ERRCODE = 'check_violation';
    END IF;
    -- Only a running rotation to this very epoch moves a registration to a new object: nobody can
    -- point a key back at a backup under an older (possibly compromised) epoch.
    SELECT * INTO ceremony FROM public.custody_ceremonies c WHERE c.id = NEW.ceremony_id;
    IF NOT FOUND OR ceremony.kind <> 'rotate' OR ceremony.finished_at IS NOT NULL
       OR ceremony.new_epoch_id IS DISTINCT FROM NEW.epoch_id THEN
        RAISE EXCEPTION 'generation % of registration % names ceremony %, which is not a running rotation to epoch %',
            NEW.generation, NEW.registration_id, NEW.ceremony_id, NEW.epoch_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT public.keyline_session_trusted(TG_RELID) THEN
        SELECT * INTO binding FROM public.station_logins l WHERE l.login = session_user;
        IF NOT FOUND OR binding.role <> 'rma' OR binding.station IS DISTINCT FROM ceremony.station THEN
            RAISE EXCEPTION 'login % may not record a rotated backup of ceremony %: only the RMA/officer login bound to bench % may',
                session_user, ceremony.id, ceremony.station
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    SELECT coalesce(max(g.generation), 1) INTO latest FROM public.escrow_object_generations g
    WHERE g.registration_id = NEW.registration_id;
    IF NEW.generation <> latest + 1 THEN
        RAISE EXCEPTION 'registration % is at generation %, so the next is %, not %', NEW.registration_id, latest,
            latest + 1, NEW.generation
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.recorded_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER escrow_object_generations_insert BEFORE INSERT ON escrow_object_generations
    FOR EACH ROW EXECUTE FUNCTION keyline_escrow_object_generation_insert();

-- Who and when on custody rows: the session's login and the database's clock. A login that is
-- not the administrator must be an RMA/officer login bound to the bench it names.
CREATE FUNCTION keyline_custody_who_when() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    binding public.station_logins%ROWTYPE;
BEGIN
    IF TG_TABLE_NAME = 'custody_ceremonies' AND TG_OP = 'INSERT' THEN
        NEW.operator := session_user;
        NEW.started_at := now();
        NEW.finished_at := NULL;
        IF NOT public.keyline_session_trusted(TG_RELID) THEN
            SELECT * INTO binding FROM public.station_logins l WHERE l.login = session_user;
            IF NOT FOUND OR binding.role <> 'rma' OR binding.station IS DISTINCT FROM NEW.station THEN
                RAISE EXCEPTION 'login % may not run a custody ceremony as %: only an RMA/officer login bound to that bench may',
                    session_user, NEW.station
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = format('An administrator runs `keyline db grant %s --role rma --station NAME`.', session_user);
            END IF;
        END IF;
    ELSIF TG_TABLE_NAME = 'custody_ceremonies' THEN
        IF (NEW.id, NEW.kind, NEW.epoch_id, NEW.new_epoch_id, NEW.product_id, NEW.station, NEW.operator, NEW.started_at)
           IS DISTINCT FROM (OLD.id, OLD.kind, OLD.epoch_id, OLD.new_epoch_id, OLD.product_id, OLD.station, OLD.operator, OLD.started_at)
           OR OLD.finished_at IS NOT NULL THEN
            RAISE EXCEPTION 'custody ceremony % is append-only: it is finished once, nothing else changes', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        NEW.finished_at := now();
    ELSIF TG_TABLE_NAME = 'escrow_epochs' AND TG_OP = 'INSERT' THEN
        NEW.created_by := session_user;
        NEW.created_at := now();
        NEW.status := 'active';
        NEW.retired_at := NULL;
    ELSIF TG_TABLE_NAME IN ('escrow_epochs', 'custody_share_sets') AND TG_OP = 'UPDATE' THEN
        IF OLD.status <> 'active' OR NEW.status <> 'retired' OR to_jsonb(NEW) - 'status' - 'retired_at' IS DISTINCT FROM to_jsonb(OLD) - 'status' - 'retired_at' THEN
            RAISE EXCEPTION '% % can only be retired, once', TG_TABLE_NAME, OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        NEW.retired_at := now();
    ELSIF TG_TABLE_NAME = 'custody_share_sets' THEN
        NEW.created_at := now();
        NEW.status := 'active';
        NEW.retired_at := NULL;
    ELSIF TG_TABLE_NAME = 'custody_share_losses' THEN
        NEW.reported_by := session_user;
        NEW.reported_at := now();
    ELSIF TG_TABLE_NAME = 'custody_rotation_intents' THEN
        NEW.recorded_at := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER custody_ceremonies_who_when BEFORE INSERT OR UPDATE ON custody_ceremonies
    FOR EACH ROW EXECUTE FUNCTION keyline_custody_who_when();
CREATE TRIGGER escrow_epochs_who_when BEFORE INSERT OR UPDATE ON escrow_epochs
    FOR EACH ROW EXECUTE FUNCTION keyline_custody_who_when();
CREATE TRIGGER custody_share_sets_who_when BEFORE INSERT OR UPDATE ON custody_share_sets
    FOR EACH ROW EXECUTE FUNCTION keyline_custody_who_when();
CREATE TRIGGER custody_share_losses_who_when BEFORE INSERT ON custody_share_losses
    FOR EACH ROW EXECUTE FUNCTION keyline_custody_who_when();
CREATE TRIGGER custody_share_losses_append_only BEFORE UPDATE OR DELETE ON custody_share_losses
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_rotation_intents_who_when BEFORE INSERT OR UPDATE ON custody_rotation_intents
    FOR EACH ROW EXECUTE FUNCTION keyline_custody_who_when();

-- Nothing here is deleted; shares, ceremony links and generations are never changed either.
CREATE TRIGGER escrow_epochs_no_delete BEFORE DELETE ON escrow_epochs
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_ceremonies_no_delete BEFORE DELETE ON custody_ceremonies
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_share_sets_no_delete BEFORE DELETE ON custody_share_sets
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_shares_append_only BEFORE UPDATE OR DELETE ON custody_shares
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_ceremony_shares_append_only BEFORE UPDATE OR DELETE ON custody_ceremony_shares
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_ceremony_restorations_append_only BEFORE UPDATE OR DELETE ON custody_ceremony_restorations
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER escrow_object_generations_append_only BEFORE UPDATE OR DELETE ON escrow_object_generations
    FOR EACH ROW EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_tables_no_truncate BEFORE TRUNCATE ON escrow_epochs
    FOR EACH STATEMENT EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER custody_ceremonies_no_truncate BEFORE TRUNCATE ON custody_ceremonies
    FOR EACH STATEMENT EXECUTE FUNCTION keyline_reject_change();
CREATE TRIGGER escrow_object_generations_no_truncate BEFORE TRUNCATE ON escrow_object_generations
    FOR EACH STATEMENT EXECUTE FUNCTION keyline_reject_change();

-- Stations read the epochs (the recipient they encrypt to); nothing about shares or custodians.
GRANT SELECT ON escrow_epochs TO keyline_station;
-- RMA/officer logins run ceremonies; auditors read every record of them.
GRANT SELECT ON escrow_epochs, custody_ceremonies, custody_share_sets, custody_shares, custody_share_losses, custody_ceremony_shares,
    custody_ceremony_restorations, escrow_object_generations, custody_rotation_intents
    TO keyline_rma, keyline_auditor;
GRANT INSERT ON escrow_epochs, custody_ceremonies, custody_share_sets, custody_shares, custody_share_losses, custody_ceremony_shares,
    custody_ceremony_restorations, escrow_object_generations, custody_rotation_intents TO keyline_rma;
GRANT UPDATE (status, retired_at) ON escrow_epochs, custody_share_sets TO keyline_rma;
GRANT UPDATE (finished_at) ON custody_ceremonies TO keyline_rma;
GRANT UPDATE (store_uri, object_key, ciphertext_sha256, size_bytes, recorded_at, generation) ON custody_rotation_intents TO keyline_rma;
GRANT EXECUTE ON FUNCTION keyline_current_escrow_object(bigint) TO keyline_station, keyline_rma, keyline_auditor;

-- A rotation's re-encrypted backup is an escrow object outside any job: 0010's rule that such an
-- object is the commit of a pending intent also accepts the intent of a running rotation at the
-- bench that records it.
CREATE OR REPLACE FUNCTION public.keyline_escrow_object_backed() RETURNS trigger
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
    ELSIF NOT EXISTS (SELECT 1 FROM public.custody_rotation_intents ri
                      JOIN public.custody_ceremonies c ON c.id = ri.ceremony_id
                      JOIN public.key_registrations r ON r.id = ri.registration_id
                      WHERE c.kind = 'rotate' AND c.finished_at IS NULL AND c.station = NEW.station
                        AND (r.product_id, r.device_id, r.fingerprint, ri.store_uri, ri.object_key,
                             ri.ciphertext_sha256, ri.size_bytes)
                          = (NEW.product_id, NEW.device_id, NEW.public_key_sha256, NEW.store_uri, NEW.object_key,
                             NEW.ciphertext_sha256, NEW.size_bytes))
      AND NOT EXISTS (SELECT 1 FROM public.bench_escrow_intents b
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

-- 0011's rule again, now that this migration added SECURITY DEFINER functions.
SELECT public.keyline_require_safe_definer_paths();

"""#),
        Migration(version: 13, name: "cloud_delivery_audit", sql: #"""
-- Cloud uploads: no silent delivery change (a follow-up of issue 21's items 7 and 8).
-- 0009 lets a station or bench login update an upload's delivery columns directly, so one could
-- mark an upload `sent` that the cloud never saw, with no event and no actor. From here on every
-- change of delivery state is a `cloud.upload` event written by the database itself (who: the
-- session's login; where: its bound station), `sent` needs a 2xx answer to a claimed attempt, a
-- claim changes only the attempt count and the due time, and a login bound to no station or bench
-- changes nothing.

CREATE FUNCTION public.keyline_cloud_upload_delivery() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    outcome text;
BEGIN
    IF NOT public.keyline_session_trusted(TG_RELID)
       AND NOT EXISTS (SELECT 1 FROM public.station_logins l WHERE l.login = session_user AND l.station IS NOT NULL) THEN
        RAISE EXCEPTION 'login % is not bound to a station or bench, so it cannot change cloud uploads', session_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('An administrator runs `keyline db grant %s --role station|rma --station NAME`.', session_user);
    END IF;

    -- A claim: the next attempt is counted and moved ahead; nothing else may change with it.
    IF NEW.attempts IS DISTINCT FROM OLD.attempts THEN
        IF NEW.attempts IS DISTINCT FROM OLD.attempts + 1
           OR (NEW.state, NEW.last_status, NEW.last_request_id, NEW.reason, NEW.sent_at)
              IS DISTINCT FROM (OLD.state, OLD.last_status, OLD.last_request_id, OLD.reason, OLD.sent_at) THEN
            RAISE EXCEPTION 'upload % of device %: a claim counts one attempt and changes nothing else', OLD.id, OLD.device_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'cloud_upload_claim';
        END IF;
        RETURN NEW;
    END IF;

    IF NEW.state = 'sent' AND OLD.state <> 'sent'
       AND (NEW.attempts < 1 OR NEW.last_status IS NULL OR NEW.last_status NOT BETWEEN 200 AND 299) THEN
        RAISE EXCEPTION 'upload % of device % is marked sent without a 2xx answer to a claimed attempt', OLD.id, OLD.device_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'cloud_upload_sent_needs_acceptance';
    END IF;

    -- Nothing about the delivery changed (e.g. only a due time): no event, unless this is a recorded
    -- attempt (keyline.cloud_attempt, set by the drainer), which is an event even when its answer
    -- repeats the last one (two timeouts in a row are two attempts).
    IF pg_catalog.current_setting('keyline.cloud_attempt', true) IS DISTINCT FROM 'on'
       AND (NEW.state, NEW.last_status, NEW.last_request_id, NEW.reason)
       IS NOT DISTINCT FROM (OLD.state, OLD.last_status, OLD.last_request_id, OLD.reason) THEN
        RETURN NEW;
    END IF;
    outcome := CASE
        WHEN NEW.state = 'pending' AND OLD.state = 'parked' THEN 'requeued'
        WHEN NEW.state = 'pending' THEN 'retry'
        ELSE NEW.state END;
    -- The station is the bound one (events' own who/where/when trigger fills it); a trusted session
    -- (the migrator, a development superuser) names it in the transaction setting keyline.station.
    INSERT INTO public.events (kind, station, product_id, device_id, detail)
    VALUES ('cloud.upload', nullif(pg_catalog.current_setting('keyline.station', true), ''), NEW.product_id, NEW.device_id,
            pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'fingerprint', NEW.fingerprint, 'outcome', outcome, 'attempt', NEW.attempts::text,
                'status', NEW.last_status::text, 'request_id', NEW.last_request_id, 'reason', NEW.reason,
                -- In the detail, not the job column: any drainer may send any job's upload (0011).
                'job', NEW.job_id::text)));
    RETURN NEW;
END
$$;
CREATE TRIGGER cloud_uploads_delivery BEFORE UPDATE ON public.cloud_uploads
    FOR EACH ROW EXECUTE FUNCTION public.keyline_cloud_upload_delivery();

-- 0011's rule again, now that this migration added a SECURITY DEFINER function.
SELECT public.keyline_require_safe_definer_paths();

"""#),
        Migration(version: 14, name: "dashboard", sql: #"""
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

"""#),
    ]
}
