//! Data-subject requests: finding a person's contacts by email or phone, and erasing them.

use diesel::prelude::*;

use super::{audit, list};
use crate::models::Contact;
use crate::schema::contact_merges::dsl as m;
use crate::schema::contacts::dsl as c;

/// How the person is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An email, matched ignoring case.
    Email(String),
    /// An E.164 phone.
    Phone(String),
}

impl Subject {
    /// `email` or `phone`, for the audit details.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Email(_) => "email",
            Subject::Phone(_) => "phone",
        }
    }
}

/// Every contact of the account matching the subject, oldest first, locked when `lock`.
pub fn find(
    conn: &mut PgConnection,
    account_id: i64,
    subject: &Subject,
    lock: bool,
) -> QueryResult<Vec<Contact>> {
    let q = c::contacts
        .filter(c::account_id.eq(account_id))
        .select(Contact::as_select())
        .order(c::id);
    match (subject, lock) {
        // Both sides through the database's `lower()` (as the email index and duplicate
        // detection do): Rust's `to_lowercase` differs from it outside ASCII (final sigma,
        // dotted I), and then a contact would not even be found by its own stored email.
        (Subject::Email(e), false) => q
            .filter(c::email.is_not_null())
            .filter(list::lower(c::email).eq(list::lower(e.as_str())))
            .load(conn),
        (Subject::Email(e), true) => q
            .filter(c::email.is_not_null())
            .filter(list::lower(c::email).eq(list::lower(e.as_str())))
            .for_update()
            .load(conn),
        (Subject::Phone(p), false) => q.filter(c::phone.eq(p)).load(conn),
        (Subject::Phone(p), true) => q.filter(c::phone.eq(p)).for_update().load(conn),
    }
}

/// Deletes the contacts (sessions, consent history and redirects cascade), unlinks their past
/// audit events and those of the contacts merged into them, and records the erasure with its
/// count only. Call inside a transaction.
///
/// The contacts are found first without a lock, then their sessions and they are locked in the
/// house order (`repo::locks`; locking the contacts first would wait for an upsert holding one
/// of their sessions while that upsert waits for the contact), and the match is read again
/// under the locks: a contact whose email or phone changed meanwhile is left alone.
pub fn erase(
    conn: &mut PgConnection,
    account_id: i64,
    subject: &Subject,
    actor: &str,
) -> QueryResult<usize> {
    let candidates: Vec<i64> = find(conn, account_id, subject, false)?
        .iter()
        .map(|c| c.id)
        .collect();
    let locked = super::locks::sessions_then_contacts(conn, account_id, &candidates, &candidates)?;
    let ids: Vec<i64> = find(conn, account_id, subject, false)?
        .iter()
        .map(|c| c.id)
        .filter(|id| locked.contains(id))
        .collect();
    if !ids.is_empty() {
        // The contacts merged into them earlier held the person's data too: their redirects go
        // with the targets (cascade), so their past events must be unlinked as well. Read
        // before the delete takes the redirects along.
        let mut forgotten: Vec<i64> = m::contact_merges
            .filter(m::account_id.eq(account_id))
            .filter(m::target_id.eq_any(&ids))
            .select(m::source_id)
            .load(conn)?;
        forgotten.extend(&ids);
        super::locks::delete_contacts(conn, account_id, &ids)?;
        audit::forget_contacts(conn, account_id, &forgotten)?;
    }
    audit::record(
        conn,
        account_id,
        &audit::Event::new(actor, "privacy.erased", None)
            .details(serde_json::json!({"selector": subject.kind(), "erased": ids.len()})),
    )?;
    Ok(ids.len())
}
