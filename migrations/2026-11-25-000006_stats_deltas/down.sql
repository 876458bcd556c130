-- Fold what is left, then return to the row triggers of migration 000005.
WITH moved AS (DELETE FROM contact_stats_deltas RETURNING *)
INSERT INTO contact_daily_stats AS s (account_id, day, channel, chatbot_id, writer, total,
    with_email, with_phone, with_email_or_phone, complete, returning_contacts, sessions)
SELECT account_id, day, channel, chatbot_id, 0, sum(total), sum(with_email), sum(with_phone),
    sum(with_email_or_phone), sum(complete), sum(returning_contacts), sum(sessions)
FROM moved GROUP BY 1, 2, 3, 4
ON CONFLICT (account_id, day, channel, chatbot_id, writer) DO UPDATE SET
    total = s.total + EXCLUDED.total,
    with_email = s.with_email + EXCLUDED.with_email,
    with_phone = s.with_phone + EXCLUDED.with_phone,
    with_email_or_phone = s.with_email_or_phone + EXCLUDED.with_email_or_phone,
    complete = s.complete + EXCLUDED.complete,
    returning_contacts = s.returning_contacts + EXCLUDED.returning_contacts,
    sessions = s.sessions + EXCLUDED.sessions;

DROP TRIGGER contacts_stats_delete ON contacts;
DROP TRIGGER contacts_stats_update ON contacts;
DROP TRIGGER contacts_stats_insert ON contacts;
DROP FUNCTION contact_stats_deleted();
DROP FUNCTION contact_stats_updated();
DROP FUNCTION contact_stats_inserted();
DROP VIEW contact_daily_figures;
DROP TABLE contact_stats_deltas;

-- Adds `sign` (1 or -1) times contact `c`'s contribution to its group. PL/pgSQL, not SQL: its
-- statements keep their plans between calls, where a SQL function would plan the INSERT on
-- every row written.
CREATE FUNCTION contact_daily_stats_add(c contacts, sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_daily_stats AS s (account_id, day, channel, chatbot_id, writer, total,
        with_email, with_phone, with_email_or_phone, complete, returning_contacts, sessions)
    VALUES (c.account_id, (c.created_at AT TIME ZONE 'UTC')::date, c.channel, c.chatbot_id,
        pg_backend_pid(), sign,
        sign * (c.email IS NOT NULL)::int,
        sign * (c.phone IS NOT NULL)::int,
        sign * (c.email IS NOT NULL OR c.phone IS NOT NULL)::int,
        sign * (c.name IS NOT NULL AND c.email IS NOT NULL AND c.phone IS NOT NULL)::int,
        sign * (c.sessions_count > 1)::int,
        sign * c.sessions_count)
    ON CONFLICT (account_id, day, channel, chatbot_id, writer) DO UPDATE SET
        total = s.total + EXCLUDED.total,
        with_email = s.with_email + EXCLUDED.with_email,
        with_phone = s.with_phone + EXCLUDED.with_phone,
        with_email_or_phone = s.with_email_or_phone + EXCLUDED.with_email_or_phone,
        complete = s.complete + EXCLUDED.complete,
        returning_contacts = s.returning_contacts + EXCLUDED.returning_contacts,
        sessions = s.sessions + EXCLUDED.sessions;
END
$$;

CREATE FUNCTION contact_daily_stats_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM contact_daily_stats_add(OLD, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM contact_daily_stats_add(NEW, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_daily_stats_insert_delete AFTER INSERT OR DELETE ON contacts
    FOR EACH ROW EXECUTE FUNCTION contact_daily_stats_apply();

-- Most updates (last_seen_at, payload, a new value of a field already set) change no figure;
-- the WHEN clause keeps them from calling the function at all.
CREATE TRIGGER contacts_daily_stats_update AFTER UPDATE ON contacts
    FOR EACH ROW WHEN (
        OLD.account_id <> NEW.account_id
        OR OLD.created_at <> NEW.created_at
        OR OLD.channel <> NEW.channel
        OR OLD.chatbot_id <> NEW.chatbot_id
        OR OLD.sessions_count <> NEW.sessions_count
        OR (OLD.email IS NULL) <> (NEW.email IS NULL)
        OR (OLD.phone IS NULL) <> (NEW.phone IS NULL)
        OR (OLD.name IS NULL) <> (NEW.name IS NULL)
    )
    EXECUTE FUNCTION contact_daily_stats_apply();
