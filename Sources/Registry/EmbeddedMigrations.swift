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
    LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(
        (SELECT g.escrow_object_id FROM escrow_object_generations g
         WHERE g.registration_id = registration ORDER BY g.generation DESC LIMIT 1),
        (SELECT r.escrow_object_id FROM key_registrations r WHERE r.id = registration))
$$;

-- A generation names an object of the same product, device and public key as its registration,
-- and is exactly the next one; the database, not the client, says when.
CREATE FUNCTION keyline_escrow_object_generation_insert() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    latest integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM key_registrations r JOIN escrow_objects e
                   ON e.product_id = r.product_id AND e.device_id = r.device_id AND e.public_key_sha256 = r.fingerprint
                   WHERE r.id = NEW.registration_id AND e.id = NEW.escrow_object_id) THEN
        RAISE EXCEPTION 'escrow object % is not a backup of registration %''s key', NEW.escrow_object_id, NEW.registration_id
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT coalesce(max(generation), 1) INTO latest FROM escrow_object_generations WHERE registration_id = NEW.registration_id;
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
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    binding station_logins%ROWTYPE;
BEGIN
    IF TG_TABLE_NAME = 'custody_ceremonies' AND TG_OP = 'INSERT' THEN
        NEW.operator := session_user;
        NEW.started_at := now();
        NEW.finished_at := NULL;
        IF NOT keyline_session_trusted(TG_RELID) THEN
            SELECT * INTO binding FROM station_logins WHERE login = session_user;
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

"""#),
    ]
}
