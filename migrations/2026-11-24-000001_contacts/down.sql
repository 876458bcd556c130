DROP TABLE contact_sessions;
DROP TABLE contacts;
