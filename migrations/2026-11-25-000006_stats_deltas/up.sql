-- The write path appends its changes to the figures to `contact_stats_deltas`, a table without
-- any index or key, and a background task in each server process folds them into
-- `contact_daily_stats` every second. Reads add both, so the figures are exact at any moment.
--
-- Why: the row triggers of migration 000005 upserted a rollup row in every write, which cost a
-- new-session upsert 14% of pgbench's throughput and a 500-row batch 20-30% (the same rollup row
-- rewritten 500 times in one transaction); statement triggers with transition tables fixed the
-- batches but cost a single new session 20% (they fire for every INSERT statement, and their
-- aggregate INSERT is expensive to start). Appending one row to an unindexed heap costs 7%.
-- (pgbench -M prepared, 16 clients, 4 interleaved rounds of 10 s; numbers in the README.)
CREATE TABLE contact_stats_deltas (
    account_id bigint NOT NULL,
    day date NOT NULL,
    channel text NOT NULL,
    chatbot_id text NOT NULL,
    total integer NOT NULL,
    with_email integer NOT NULL,
    with_phone integer NOT NULL,
    with_email_or_phone integer NOT NULL,
    complete integer NOT NULL,
    returning_contacts integer NOT NULL,
    sessions integer NOT NULL
) WITH (vacuum_truncate = false);
-- (The fold vacuums the table after each pass. Truncating its empty tail would take an
-- exclusive lock that every writer queues behind; the pages are reused anyway.)

-- What GET /contacts/stats reads: the folded rollups and the deltas not folded yet.
CREATE VIEW contact_daily_figures AS
    SELECT account_id, day, channel, chatbot_id, total, with_email, with_phone,
        with_email_or_phone, complete, returning_contacts, sessions
    FROM contact_daily_stats
    UNION ALL
    SELECT account_id, day, channel, chatbot_id, total, with_email, with_phone,
        with_email_or_phone, complete, returning_contacts, sessions
    FROM contact_stats_deltas;

DROP TRIGGER contacts_daily_stats_insert_delete ON contacts;
DROP TRIGGER contacts_daily_stats_update ON contacts;
DROP FUNCTION contact_daily_stats_apply();
DROP FUNCTION contact_daily_stats_add(contacts, integer);

-- A new contact: one appended row, no lookup.
CREATE FUNCTION contact_stats_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_stats_deltas VALUES (NEW.account_id,
        (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.channel, NEW.chatbot_id, 1,
        (NEW.email IS NOT NULL)::int,
        (NEW.phone IS NOT NULL)::int,
        (NEW.email IS NOT NULL OR NEW.phone IS NOT NULL)::int,
        (NEW.name IS NOT NULL AND NEW.email IS NOT NULL AND NEW.phone IS NOT NULL)::int,
        (NEW.sessions_count > 1)::int,
        NEW.sessions_count);
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_stats_insert AFTER INSERT ON contacts
    FOR EACH ROW EXECUTE FUNCTION contact_stats_inserted();

-- A changed contact: its old contribution out, its new one in (the fold nets them).
CREATE FUNCTION contact_stats_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_stats_deltas VALUES
        (OLD.account_id, (OLD.created_at AT TIME ZONE 'UTC')::date, OLD.channel, OLD.chatbot_id,
         -1,
         -(OLD.email IS NOT NULL)::int,
         -(OLD.phone IS NOT NULL)::int,
         -(OLD.email IS NOT NULL OR OLD.phone IS NOT NULL)::int,
         -(OLD.name IS NOT NULL AND OLD.email IS NOT NULL AND OLD.phone IS NOT NULL)::int,
         -(OLD.sessions_count > 1)::int,
         -OLD.sessions_count),
        (NEW.account_id, (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.channel, NEW.chatbot_id,
         1,
         (NEW.email IS NOT NULL)::int,
         (NEW.phone IS NOT NULL)::int,
         (NEW.email IS NOT NULL OR NEW.phone IS NOT NULL)::int,
         (NEW.name IS NOT NULL AND NEW.email IS NOT NULL AND NEW.phone IS NOT NULL)::int,
         (NEW.sessions_count > 1)::int,
         NEW.sessions_count);
    RETURN NULL;
END
$$;

-- Most updates (last_seen_at, payload, a new value of a field already set) change no figure;
-- the WHEN clause keeps them from calling the function at all.
CREATE TRIGGER contacts_stats_update AFTER UPDATE ON contacts
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
    EXECUTE FUNCTION contact_stats_updated();

-- Deletions come in bulk (bulk delete, retention, erasure): one statement trigger appends one
-- row per group of the deleted contacts.
CREATE FUNCTION contact_stats_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_stats_deltas
    SELECT account_id, (created_at AT TIME ZONE 'UTC')::date, channel, chatbot_id,
        -count(*),
        -count(email),
        -count(phone),
        -count(*) FILTER (WHERE email IS NOT NULL OR phone IS NOT NULL),
        -count(*) FILTER (WHERE name IS NOT NULL AND email IS NOT NULL AND phone IS NOT NULL),
        -count(*) FILTER (WHERE sessions_count > 1),
        -sum(sessions_count)
    FROM gone
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_stats_delete AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION contact_stats_deleted();

-- Only the fold writes rollups now, as writer 0: merge the per-connection rows that the row
-- triggers of 000005 wrote, so that reads sum one row per group.
WITH old AS (DELETE FROM contact_daily_stats WHERE writer <> 0 RETURNING *)
INSERT INTO contact_daily_stats AS s (account_id, day, channel, chatbot_id, writer, total,
    with_email, with_phone, with_email_or_phone, complete, returning_contacts, sessions)
SELECT account_id, day, channel, chatbot_id, 0, sum(total), sum(with_email), sum(with_phone),
    sum(with_email_or_phone), sum(complete), sum(returning_contacts), sum(sessions)
FROM old GROUP BY 1, 2, 3, 4
ON CONFLICT (account_id, day, channel, chatbot_id, writer) DO UPDATE SET
    total = s.total + EXCLUDED.total,
    with_email = s.with_email + EXCLUDED.with_email,
    with_phone = s.with_phone + EXCLUDED.with_phone,
    with_email_or_phone = s.with_email_or_phone + EXCLUDED.with_email_or_phone,
    complete = s.complete + EXCLUDED.complete,
    returning_contacts = s.returning_contacts + EXCLUDED.returning_contacts,
    sessions = s.sessions + EXCLUDED.sessions;
