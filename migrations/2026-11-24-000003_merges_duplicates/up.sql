-- Merged-away contacts answer 410 with a link to the contact they were merged into.
-- A redirect always names a live contact: merging a target re-points the redirects to it,
-- and deleting a contact removes the redirects to it.
CREATE TABLE contact_merges (
    account_id bigint      NOT NULL,
    source_id  bigint      NOT NULL,
    target_id  bigint      NOT NULL,
    merged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, source_id),
    FOREIGN KEY (account_id, target_id) REFERENCES contacts (account_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_merges_target_idx ON contact_merges (account_id, target_id);

-- Duplicate detection (and, later, finding a person by email or phone): contacts sharing a
-- case-insensitive email or an E.164 phone are neighbours in these indexes.
CREATE INDEX contacts_email_idx ON contacts (account_id, lower(email), id) WHERE email IS NOT NULL;
CREATE INDEX contacts_phone_idx ON contacts (account_id, phone, id) WHERE phone IS NOT NULL;
