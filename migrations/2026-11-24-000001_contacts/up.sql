-- Contacts and the chat sessions linked to them. Every key starts with account_id so that each
-- tenant's rows are one index range (and the schema can be distributed by account_id).

-- One sequence for every account: ids are unique across the database, so a leaked id names one
-- row at most, and the upsert can take an id before the contact row exists.
CREATE SEQUENCE contacts_id_seq AS bigint;

CREATE TABLE contacts (
    account_id     bigint      NOT NULL CHECK (account_id > 0),
    id             bigint      NOT NULL DEFAULT nextval('contacts_id_seq'),
    name           text,
    email          text,
    phone          text,
    avatar_url     text,
    country_code   text,
    ip_address     text,
    channel        text        NOT NULL,
    chatbot_id     text        NOT NULL,
    session_id     text,
    payload        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    sessions_count integer     NOT NULL DEFAULT 0 CHECK (sessions_count >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    version        bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (account_id, id),
    CONSTRAINT contacts_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    -- Requests are limited to 16 KiB of compact JSON; merging can grow the stored object, and the
    -- stored text form has spaces, so the hard limit of the row is larger.
    CONSTRAINT contacts_payload_size CHECK (octet_length(payload::text) <= 32768)
);
ALTER SEQUENCE contacts_id_seq OWNED BY contacts.id;

CREATE TABLE contact_sessions (
    account_id    bigint      NOT NULL,
    chatbot_id    text        NOT NULL,
    session_id    text        NOT NULL,
    contact_id    bigint      NOT NULL,
    channel       text        NOT NULL,
    ip_address    text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, chatbot_id, session_id),
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts (account_id, id) ON DELETE CASCADE
);

-- The sessions of one contact, newest first (GET /contacts/{id}/sessions, cascade deletes).
-- It deliberately lacks chatbot_id and session_id: with them it could also answer the upsert's
-- session lookup, and with stale statistics the planner picked it over the primary key and
-- scanned the whole account (seen at 360k sessions).
CREATE INDEX contact_sessions_contact_idx
    ON contact_sessions (account_id, contact_id, last_seen_at);
