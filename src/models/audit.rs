//! `audit_events` and `consent_events` rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::schema::{audit_events, consent_events};

/// Who did what to which contact, and when. Field names and counts only, never values.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
#[schema(example = json!({"id": 88, "at": "2026-11-20T17:03:11Z", "actor": "alice", "action": "contact.updated", "contact_id": 1042, "changed_fields": ["email", "phone"], "details": {}}))]
pub struct AuditEvent {
    /// Tenant; never serialised.
    #[serde(skip)]
    #[schema(ignore)]
    pub account_id: i64,
    /// Event id, increasing.
    pub id: i64,
    /// When it happened.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// The token's `sub` (`system:retention` for retention deletes).
    pub actor: String,
    /// `contact.created`, `contact.updated`, `contact.deleted`, `contact.merged`,
    /// `contacts.exported`, `contacts.bulk_deleted`, `contacts.retention_deleted`,
    /// `privacy.accessed`, `privacy.erased`.
    pub action: String,
    /// The contact concerned (null for account-wide actions, and after an erasure).
    pub contact_id: Option<i64>,
    /// Names of the fields a change touched.
    #[schema(value_type = Vec<String>)]
    pub changed_fields: Vec<Option<String>>,
    /// Counts and parameters of the action (`{"deleted": 120}`, `{"source_ids": [..]}`), never
    /// personal values.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// One consent change.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = consent_events, check_for_backend(diesel::pg::Pg))]
pub struct ConsentEvent {
    /// Tenant; never serialised.
    #[serde(skip)]
    #[schema(ignore)]
    pub account_id: i64,
    /// Event id, increasing.
    pub id: i64,
    /// The contact it belongs to.
    pub contact_id: i64,
    /// `granted` or `withdrawn`.
    pub status: String,
    /// Where it was given or withdrawn.
    pub source: Option<String>,
    /// Version of the consent text.
    pub text_version: Option<String>,
    /// The token's `sub` that recorded it.
    pub actor: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}
