DROP TRIGGER contacts_stats_update_rows ON contacts;
DROP TRIGGER contacts_stats_insert_rows ON contacts;
DROP FUNCTION contact_stats_updated_rows();
DROP FUNCTION contact_stats_inserted_rows();
DROP TRIGGER contacts_stats_update ON contacts;
DROP TRIGGER contacts_stats_insert ON contacts;

CREATE TRIGGER contacts_stats_insert AFTER INSERT ON contacts
    FOR EACH ROW EXECUTE FUNCTION contact_stats_inserted();

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
