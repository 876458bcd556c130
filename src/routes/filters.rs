//! The list filters, shared by list, export (and later stats and bulk delete): query
//! parameters in, a checked `ContactFilter` out.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::repo::list::ContactFilter;
use crate::validate;

/// Filters of the contact list. Lists are comma-separated; time bounds are RFC 3339 (or a
/// `YYYY-MM-DD` date, meaning midnight UTC), `from` inclusive and `to` exclusive.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Case-insensitive substring of name, email or phone (phones are E.164, e.g. `+4477`); an
    /// integer also matches the id. 1–200 characters.
    #[param(schema_with = crate::openapi::fields::search)]
    pub q: Option<String>,
    /// Channels, comma-separated (`whatsapp,telegram`), 1 to 100.
    #[param(schema_with = crate::openapi::fields::channel_list)]
    pub channel: Option<String>,
    /// Chatbot ids, comma-separated, 1 to 100.
    #[param(schema_with = crate::openapi::fields::chatbot_list)]
    pub chatbot_id: Option<String>,
    /// ISO 3166-1 alpha-2 codes, comma-separated, 1 to 100.
    #[param(schema_with = crate::openapi::fields::country_list)]
    pub country_code: Option<String>,
    /// Created at or after.
    #[param(schema_with = created_from_schema)]
    pub created_from: Option<String>,
    /// Created before.
    #[param(schema_with = created_to_schema)]
    pub created_to: Option<String>,
    /// Last seen at or after.
    #[param(schema_with = last_seen_from_schema)]
    pub last_seen_from: Option<String>,
    /// Last seen before.
    #[param(schema_with = last_seen_to_schema)]
    pub last_seen_to: Option<String>,
    /// With (`true`) or without (`false`) an email.
    pub has_email: Option<bool>,
    /// With (`true`) or without (`false`) a phone.
    pub has_phone: Option<bool>,
    /// More than one session (`true`), or at most one (`false`).
    pub returning: Option<bool>,
}

fn created_from_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    crate::openapi::fields::time("Created at or after.")
}

fn created_to_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    crate::openapi::fields::time("Created before.")
}

fn last_seen_from_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    crate::openapi::fields::time("Last seen at or after.")
}

fn last_seen_to_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    crate::openapi::fields::time("Last seen before.")
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter {
        field: field.into(),
        message: message.into(),
    }
}

/// A comma-separated list; each item is checked by `rule` as sent (a rule may trim, as the
/// channel and country rules do: their values hold no space, so trimming cannot name another).
fn list(
    field: &str,
    value: &Option<String>,
    rule: impl Fn(&str) -> Result<String, String>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let items: Result<Vec<String>, ApiError> = v
        .split(',')
        .map(|item| rule(item).map_err(|m| bad(field, format!("`{item}`: {m}"))))
        .collect();
    let items = items?;
    if items.is_empty() || items.len() > 100 {
        return Err(bad(field, "expected 1 to 100 comma-separated values"));
    }
    Ok(Some(items))
}

/// Parses an RFC 3339 timestamp or a `YYYY-MM-DD` date (midnight UTC); the error names `field`.
pub fn time(field: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    // An unencoded `+` of an offset arrives as a space.
    let v = v.trim().replace(' ', "+");
    let t = DateTime::parse_from_rfc3339(&v)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        });
    // chrono's `%Y` takes any signed year; PostgreSQL refuses years before 4713 BC (a 500),
    // and the stats' bucket arithmetic overflows chrono's own range: RFC 3339's years only.
    match t {
        Some(t) if (1..=9999).contains(&t.year()) => Ok(Some(t)),
        _ => Err(bad(
            field,
            "expected an RFC 3339 timestamp or a YYYY-MM-DD date, years 0001 to 9999",
        )),
    }
}

impl FilterParams {
    /// Checks every parameter; the error names the first bad one.
    pub fn to_filter(&self) -> Result<ContactFilter, ApiError> {
        let q = match &self.q {
            None => None,
            Some(q) => {
                // Only spaces are trimmed: the schema refuses every control character, so a
                // tab or newline around the term is an error here too.
                let t = q.trim_matches(' ');
                if t.is_empty() || q.chars().count() > 200 || q.chars().any(char::is_control) {
                    return Err(bad(
                        "q",
                        "must be 1 to 200 characters without control characters",
                    ));
                }
                Some(t.to_string())
            }
        };
        let filter = ContactFilter {
            q,
            channels: list("channel", &self.channel, |c| {
                validate::channel(validate::trim_blank(c))
            })?,
            // Exactly as sent: an id never starts or ends with a space (`validate::chatbot_id`).
            chatbots: list("chatbot_id", &self.chatbot_id, validate::chatbot_id)?,
            country_codes: list("country_code", &self.country_code, |c| {
                validate::country_code(validate::trim_blank(c))?.ok_or_else(|| "empty".to_string())
            })?,
            created_from: time("created_from", &self.created_from)?,
            created_to: time("created_to", &self.created_to)?,
            last_seen_from: time("last_seen_from", &self.last_seen_from)?,
            last_seen_to: time("last_seen_to", &self.last_seen_to)?,
            has_email: self.has_email,
            has_phone: self.has_phone,
            returning: self.returning,
        };
        Ok(filter)
    }
}

/// A stable fingerprint of a filter (FNV-1a over its JSON), bound into cursors so that a cursor
/// is only accepted with the filters it was issued for.
pub fn fingerprint(filter: &ContactFilter) -> String {
    let bytes = serde_json::to_vec(filter).expect("filter serialises");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
