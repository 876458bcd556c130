DROP INDEX contacts_search_idx;
DROP INDEX contacts_last_seen_idx;
DROP INDEX contacts_created_idx;
DROP INDEX contacts_name_idx;
-- The extensions stay: other objects of the database may use them.
