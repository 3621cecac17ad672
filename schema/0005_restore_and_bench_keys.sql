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
