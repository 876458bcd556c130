-- Large batch upserts account for their rows once per statement instead of once per row.
--
-- Why: the row triggers of 000006 call a PL/pgSQL function and append a delta row for every
-- contact a statement inserts or changes; a 500-row batch upsert lost 12% of its throughput to
-- them (pgbench -M prepared, 16 clients, 4 interleaved rounds of 8 s, 2026-11-26). Statement
-- triggers with transition tables cost a batch little but a single upsert much (000006), so a
-- transaction chooses: `SET LOCAL contacts.stats_by_statement = on` (repo::batch does it for
-- large rounds) turns the row triggers off and the statement triggers on for the rest of the
-- transaction. Everything else keeps the row triggers. Either way every change is counted once.

DROP TRIGGER contacts_stats_insert ON contacts;
DROP TRIGGER contacts_stats_update ON contacts;

CREATE TRIGGER contacts_stats_insert AFTER INSERT ON contacts
    FOR EACH ROW
    WHEN (current_setting('contacts.stats_by_statement', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION contact_stats_inserted();

-- Most updates (last_seen_at, payload, a new value of a field already set) change no figure;
-- the WHEN clause keeps them from calling the function at all.
CREATE TRIGGER contacts_stats_update AFTER UPDATE ON contacts
    FOR EACH ROW WHEN (
        current_setting('contacts.stats_by_statement', true) IS DISTINCT FROM 'on'
        AND (OLD.account_id <> NEW.account_id
            OR OLD.created_at <> NEW.created_at
            OR OLD.channel <> NEW.channel
            OR OLD.chatbot_id <> NEW.chatbot_id
            OR OLD.sessions_count <> NEW.sessions_count
            OR (OLD.email IS NULL) <> (NEW.email IS NULL)
            OR (OLD.phone IS NULL) <> (NEW.phone IS NULL)
            OR (OLD.name IS NULL) <> (NEW.name IS NULL))
    )
    EXECUTE FUNCTION contact_stats_updated();

-- The rows a statement inserted, one delta per group.
CREATE FUNCTION contact_stats_inserted_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_stats_deltas
    SELECT account_id, (created_at AT TIME ZONE 'UTC')::date, channel, chatbot_id,
        count(*),
        count(email),
        count(phone),
        count(*) FILTER (WHERE email IS NOT NULL OR phone IS NOT NULL),
        count(*) FILTER (WHERE name IS NOT NULL AND email IS NOT NULL AND phone IS NOT NULL),
        count(*) FILTER (WHERE sessions_count > 1),
        sum(sessions_count)
    FROM added
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_stats_insert_rows AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT
    WHEN (current_setting('contacts.stats_by_statement', true) = 'on')
    EXECUTE FUNCTION contact_stats_inserted_rows();

-- The rows a statement changed: their old contributions out, their new ones in, netted per
-- group; groups where nothing moved (the usual upsert) append nothing.
CREATE FUNCTION contact_stats_updated_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_stats_deltas
    SELECT account_id, day, channel, chatbot_id, sum(total), sum(with_email), sum(with_phone),
        sum(with_email_or_phone), sum(complete), sum(returning_contacts), sum(sessions)
    FROM (
        SELECT account_id, (created_at AT TIME ZONE 'UTC')::date AS day, channel, chatbot_id,
            -1 AS total,
            -(email IS NOT NULL)::int AS with_email,
            -(phone IS NOT NULL)::int AS with_phone,
            -(email IS NOT NULL OR phone IS NOT NULL)::int AS with_email_or_phone,
            -(name IS NOT NULL AND email IS NOT NULL AND phone IS NOT NULL)::int AS complete,
            -(sessions_count > 1)::int AS returning_contacts,
            -sessions_count AS sessions
        FROM before
        UNION ALL
        SELECT account_id, (created_at AT TIME ZONE 'UTC')::date, channel, chatbot_id,
            1,
            (email IS NOT NULL)::int,
            (phone IS NOT NULL)::int,
            (email IS NOT NULL OR phone IS NOT NULL)::int,
            (name IS NOT NULL AND email IS NOT NULL AND phone IS NOT NULL)::int,
            (sessions_count > 1)::int,
            sessions_count
        FROM after
    ) d
    GROUP BY 1, 2, 3, 4
    HAVING sum(total) <> 0 OR sum(with_email) <> 0 OR sum(with_phone) <> 0
        OR sum(with_email_or_phone) <> 0 OR sum(complete) <> 0
        OR sum(returning_contacts) <> 0 OR sum(sessions) <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_stats_update_rows AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT
    WHEN (current_setting('contacts.stats_by_statement', true) = 'on')
    EXECUTE FUNCTION contact_stats_updated_rows();
