-- `keyline keys send` and `keyline keys doctor` (issue 10): an engineer fixing one device at a
-- bench leaves the same records as the line — an escrow object (with a `key.escrowed` event), a
-- registration and its `key.registered` event, and `key.superseded` for the key it replaces.
-- The RMA role may now register keys: active ones, outside jobs only (a job's registrations are
-- the stations' evidence). Superseding stays limited to active -> superseded (0002).
GRANT INSERT ON key_registrations TO keyline_rma;
CREATE POLICY key_registrations_rma_insert ON key_registrations FOR INSERT
    TO keyline_rma WITH CHECK (status = 'active' AND job_id IS NULL);
