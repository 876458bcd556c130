-- The list filtered by one channel (the dashboard's most used filter) walks this index in id
-- order instead of the primary key's whole account: on 1M contacts, a page of WhatsApp contacts
-- created in a 90-day window with an email read 2,935 rows for 51 through the primary key; with
-- this index ~450, and pgbench of the page went from 4,344 to 9,306 tps (16 clients).
-- `channel` changes only when a contact's latest session comes through another channel, so the
-- repeat-session upsert stays a HOT update (migration 000009). CONCURRENTLY: writes go on while
-- it is built (metadata.toml: outside a transaction), as on any large installation.
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_channel_idx ON contacts (account_id, channel, id);
