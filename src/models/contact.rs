//! The `contacts` row; it is also the API's contact representation (`account_id` is never sent).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::JsonText;
use crate::schema::contacts;

/// A contact: one person who talked to the account's chatbots.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Serialize, ToSchema)]
#[diesel(table_name = contacts, check_for_backend(diesel::pg::Pg))]
#[schema(example = json!({
    "id": 1042, "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+447700900123",
    "avatar_url": "https://cdn.example.com/a.png", "country_code": "GB",
    "ip_address": "203.0.113.9", "channel": "whatsapp", "chatbot_id": "support-bot",
    "session_id": "wa-447700900123", "payload": {"plan": "pro"}, "sessions_count": 3,
    "created_at": "2026-11-01T09:00:00Z", "updated_at": "2026-11-20T17:03:11Z",
    "last_seen_at": "2026-11-20T17:03:11Z", "version": 7,
    "consent": {"status": "granted", "source": "whatsapp-optin", "text_version": "2026-01", "recorded_at": "2026-11-20T17:03:11Z"}
}))]
pub struct Contact {
    /// The tenant; taken from the token, never serialised.
    #[serde(skip)]
    #[schema(ignore)]
    pub account_id: i64,
    /// Unique id (int64).
    pub id: i64,
    /// Display name, 1–200 characters.
    pub name: Option<String>,
    /// Email address as given; matching is case-insensitive.
    pub email: Option<String>,
    /// Phone number in E.164.
    pub phone: Option<String>,
    /// Absolute http(s) URL; never fetched by the service.
    pub avatar_url: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country_code: Option<String>,
    /// IPv4 or IPv6 address of the latest session.
    pub ip_address: Option<String>,
    /// Channel of the most recent session.
    pub channel: String,
    /// Chatbot of the most recent session.
    pub chatbot_id: String,
    /// Most recent session (null for a contact created by hand without one).
    pub session_id: Option<String>,
    /// Free-form JSON object of the chatbot (≤ 16 KiB). Returned compact, keys in the order
    /// PostgreSQL's `jsonb` keeps them (shorter keys first); key order carries no meaning.
    #[schema(value_type = Object)]
    pub payload: JsonText,
    /// Number of conversations linked to the contact.
    pub sessions_count: i32,
    /// First interaction.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Latest change of any kind.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    /// Latest interaction.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub last_seen_at: DateTime<Utc>,
    /// Incremented on every change; sent as `ETag: "<version>"`.
    pub version: i64,
    /// The current consent, or null; its history is in the privacy access document.
    #[schema(value_type = Option<ConsentState>)]
    pub consent: Option<JsonText>,
}

/// A contact's current consent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"status": "granted", "source": "whatsapp-optin", "text_version": "2026-01", "recorded_at": "2026-11-20T17:03:11Z"}))]
pub struct ConsentState {
    /// `granted` or `withdrawn`.
    pub status: String,
    /// Where consent was given or withdrawn (free text, e.g. a form or flow id).
    pub source: Option<String>,
    /// Version of the consent text shown.
    pub text_version: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A contact created by hand (`POST /contacts`).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = contacts)]
pub struct NewContact {
    /// Tenant.
    pub account_id: i64,
    /// Display name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Country.
    pub country_code: Option<String>,
    /// IP address.
    pub ip_address: Option<String>,
    /// Channel.
    pub channel: String,
    /// Chatbot.
    pub chatbot_id: String,
    /// Session, when one is linked.
    pub session_id: Option<String>,
    /// Payload object.
    pub payload: serde_json::Value,
    /// 1 when a session is linked, else 0.
    pub sessions_count: i32,
}

/// The editable fields after a merge patch: every value is the new stored value.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = contacts, treat_none_as_null = true)]
pub struct ContactChanges {
    /// Display name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Country.
    pub country_code: Option<String>,
    /// Payload object.
    pub payload: serde_json::Value,
}

impl ContactChanges {
    /// The current values of `c`, the starting point of a patch.
    pub fn from_contact(c: &Contact) -> serde_json::Result<Self> {
        Ok(Self {
            name: c.name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
            avatar_url: c.avatar_url.clone(),
            country_code: c.country_code.clone(),
            payload: c.payload.value()?,
        })
    }

    /// The names of the fields that applying `self` to `c` would change.
    pub fn changed_fields(&self, c: &Contact) -> Vec<&'static str> {
        [
            ("name", self.name != c.name),
            ("email", self.email != c.email),
            ("phone", self.phone != c.phone),
            ("avatar_url", self.avatar_url != c.avatar_url),
            ("country_code", self.country_code != c.country_code),
            (
                "payload",
                c.payload.value().ok().as_ref() != Some(&self.payload),
            ),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}
