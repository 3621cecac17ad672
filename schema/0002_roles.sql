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
