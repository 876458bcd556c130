-- The payload limit is a property of the stored contact, whatever path writes it (issue #14:
-- two upserts of 16,000 bytes each merged into 32 KB, after which every one-key PATCH was
-- refused). The request rule measures the compact JSON that serde writes; the stored rule
-- measures the same compact form of what PostgreSQL holds: jsonb's text minus the space it
-- writes after each structural `:` and `,` (a key or string may hold ": " itself, hence the
-- walk instead of a replace).
CREATE FUNCTION contacts_payload_bytes(p jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT octet_length(p::text) - coalesce((
    SELECT sum(CASE jsonb_typeof(v)
                   WHEN 'object' THEN 2 * (SELECT count(*) FROM jsonb_object_keys(v)) - 1
                   ELSE jsonb_array_length(v) - 1
               END)
    FROM jsonb_path_query(p, 'strict $.**') AS v
    WHERE jsonb_typeof(v) IN ('object', 'array') AND v <> '{}'::jsonb AND v <> '[]'::jsonb
), 0)::integer
$$;

-- Refuses a payload over 16,384 compact bytes, raised as a check violation of
-- `contacts_payload_size` (the service answers 422 on `payload`). The text length bounds the
-- compact one from above, so the walk runs only for payloads near the limit. An update may keep
-- or shrink a payload that a former version stored over the limit: only growth past it is
-- refused, so such a contact can still be edited down.
CREATE FUNCTION contacts_payload_limit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    size integer;
BEGIN
    IF octet_length(NEW.payload::text) <= 16384 THEN
        RETURN NEW;
    END IF;
    size := contacts_payload_bytes(NEW.payload);
    IF size > 16384 AND (TG_OP = 'INSERT' OR size > contacts_payload_bytes(OLD.payload)) THEN
        RAISE EXCEPTION 'the stored payload would serialise to % bytes, more than 16384', size
            USING ERRCODE = 'check_violation', CONSTRAINT = 'contacts_payload_size',
                  TABLE = 'contacts';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER contacts_payload_limit_insert BEFORE INSERT ON contacts
    FOR EACH ROW WHEN (octet_length(NEW.payload::text) > 16384)
    EXECUTE FUNCTION contacts_payload_limit();
-- `IS DISTINCT FROM` compares the binary jsonb: updates that leave the payload alone (most
-- interactions) skip the function altogether.
CREATE TRIGGER contacts_payload_limit_update BEFORE UPDATE OF payload ON contacts
    FOR EACH ROW WHEN (NEW.payload IS DISTINCT FROM OLD.payload)
    EXECUTE FUNCTION contacts_payload_limit();

-- The former bound (32 KB of jsonb text) is replaced by the trigger's.
ALTER TABLE contacts DROP CONSTRAINT contacts_payload_size;
