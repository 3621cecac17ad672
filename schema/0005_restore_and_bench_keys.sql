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

-- The RMA bench escrows the key it finds on a returned device (a superseded key) and, with
-- `keyline keys send --supersede` or `keys doctor`, re-keys a device at the bench: a new escrow
-- object, the old registration superseded and the new one registered, recorded as events.
GRANT INSERT ON escrow_objects, key_registrations TO keyline_rma;
CREATE POLICY key_registrations_rma_insert ON key_registrations FOR INSERT
    TO keyline_rma WITH CHECK (status = 'active' AND job_id IS NULL);
