//! Queries on `contact_sessions`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::models::ContactSession;
use crate::schema::contact_sessions::dsl as s;

/// The contact a session is linked to, if any.
pub fn contact_of(
    conn: &mut PgConnection,
    account_id: i64,
    chatbot_id: &str,
    session_id: &str,
) -> QueryResult<Option<i64>> {
    s::contact_sessions
        .find((account_id, chatbot_id, session_id))
        .select(s::contact_id)
        .first(conn)
        .optional()
}

/// The version of the contact a session is linked to, both rows locked in the upsert's order
/// (the session, then its contact), so that a conditional upsert sees no change before its
/// own; `None` when the session is not linked yet.
pub fn contact_version_for_update(
    conn: &mut PgConnection,
    account_id: i64,
    chatbot_id: &str,
    session_id: &str,
) -> QueryResult<Option<i64>> {
    use crate::schema::contacts::dsl as c;
    let Some(contact_id) = s::contact_sessions
        .find((account_id, chatbot_id, session_id))
        .select(s::contact_id)
        .for_update()
        .first::<i64>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    c::contacts
        .find((account_id, contact_id))
        .select(c::version)
        .for_update()
        .first(conn)
        .optional()
}

/// Position in the newest-first order of a contact's sessions.
pub type SessionKey = (DateTime<Utc>, String, String);

/// A page of a contact's sessions, newest first, after `after` (exclusive).
pub fn list_for_contact(
    conn: &mut PgConnection,
    account_id: i64,
    contact_id: i64,
    after: Option<&SessionKey>,
    limit: i64,
) -> QueryResult<Vec<ContactSession>> {
    let mut q = s::contact_sessions
        .filter(s::account_id.eq(account_id))
        .filter(s::contact_id.eq(contact_id))
        .select(ContactSession::as_select())
        .order((
            s::last_seen_at.desc(),
            s::chatbot_id.desc(),
            s::session_id.desc(),
        ))
        .limit(limit)
        .into_boxed();
    if let Some((seen, bot, sid)) = after {
        q = q.filter(
            s::last_seen_at.lt(*seen).or(s::last_seen_at.eq(*seen).and(
                s::chatbot_id.lt(bot.clone()).or(s::chatbot_id
                    .eq(bot.clone())
                    .and(s::session_id.lt(sid.clone()))),
            )),
        );
    }
    q.load(conn)
}

/// Every session of these contacts, newest first (for the privacy access document).
pub fn for_contacts(
    conn: &mut PgConnection,
    account_id: i64,
    contact_ids: &[i64],
) -> QueryResult<Vec<ContactSession>> {
    s::contact_sessions
        .filter(s::account_id.eq(account_id))
        .filter(s::contact_id.eq_any(contact_ids))
        .select(ContactSession::as_select())
        .order((s::last_seen_at.desc(), s::chatbot_id, s::session_id))
        .load(conn)
}
