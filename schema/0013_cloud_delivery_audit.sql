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
