//! Schemas of the request fields whose rules JSON Schema can state (lengths, patterns, formats,
//! enums), used with `schema_with` so the document tells clients (and the contract fuzzer,
//! `scripts/fuzz`) what is accepted. `format: phone` is this API's own: a number that
//! `phone` accepts (E.164, or national with `country_code`). Blank strings (spaces only) of the
//! optional contact fields mean "no value", as the field descriptions say.

use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};

/// Characters that are never accepted in text: C0 and C1 controls (NUL included).
const CONTROLS: &str = "\\x00-\\x1f\\x7f-\\x9f";

fn schema(v: Value) -> RefOr<Schema> {
    RefOr::T(serde_json::from_value(v).expect("a valid schema"))
}

/// The whitespace the service trims from text fields (`validate::trim_blank`), any number of
/// times: patterns allow it around the value, and `maxLength` counts it, as the service does.
const EDGE: &str = "[ \\t\\r\\n]*";

/// `^` EDGE `core` EDGE `$`: a value the service accepts after trimming.
fn padded(core: &str) -> String {
    format!("^{EDGE}{core}{EDGE}$")
}

/// Text of 1 to `max` characters once trimmed, without controls (nor the characters `also`):
/// it starts and ends with a character other than a space, which is why no `maxLength`
/// (that would count the spaces around it, which the service does not).
fn trimmed_text(max: usize, also: &str) -> String {
    let inner = format!("[^{CONTROLS}{also}]");
    let end = format!("[^ {CONTROLS}{also}]");
    padded(&format!("{end}({inner}{{0,{}}}{end})?", max - 2))
}

fn blank() -> Value {
    json!({"type": "string", "pattern": format!("^{EDGE}$")})
}

/// An optional contact field: the value, a blank string (no value) or null.
fn optional(value: Value, description: &str) -> RefOr<Schema> {
    schema(json!({"description": description, "anyOf": [value, blank(), {"type": "null"}]}))
}

/// Every ISO 3166-1 alpha-2 code the service accepts (upper case; lower case is accepted
/// and upper-cased).
pub fn country_codes() -> Vec<&'static str> {
    crate::validate::ISO_3166_ALPHA2.split(' ').collect()
}

/// `name`: at most 200 characters (after trimming), no control characters.
pub fn name() -> RefOr<Schema> {
    optional(
        json!({"type": "string", "pattern": trimmed_text(200, "\\ufdd0-\\ufdef\\ufffe\\uffff")}),
        "Name, trimmed, 1–200 characters without control characters; blank means no value.",
    )
}

/// `email`.
pub fn email() -> RefOr<Schema> {
    optional(
        json!({"type": "string", "format": "email", "maxLength": 254}),
        "Email address, trimmed, at most 254 characters; blank means no value.",
    )
}

/// `phone`.
pub fn phone() -> RefOr<Schema> {
    optional(
        json!({"type": "string", "format": "phone", "maxLength": 64}),
        "Phone number: E.164 (`+447700900123`, or `00` for `+`), or national with \
         `country_code` as the region hint; stored in E.164. Blank means no value.",
    )
}

/// `avatar_url`.
pub fn avatar_url() -> RefOr<Schema> {
    optional(
        json!({"type": "string", "maxLength": 2048,
               "pattern": padded(
                   "[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*\
                    (:[0-9]{1,4})?([/?#][!#-~\\u00a1-\\ud7ff\\ue000-\\ufffd]*)?")}),
        "Absolute `http` or `https` URL with a host name (not an IP address), an optional \
         port, and no spaces, quotes or control characters; at most 2048 characters; never \
         fetched. Blank means no value.",
    )
}

/// `country_code`.
pub fn country_code() -> RefOr<Schema> {
    optional(
        json!({"$ref": "#/components/schemas/CountryCode"}),
        "ISO 3166-1 alpha-2 code (lower case is upper-cased); blank means no value.",
    )
}

/// `ip_address`.
pub fn ip_address() -> RefOr<Schema> {
    optional(
        json!({"anyOf": [{"type": "string", "format": "ipv4"},
                         {"type": "string", "format": "ipv6"}]}),
        "IPv4 or IPv6 address, stored in canonical form; blank means no value.",
    )
}

fn channel_value() -> Value {
    json!({"type": "string", "pattern": padded("[A-Za-z0-9_-]{1,32}")})
}

/// `channel`: a slug.
pub fn channel() -> RefOr<Schema> {
    let mut v = channel_value();
    v["description"] = json!(
        "Channel slug `[a-z0-9_-]{1,32}` (upper case is lowered): `website`, `facebook`, \
         `instagram`, `whatsapp`, `telegram`, `twitter`, `slack`, `discord`, `ios`, \
         `android`, `pwa`, `api`, ..."
    );
    schema(v)
}

fn identifier_value() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 128,
           "pattern": format!("^[^/{CONTROLS}]+$")})
}

/// `chatbot_id` / `session_id`: 1–128 characters, no control characters, no `/`.
pub fn identifier() -> RefOr<Schema> {
    let mut v = identifier_value();
    v["description"] = json!("1–128 characters, no control characters, no `/`.");
    schema(v)
}

/// The characters a `chatbot_id` may not start or end with (`validate::EDGE_SPACES`).
const EDGE_SPACES: &str = " \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// The pattern of one `chatbot_id`: an identifier without `,`, not starting or ending with a space.
fn chatbot_id_pattern() -> String {
    let edge = format!("[^,/{EDGE_SPACES}{CONTROLS}]");
    format!("{edge}([^,/{CONTROLS}]{{0,126}}{edge})?")
}

/// `chatbot_id`: 1–128 characters, no control characters, no `/`, no `,`, no space at either end.
pub fn chatbot_id() -> RefOr<Schema> {
    schema(json!({"type": "string", "minLength": 1, "maxLength": 128,
                  "pattern": format!("^{}$", chatbot_id_pattern()),
                  "description": "1–128 characters, no control characters, no `/`, no `,`, \
                                  not starting or ending with a space (so that the list \
                                  filters can name every chatbot exactly)."}))
}

/// An optional `session_id` (null: none).
pub fn optional_identifier() -> RefOr<Schema> {
    schema(
        json!({"description": "1–128 characters, no control characters, no `/`; null: none.",
                  "anyOf": [identifier_value(), {"type": "null"}]}),
    )
}

/// A short consent text (`source`, `text_version`).
pub fn short_text() -> RefOr<Schema> {
    optional(
        json!({"type": "string", "pattern": trimmed_text(200, "")}),
        "1–200 characters without control characters, trimmed; blank means none.",
    )
}

/// `consent.status`.
pub fn consent_status() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["granted", "withdrawn"]}))
}

/// Pagination cursor (opaque; only `next_cursor` values of the same listing are valid).
pub fn cursor() -> RefOr<Schema> {
    schema(
        json!({"description": "`next_cursor` of the previous page, with the same sort and filters \
                                  (opaque; any other value is a 400).",
                  "type": "string", "minLength": 1, "maxLength": 4096,
                  "pattern": "^[A-Za-z0-9_-]+$"}),
    )
}

/// Sort order of the contact list and export.
pub fn sort() -> RefOr<Schema> {
    schema(
        json!({"description": "Order: `-id` (default), `id`, `created_at`, `-created_at`, \
                                  `last_seen_at`, `-last_seen_at`, `name`, `-name`. Ties are broken by \
                                  id; `name` is case-insensitive with unnamed contacts last, and \
                                  `-name` is its exact reverse.",
                  "type": "string", "default": "-id", "enum": [
        "-id", "id", "created_at", "-created_at", "last_seen_at", "-last_seen_at", "name",
        "-name"]}),
    )
}

/// A time bound: RFC 3339 timestamp or a `YYYY-MM-DD` date (midnight UTC).
pub fn time(description: &str) -> RefOr<Schema> {
    schema(
        json!({"description": format!("{description} RFC 3339 timestamp, or a `YYYY-MM-DD` \
                                          date meaning midnight UTC."),
                  "anyOf": [{"type": "string", "format": "date-time"},
                            {"type": "string", "format": "date"}]}),
    )
}

/// `q`: 1–200 characters, not blank, no control characters.
pub fn search() -> RefOr<Schema> {
    schema(
        json!({"description": "Case-insensitive substring of name, email or phone (phones are \
                                  E.164, e.g. `+4477`); an integer also matches the id. 1–200 \
                                  characters, not blank.",
                  "type": "string", "minLength": 1, "maxLength": 200,
                  "pattern": format!("^[^{CONTROLS}]*[^ {CONTROLS}][^{CONTROLS}]*$")}),
    )
}

fn list_of(description: &str, item: Value) -> RefOr<Schema> {
    schema(
        json!({"description": description, "type": "array", "items": item,
                  "minItems": 1, "maxItems": 100}),
    )
}

/// Comma-separated channels.
pub fn channel_list() -> RefOr<Schema> {
    list_of(
        "Channels, comma-separated (`whatsapp,telegram`), 1 to 100.",
        channel_value(),
    )
}

/// Comma-separated chatbot ids (which therefore cannot hold a comma here).
pub fn chatbot_list() -> RefOr<Schema> {
    list_of(
        "Chatbot ids, comma-separated, 1 to 100, each exactly as written (never trimmed: no \
         chatbot id starts or ends with a space or holds a comma).",
        json!({"type": "string", "pattern": format!("^{}$", chatbot_id_pattern())}),
    )
}

/// Comma-separated country codes.
pub fn country_list() -> RefOr<Schema> {
    list_of(
        "ISO 3166-1 alpha-2 codes, comma-separated, 1 to 100.",
        json!({"$ref": "#/components/schemas/CountryCode"}),
    )
}

/// `payload`: a JSON object of at most 16 KiB (serialised) with no NUL character in any
/// key or string (PostgreSQL cannot store one); null where the field allows it.
pub fn payload() -> RefOr<Schema> {
    schema(json!({
        "description": "JSON object of at most 16 KiB (compact); no key or string may hold \
                        a NUL character (`\\u0000`). The limit is the stored contact's: a write \
                        whose merge with the stored payload would pass it is a 422.",
        "anyOf": [{"$ref": "#/components/schemas/Payload"}, {"type": "null"}]
    }))
}

/// Replaces `schema` (a component) by `allOf: [schema, extra]`.
fn constrain(components: &mut utoipa::openapi::Components, name: &str, extra: Value) {
    let Some(RefOr::T(base)) = components.schemas.get(name) else {
        return;
    };
    let mut base = serde_json::to_value(base).expect("schema serialises");
    let description = base.as_object_mut().and_then(|o| o.remove("description"));
    let example = base.as_object_mut().and_then(|o| o.remove("example"));
    let mut all = json!({"allOf": [base, extra]});
    if let Some(d) = description {
        all["description"] = d;
    }
    if let Some(e) = example {
        all["example"] = e;
    }
    components.schemas.insert(name.to_string(), schema(all));
}

/// A list filter sent in a JSON body: the query parameter's text, a number as its text,
/// null for absent.
fn body_filter() -> Value {
    let channel = "[ \\t]*[A-Za-z0-9_-]{1,32}[ \\t]*";
    let chatbot = format!("[^,/\\s{CONTROLS}]([^,/{CONTROLS}]*[^,/\\s{CONTROLS}])?");
    let country = format!("({})", country_codes().join("|"));
    // A number stands for its text: it can be a channel slug, a chatbot id or a search.
    let list = |item: &str, what: &str, number: Value| {
        json!({"description": format!("{what}, comma-separated, 1 to 100."),
               "anyOf": [{"type": "string", "pattern": format!("^{item}(,{item}){{0,99}}$")},
                         number, {"type": "null"}]})
    };
    let time = json!({"anyOf": [{"type": "string", "format": "date-time"},
                                {"type": "string", "format": "date"}, {"type": "null"}]});
    let flag = json!({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]},
                                {"type": "null"}]});
    let q = json!({"anyOf": [search(), {"type": "number"}, {"type": "null"}]});
    json!({
        "type": "object",
        "description": "The list filters, with the values of the list's query parameters \
                        (lists comma-separated); `{}` matches every contact.",
        "additionalProperties": false,
        "properties": {
            "q": q,
            "channel": list(channel, "Channels", json!({"type": "null"})),
            "chatbot_id": list(&chatbot, "Chatbot ids", json!({"type": "number"})),
            "country_code": list(&country, "Country codes", json!({"type": "null"})),
            "created_from": time, "created_to": time,
            "last_seen_from": time, "last_seen_to": time,
            "has_email": flag, "has_phone": flag, "returning": flag
        }
    })
}

/// The rules a derived component cannot state: "exactly one of" selectors and the shape of
/// the bulk delete's filter.
pub fn refine(components: &mut utoipa::openapi::Components) {
    let no_nul = json!({"type": "string", "pattern": "^[^\\x00]*$"});
    components.schemas.insert(
        "Payload".into(),
        schema(json!({"type": "object", "propertyNames": no_nul,
                      "additionalProperties": {"$ref": "#/components/schemas/PayloadValue"},
                      "description": "Free-form JSON object of the chatbot."})),
    );
    components.schemas.insert(
        "PayloadValue".into(),
        schema(json!({"anyOf": [
            no_nul,
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": {"$ref": "#/components/schemas/PayloadValue"}},
            {"$ref": "#/components/schemas/Payload"}
        ]})),
    );
    components.schemas.insert(
        "CountryCode".into(),
        schema(json!({"type": "string", "enum": country_codes(),
                      "description": "ISO 3166-1 alpha-2 country code."})),
    );
    constrain(
        components,
        "BulkDeleteRequest",
        json!({"oneOf": [
            {"type": "object", "required": ["ids"], "properties": {
                "ids": {"type": "array", "minItems": 1, "maxItems": 1000,
                        "items": {"type": "integer", "format": "int64"}},
                "filter": {"type": "null"}}},
            {"type": "object", "required": ["filter"], "properties": {
                "filter": body_filter(), "ids": {"type": "null"}}}
        ]}),
    );
    constrain(
        components,
        "SubjectRequest",
        json!({"oneOf": [
            {"type": "object", "required": ["email"], "properties": {
                "email": {"type": "string", "format": "email", "maxLength": 254},
                "phone": {"type": "null"}}},
            {"type": "object", "required": ["phone"], "properties": {
                "phone": {"type": "string", "format": "phone", "maxLength": 64},
                "email": {"type": "null"},
                "country_code": serde_json::to_value(country_code()).expect("schema serialises")}}
        ]}),
    );
}
