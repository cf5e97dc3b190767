-- A late SES event about an erased address stays erased (GDPR article 17).
-- `subscribers forget` anonymises the events stored so far; a complaint or
-- bounce that SES reports days later, about an email sent before, would
-- bring the address back (in `addresses`, and in the payload's destination,
-- recipients and copies of the headers, which hold the name too).
--
-- So an event whose SES message id is that of a forgotten ledger row (its
-- email 'forgotten:…', the token of the address, '#n' for a mailout's
-- second spelling of it) is stored as forget leaves one: every address it
-- names becomes that token, in `addresses` and anywhere in the payload; the
-- payload's mail.headers and mail.commonHeaders go; mail.destination is the
-- token alone. Each email we send has one recipient, so the event concerns
-- no one else. Its effect on the list finds no subscriber (the row is gone,
-- and the suppression list keeps imports from adding it again), and the
-- ledger row keeps its status (its email no longer matches the address).
--
-- A forget that has not committed is not seen here: store.begin_forgetting
-- locks ses_events against inserts for the erasure's duration.
CREATE FUNCTION ses_events_forgotten() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    token text;
    pattern text;
BEGIN
    SELECT regexp_replace(email, '#[0-9]+$', '') INTO token
      FROM send_logs
     WHERE ses_message_id = NEW.ses_message_id AND email LIKE 'forgotten:%'
     LIMIT 1;
    IF token IS NULL THEN
        RETURN NEW;
    END IF;
    -- Each address as the JSON text writes it, every character but letters
    -- and digits escaped (in a Postgres regular expression, a backslash
    -- before any other character stands for that character).
    SELECT string_agg(regexp_replace(substr(j, 2, length(j) - 2), '([^[:alnum:]])', '\\\1', 'g'), '|')
      INTO pattern
      FROM (SELECT DISTINCT to_jsonb(a)::text AS j FROM unnest(NEW.addresses) AS a WHERE a <> '') AS x;
    IF pattern IS NOT NULL THEN
        NEW.payload := regexp_replace(NEW.payload::text, pattern, token, 'gi')::jsonb;
    END IF;
    NEW.addresses := ARRAY(SELECT token FROM unnest(NEW.addresses));
    IF jsonb_typeof(NEW.payload) = 'object' THEN
        NEW.payload := NEW.payload #- '{mail,headers}' #- '{mail,commonHeaders}';
        IF jsonb_typeof(NEW.payload -> 'mail' -> 'destination') = 'array' THEN
            NEW.payload := jsonb_set(NEW.payload, '{mail,destination}', jsonb_build_array(token));
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- A fixed search_path, as 007 gives every function.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ses_events_forgotten() SET search_path = pg_catalog, %s, pg_temp',
                   (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'ses_events'::regclass));
END
$$;

REVOKE EXECUTE ON FUNCTION ses_events_forgotten() FROM PUBLIC;

CREATE TRIGGER ses_events_forgotten
    BEFORE INSERT ON ses_events
    FOR EACH ROW WHEN (NEW.ses_message_id IS NOT NULL)
    EXECUTE FUNCTION ses_events_forgotten();
