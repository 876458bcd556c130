DROP INDEX contacts_phone_idx;
DROP INDEX contacts_email_idx;
DROP TABLE contact_merges;
