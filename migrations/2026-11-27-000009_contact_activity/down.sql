DROP INDEX contact_sessions_contact_idx;
CREATE INDEX contact_sessions_contact_idx
    ON contact_sessions (account_id, contact_id, last_seen_at);
DROP TRIGGER contacts_activity_update ON contacts;
DROP TRIGGER contacts_activity_insert_rows ON contacts;
DROP TRIGGER contacts_activity_insert ON contacts;
DROP FUNCTION contact_activity_updated();
DROP FUNCTION contact_activity_inserted_rows();
DROP FUNCTION contact_activity_inserted();
CREATE INDEX contacts_last_seen_idx ON contacts (account_id, last_seen_at, id);
DROP TABLE contact_activity;
