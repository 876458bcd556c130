//! The `contact_sessions` row: one conversation of a chatbot, linked to its contact.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::schema::contact_sessions;

/// One conversation linked to a contact.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = contact_sessions, check_for_backend(diesel::pg::Pg))]
#[schema(example = json!({
    "chatbot_id": "support-bot", "session_id": "wa-447700900123", "channel": "whatsapp",
    "ip_address": "203.0.113.9", "first_seen_at": "2026-11-01T09:00:00Z",
    "last_seen_at": "2026-11-20T17:03:11Z"
}))]
pub struct ContactSession {
    /// Tenant; never serialised.
    #[serde(skip)]
    #[schema(ignore)]
    pub account_id: i64,
    /// The chatbot that held the conversation.
    pub chatbot_id: String,
    /// The chatbot's session id.
    pub session_id: String,
    /// The contact the session belongs to; never serialised (it is in the URL).
    #[serde(skip)]
    #[schema(ignore)]
    pub contact_id: i64,
    /// Channel of the latest interaction in this session.
    pub channel: String,
    /// IP address of the latest interaction, when known.
    pub ip_address: Option<String>,
    /// First interaction of the session.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub first_seen_at: DateTime<Utc>,
    /// Latest interaction of the session.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub last_seen_at: DateTime<Utc>,
}
