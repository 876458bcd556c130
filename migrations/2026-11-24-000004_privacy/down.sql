DROP TABLE account_settings;
DROP TABLE audit_events;
DROP TABLE consent_events;
DROP FUNCTION consent_events_append_only();
ALTER TABLE contacts DROP COLUMN consent;
