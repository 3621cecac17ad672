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
