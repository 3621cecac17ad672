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
