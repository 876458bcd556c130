-- Privacy by design: consent history, the audit log, per-account retention.

-- The current consent of a contact ({status, source, text_version, recorded_at}) or null; its
-- history is in consent_events.
ALTER TABLE contacts ADD COLUMN consent jsonb;

-- Every consent change, appended (GDPR art. 7(1): the controller must be able to prove consent).
-- Rows go only with their contact (delete, erasure); they are never updated.
CREATE TABLE consent_events (
    account_id   bigint      NOT NULL,
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    contact_id   bigint      NOT NULL,
    status       text        NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    source       text,
    text_version text,
    actor        text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id),
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts (account_id, id) ON DELETE CASCADE
);
CREATE INDEX consent_events_contact_idx ON consent_events (account_id, contact_id, id);

-- What was recorded never changes. Only contact_id may move: a merge hands the sources'
-- history to the contact they were merged into.
CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.account_id, NEW.id, NEW.status, NEW.source, NEW.text_version, NEW.actor, NEW.recorded_at)
       IS DISTINCT FROM
       (OLD.account_id, OLD.id, OLD.status, OLD.source, OLD.text_version, OLD.actor, OLD.recorded_at)
    THEN
        RAISE EXCEPTION 'consent_events is append-only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();

-- Who did what and when. Field names and counts only, never values. contact_id has no foreign
-- key: the event outlives the contact (an erasure clears it instead, so nothing points at an
-- erased person).
CREATE TABLE audit_events (
    account_id     bigint      NOT NULL,
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,
    action         text        NOT NULL,
    contact_id     bigint,
    changed_fields text[]      NOT NULL DEFAULT '{}',
    details        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX audit_events_contact_idx ON audit_events (account_id, contact_id, id)
    WHERE contact_id IS NOT NULL;

-- Per-account settings; retention_days null means keep forever.
CREATE TABLE account_settings (
    account_id     bigint      PRIMARY KEY CHECK (account_id > 0),
    retention_days integer     CHECK (retention_days IS NULL OR retention_days BETWEEN 1 AND 36500),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
