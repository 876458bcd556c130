//! Consent: the current state on the contact and an append-only history.

use diesel::prelude::*;
use serde_json::json;

use crate::models::{ConsentEvent, Contact};
use crate::schema::consent_events::dsl as e;
use crate::schema::contacts::dsl as c;

/// A consent statement as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentInput {
    /// `granted` or `withdrawn`.
    pub status: String,
    /// Where it was given or withdrawn.
    pub source: Option<String>,
    /// Version of the consent text.
    pub text_version: Option<String>,
}

impl ConsentInput {
    /// True when `current` (the contact's `consent`) already says exactly this.
    fn same_as(&self, current: &Option<serde_json::Value>) -> bool {
        let Some(cur) = current else { return false };
        cur.get("status").and_then(|v| v.as_str()) == Some(self.status.as_str())
            && cur.get("source").and_then(|v| v.as_str()) == self.source.as_deref()
            && cur.get("text_version").and_then(|v| v.as_str()) == self.text_version.as_deref()
    }
}

/// Records `input` for `contact` when it changes the current consent: appends to the history,
/// updates the contact (version bumped) and audits the change; call inside a transaction. Returns the updated contact, or `None` when the
/// statement repeats the current consent.
pub fn apply(
    conn: &mut PgConnection,
    contact: &Contact,
    input: &ConsentInput,
    actor: &str,
) -> QueryResult<Option<Contact>> {
    if input.same_as(&contact.consent.as_ref().and_then(|c| c.value().ok())) {
        return Ok(None);
    }
    let event: ConsentEvent = diesel::insert_into(e::consent_events)
        .values((
            e::account_id.eq(contact.account_id),
            e::contact_id.eq(contact.id),
            e::status.eq(&input.status),
            e::source.eq(&input.source),
            e::text_version.eq(&input.text_version),
            e::actor.eq(actor),
        ))
        .returning(ConsentEvent::as_returning())
        .get_result(conn)?;
    let state = json!({
        "status": event.status,
        "source": event.source,
        "text_version": event.text_version,
        "recorded_at": event.recorded_at,
    });
    let updated = diesel::update(c::contacts.find((contact.account_id, contact.id)))
        .set((
            c::consent.eq(Some(state)),
            c::updated_at.eq(diesel::dsl::now),
            c::version.eq(c::version + 1),
        ))
        .returning(Contact::as_returning())
        .get_result(conn)?;
    let mut event = super::audit::Event::new(actor, "contact.updated", Some(contact.id));
    event.changed_fields = vec!["consent"];
    super::audit::record(conn, contact.account_id, &event)?;
    Ok(Some(updated))
}

/// The consent history of these contacts, oldest first.
pub fn history(
    conn: &mut PgConnection,
    account_id: i64,
    ids: &[i64],
) -> QueryResult<Vec<ConsentEvent>> {
    e::consent_events
        .filter(e::account_id.eq(account_id))
        .filter(e::contact_id.eq_any(ids))
        .select(ConsentEvent::as_select())
        .order(e::id)
        .load(conn)
}

/// Moves the history of merged-away contacts to the contact they were merged into (before the
/// sources are deleted, which would take their history with them). Only `contact_id` changes;
/// the trigger refuses any other edit.
pub fn move_history(
    conn: &mut PgConnection,
    account_id: i64,
    from: &[i64],
    to: i64,
) -> QueryResult<usize> {
    diesel::update(
        e::consent_events
            .filter(e::account_id.eq(account_id))
            .filter(e::contact_id.eq_any(from)),
    )
    .set(e::contact_id.eq(to))
    .execute(conn)
}
