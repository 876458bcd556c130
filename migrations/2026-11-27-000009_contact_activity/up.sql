-- A session upsert of a returning visitor (the hot path) changes `last_seen_at`, and while
-- `contacts` had an index on it, every such upsert was a non-HOT update: a new row version
-- written to a new place and new entries in all seven indexes of `contacts`, the trigram index
-- (~50 entries per row) included. The order "last seen" now lives in `contact_activity`, a
-- narrow copy of (account, contact, last_seen_at) kept by triggers in the same transaction, and
-- `contacts` has no index on a column that an interaction changes: the upsert becomes a HOT
-- update (one heap page, no index entries), and only the narrow table's two indexes take an
-- entry. `contacts.last_seen_at` stays the truth that is read and returned; this table is its
-- index.
--
-- Measured with 1M contacts (pgbench -M prepared of the service's repeat-session upsert, 16/32
-- clients, 10 s after VACUUM + CHECKPOINT, 2026-11-27): 2,389/2,557 tps, p99 15.6/29.0 ms,
-- 2.3-2.6 kB of WAL per upsert -> 3,672/3,691 tps, p99 9.9/17.8 ms, 0.8 kB; through the API
-- (group commit): 2,951/3,759 req/s, p99 21.6/27.5 ms -> 3,840/5,429 req/s, p99 8.7/11.5 ms.
CREATE TABLE contact_activity (
    account_id   bigint      NOT NULL,
    contact_id   bigint      NOT NULL,
    last_seen_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, contact_id),
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts (account_id, id) ON DELETE CASCADE
);
INSERT INTO contact_activity SELECT account_id, id, last_seen_at FROM contacts;
-- The keyset index of `sort=last_seen_at` / `-last_seen_at`, of `last_seen_from/to`, and of
-- retention (oldest first).
CREATE INDEX contact_activity_last_seen_idx
    ON contact_activity (account_id, last_seen_at, contact_id);
DROP INDEX contacts_last_seen_idx;

CREATE FUNCTION contact_activity_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_activity VALUES (NEW.account_id, NEW.id, NEW.last_seen_at);
    RETURN NULL;
END
$$;

-- Row by row, except where a transaction counts by statement (large batches, the seed's COPY:
-- migration 000007's setting): then one INSERT per statement from its transition table.
CREATE TRIGGER contacts_activity_insert AFTER INSERT ON contacts
    FOR EACH ROW
    WHEN (current_setting('contacts.stats_by_statement', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION contact_activity_inserted();

CREATE FUNCTION contact_activity_inserted_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_activity SELECT account_id, id, last_seen_at FROM added;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_activity_insert_rows AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT
    WHEN (current_setting('contacts.stats_by_statement', true) = 'on')
    EXECUTE FUNCTION contact_activity_inserted_rows();

CREATE FUNCTION contact_activity_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE contact_activity SET last_seen_at = NEW.last_seen_at
    WHERE account_id = NEW.account_id AND contact_id = NEW.id;
    RETURN NULL;
END
$$;

-- (A contact's key never changes: nothing updates account_id or id.)
CREATE TRIGGER contacts_activity_update AFTER UPDATE OF last_seen_at ON contacts
    FOR EACH ROW
    WHEN (OLD.last_seen_at IS DISTINCT FROM NEW.last_seen_at)
    EXECUTE FUNCTION contact_activity_updated();

-- The same for the sessions: last_seen_at in this index made every repeat session a non-HOT
-- update too. A contact's sessions page now sorts that contact's sessions (a handful, as a rule)
-- instead of reading them in order. pgbench as above (an experiment without the trigram index):
-- neither update HOT 2,692/2,760 tps, the sessions' 2,887/3,069, both 3,742/3,848.
DROP INDEX contact_sessions_contact_idx;
CREATE INDEX contact_sessions_contact_idx ON contact_sessions (account_id, contact_id);
