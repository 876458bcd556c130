-- Exact per-day rollups of the contact statistics, kept up by triggers on contacts, so that
-- GET /contacts/stats reads a few thousand rollup rows instead of every contact of an account.
--
-- `writer` is the backend pid of the connection that wrote the delta: each connection adds to
-- its own row, so concurrent upserts of one chatbot on one day never queue on one row lock.
-- Rows are sums of deltas; the figures of a group are the sums over its writers.
CREATE TABLE contact_daily_stats (
    account_id bigint NOT NULL,
    day date NOT NULL,
    channel text NOT NULL,
    chatbot_id text NOT NULL,
    writer integer NOT NULL,
    total bigint NOT NULL DEFAULT 0,
    with_email bigint NOT NULL DEFAULT 0,
    with_phone bigint NOT NULL DEFAULT 0,
    with_email_or_phone bigint NOT NULL DEFAULT 0,
    complete bigint NOT NULL DEFAULT 0,
    returning_contacts bigint NOT NULL DEFAULT 0,
    sessions bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day, channel, chatbot_id, writer)
);

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

-- The contacts already there (the trigger's lock on contacts keeps writers out meanwhile).
INSERT INTO contact_daily_stats (account_id, day, channel, chatbot_id, writer, total,
    with_email, with_phone, with_email_or_phone, complete, returning_contacts, sessions)
SELECT account_id, (created_at AT TIME ZONE 'UTC')::date, channel, chatbot_id, 0, count(*),
    count(email), count(phone), count(*) FILTER (WHERE email IS NOT NULL OR phone IS NOT NULL),
    count(*) FILTER (WHERE name IS NOT NULL AND email IS NOT NULL AND phone IS NOT NULL),
    count(*) FILTER (WHERE sessions_count > 1), COALESCE(sum(sessions_count), 0)
FROM contacts
GROUP BY 1, 2, 3, 4;
