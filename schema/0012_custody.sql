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
