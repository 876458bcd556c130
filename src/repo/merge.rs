//! Merging contacts: one transaction moves the sources' sessions to the target, fills the
//! target's empty fields, merges payloads, sums counts, records redirects (410 Gone with a
//! canonical link) and removes the sources.

use diesel::prelude::*;
use serde_json::{Map, Value};

use crate::models::{Contact, JsonText};
use crate::schema::contact_merges::dsl as m;
use crate::schema::contact_sessions::dsl as s;
use crate::schema::contacts::dsl as c;

/// Why a merge was refused; nothing changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The target does not exist in the account.
    TargetNotFound,
    /// The target was merged into this contact.
    TargetMerged(i64),
    /// These sources do not exist in the account (merged-away ids included).
    SourcesNotFound(Vec<i64>),
    /// The caller's precondition refused the target at this version.
    Precondition(i64),
}

/// Where a merged-away contact went, if it was merged.
pub fn redirect(conn: &mut PgConnection, account_id: i64, id: i64) -> QueryResult<Option<i64>> {
    m::contact_merges
        .find((account_id, id))
        .select(m::target_id)
        .first(conn)
        .optional()
}

/// The target with every field filled and combined from `sources` (API.md semantics); an error
/// when a stored payload cannot be parsed (its keys would be lost).
fn combine(target: &Contact, sources: &[Contact]) -> serde_json::Result<Contact> {
    let mut out = target.clone();
    // Newest first: the most recently seen source fills an empty field first.
    let mut newest: Vec<&Contact> = sources.iter().collect();
    newest.sort_by_key(|s| std::cmp::Reverse((s.last_seen_at, s.id)));
    for s in &newest {
        let fill = |slot: &mut Option<String>, v: &Option<String>| {
            if slot.is_none() {
                slot.clone_from(v);
            }
        };
        fill(&mut out.name, &s.name);
        fill(&mut out.email, &s.email);
        fill(&mut out.phone, &s.phone);
        fill(&mut out.avatar_url, &s.avatar_url);
        fill(&mut out.country_code, &s.country_code);
        fill(&mut out.ip_address, &s.ip_address);
    }
    // Payload: sources oldest to newest (newer wins), then the target on top (target wins).
    let mut payload = Map::new();
    for s in newest
        .iter()
        .rev()
        .map(|s| &s.payload)
        .chain([&target.payload])
    {
        if let Value::Object(obj) = s.value()? {
            payload.extend(obj);
        }
    }
    out.payload = JsonText::from_value(&Value::Object(payload));
    out.sessions_count = std::iter::once(target)
        .chain(sources)
        .map(|c| c.sessions_count)
        .sum();
    out.created_at = std::iter::once(target)
        .chain(sources)
        .map(|c| c.created_at)
        .min()
        .expect("target");
    // The most recent session's channel, chatbot and session id come with the latest contact.
    let latest = std::iter::once(target)
        .chain(sources)
        .max_by_key(|c| (c.last_seen_at, c.id))
        .expect("target");
    // The consent recorded last wins (its history moves to the target with the sessions).
    let recorded_at = |c: &Contact| {
        c.consent
            .as_ref()
            .and_then(|c| c.value().ok())
            .as_ref()
            .and_then(|v| v.get("recorded_at"))
            .and_then(|v| v.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    if let Some(newest_consent) = std::iter::once(target)
        .chain(sources)
        .filter(|c| c.consent.is_some())
        .max_by_key(|c| recorded_at(c))
    {
        out.consent.clone_from(&newest_consent.consent);
    }
    out.last_seen_at = latest.last_seen_at;
    if latest.id != target.id {
        out.channel.clone_from(&latest.channel);
        out.chatbot_id.clone_from(&latest.chatbot_id);
        out.session_id.clone_from(&latest.session_id);
    }
    Ok(out)
}

/// Merges `sources` into `target`; the caller runs it in a transaction (and retries it on a
/// deadlock). The sources' sessions, then the contacts, are locked in the house order
/// (`repo::locks`): the session upsert locks its session row, then its contact, and taking the
/// contacts first here would deadlock with it.
pub fn merge(
    conn: &mut PgConnection,
    account_id: i64,
    target_id: i64,
    source_ids: &[i64],
    actor: &str,
    allows: impl Fn(i64) -> bool,
) -> QueryResult<Result<Contact, Refused>> {
    let mut ids: Vec<i64> = source_ids.to_vec();
    ids.push(target_id);
    let held = super::locks::sessions_then_contacts(conn, account_id, source_ids, &ids)?;
    // Held already: read one by one, by primary key (`= ANY` could plan a scan of the account).
    let mut locked: Vec<Contact> = Vec::with_capacity(held.len());
    for id in held {
        locked.extend(super::contacts::find(conn, account_id, id)?);
    }
    let Some(target) = locked.iter().find(|x| x.id == target_id).cloned() else {
        return Ok(Err(match redirect(conn, account_id, target_id)? {
            Some(t) => Refused::TargetMerged(t),
            None => Refused::TargetNotFound,
        }));
    };
    if !allows(target.version) {
        return Ok(Err(Refused::Precondition(target.version)));
    }
    let missing: Vec<i64> = source_ids
        .iter()
        .copied()
        .filter(|id| !locked.iter().any(|x| x.id == *id))
        .collect();
    if !missing.is_empty() {
        // A source already merged into this very target is what the request asks for: a
        // retried merge (its first answer lost on the way, say) is answered as done, not 422.
        let mut gone = Vec::new();
        for id in &missing {
            if redirect(conn, account_id, *id)? != Some(target_id) {
                gone.push(*id);
            }
        }
        if !gone.is_empty() {
            return Ok(Err(Refused::SourcesNotFound(gone)));
        }
        let rest: Vec<i64> = source_ids
            .iter()
            .copied()
            .filter(|id| !missing.contains(id))
            .collect();
        if rest.is_empty() {
            return Ok(Ok(target));
        }
        return merge(conn, account_id, target_id, &rest, actor, allows);
    }
    let sources: Vec<Contact> = locked.into_iter().filter(|x| x.id != target_id).collect();
    let merged = combine(&target, &sources)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;

    diesel::update(
        s::contact_sessions
            .filter(s::account_id.eq(account_id))
            .filter(s::contact_id.eq_any(source_ids)),
    )
    .set(s::contact_id.eq(target_id))
    .execute(conn)?;
    // Redirects to a source now lead to the target; then each source redirects there too.
    diesel::update(
        m::contact_merges
            .filter(m::account_id.eq(account_id))
            .filter(m::target_id.eq_any(source_ids)),
    )
    .set(m::target_id.eq(target_id))
    .execute(conn)?;
    let redirects: Vec<_> = source_ids
        .iter()
        .map(|sid| {
            (
                m::account_id.eq(account_id),
                m::source_id.eq(*sid),
                m::target_id.eq(target_id),
            )
        })
        .collect();
    // Before the sources go: deleting them would take their consent history along.
    super::consent::move_history(conn, account_id, source_ids, target_id)?;
    super::locks::delete_contacts(conn, account_id, source_ids)?;
    diesel::insert_into(m::contact_merges)
        .values(&redirects)
        .execute(conn)?;
    let updated = diesel::update(c::contacts.find((account_id, target_id)))
        .set((
            c::name.eq(&merged.name),
            c::email.eq(&merged.email),
            c::phone.eq(&merged.phone),
            c::avatar_url.eq(&merged.avatar_url),
            c::country_code.eq(&merged.country_code),
            c::ip_address.eq(&merged.ip_address),
            c::channel.eq(&merged.channel),
            c::chatbot_id.eq(&merged.chatbot_id),
            c::session_id.eq(&merged.session_id),
            c::payload.eq(&merged.payload),
            c::sessions_count.eq(merged.sessions_count),
            c::created_at.eq(merged.created_at),
            c::last_seen_at.eq(merged.last_seen_at),
            c::consent.eq(&merged.consent),
            c::updated_at.eq(diesel::dsl::now),
            // Past every version a source had: the sources' sessions now lead here, and an
            // `If-Match` that a client took from a source (through one of those sessions) must
            // not match the target by accident of equal counters.
            c::version.eq(sources
                .iter()
                .map(|x| x.version)
                .fold(target.version, i64::max)
                + 1),
        ))
        .returning(Contact::as_returning())
        .get_result(conn)?;
    super::audit::record(
        conn,
        account_id,
        &super::audit::Event::new(actor, "contact.merged", Some(target_id))
            .details(serde_json::json!({"source_ids": source_ids})),
    )?;
    Ok(Ok(updated))
}
