//! The audit log: written in the transaction of the change it records, read newest first.

use diesel::prelude::*;
use serde_json::Value;

use crate::models::AuditEvent;
use crate::schema::audit_events::dsl as a;

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// The token's `sub`.
    pub actor: &'a str,
    /// What happened (`contact.updated`, ...).
    pub action: &'static str,
    /// The contact concerned, if one.
    pub contact_id: Option<i64>,
    /// Names of changed fields.
    pub changed_fields: Vec<&'static str>,
    /// Counts and parameters, never personal values.
    pub details: Value,
}

impl<'a> Event<'a> {
    /// An event without fields or details.
    pub fn new(actor: &'a str, action: &'static str, contact_id: Option<i64>) -> Self {
        Self {
            actor,
            action,
            contact_id,
            changed_fields: Vec::new(),
            details: Value::Object(Default::default()),
        }
    }

    /// With these details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Records `event` for the account.
pub fn record(conn: &mut PgConnection, account_id: i64, event: &Event) -> QueryResult<()> {
    let fields: Vec<Option<String>> = event
        .changed_fields
        .iter()
        .map(|f| Some((*f).to_string()))
        .collect();
    diesel::insert_into(a::audit_events)
        .values((
            a::account_id.eq(account_id),
            a::actor.eq(event.actor),
            a::action.eq(event.action),
            a::contact_id.eq(event.contact_id),
            a::changed_fields.eq(fields),
            a::details.eq(&event.details),
        ))
        .execute(conn)?;
    Ok(())
}

/// Filters of the audit listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only events of this contact.
    pub contact_id: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
}

/// A page of events, newest first, with ids below `before`.
pub fn page(
    conn: &mut PgConnection,
    account_id: i64,
    f: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    let mut q = a::audit_events
        .filter(a::account_id.eq(account_id))
        .select(AuditEvent::as_select())
        .order(a::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(id) = f.contact_id {
        q = q.filter(a::contact_id.eq(id));
    }
    if let Some(action) = &f.action {
        q = q.filter(a::action.eq(action.clone()));
    }
    if let Some(actor) = &f.actor {
        q = q.filter(a::actor.eq(actor.clone()));
    }
    if let Some(b) = before {
        q = q.filter(a::id.lt(b));
    }
    q.load(conn)
}

/// Every event about these contacts, oldest first.
pub fn for_contacts(
    conn: &mut PgConnection,
    account_id: i64,
    ids: &[i64],
) -> QueryResult<Vec<AuditEvent>> {
    a::audit_events
        .filter(a::account_id.eq(account_id))
        .filter(a::contact_id.eq_any(ids))
        .select(AuditEvent::as_select())
        .order(a::id)
        .load(conn)
}

/// Unlinks past events from erased contacts: they stay as anonymous facts ("someone's contact
/// was updated by alice"), and nothing in the log points at the erased person any more (a
/// merge event also loses its `source_ids`, the person's other, merged-away contact ids).
pub fn forget_contacts(
    conn: &mut PgConnection,
    account_id: i64,
    ids: &[i64],
) -> QueryResult<usize> {
    diesel::update(
        a::audit_events
            .filter(a::account_id.eq(account_id))
            .filter(a::contact_id.eq_any(ids)),
    )
    .set((
        a::contact_id.eq(None::<i64>),
        a::details.eq(a::details.remove("source_ids")),
    ))
    .execute(conn)
}
