DROP TRIGGER contacts_payload_limit_update ON contacts;
DROP TRIGGER contacts_payload_limit_insert ON contacts;
DROP FUNCTION contacts_payload_limit();
DROP FUNCTION contacts_payload_bytes(jsonb);
ALTER TABLE contacts ADD CONSTRAINT contacts_payload_size
    CHECK (octet_length(payload::text) <= 32768);
