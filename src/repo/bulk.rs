//! Deleting many contacts: by id (one statement) or by list filter, in bounded batches so no
//! transaction holds many row locks or runs long.

use diesel::prelude::*;

use super::list::{filtered, ContactFilter};
use crate::schema::contacts::dsl as c;

/// Rows deleted per transaction when deleting by filter.
pub const BATCH: i64 = 1000;

/// How many of `ids` exist in the account.
pub fn count_ids(conn: &mut PgConnection, account_id: i64, ids: &[i64]) -> QueryResult<i64> {
    c::contacts
        .filter(c::account_id.eq(account_id))
        .filter(c::id.eq_any(ids))
        .count()
        .get_result(conn)
}

/// Deletes those of `ids` that exist in the account (sessions cascade) and audits the count, in
/// one transaction; returns how many. Their sessions are locked first (`repo::locks`).
pub fn delete_ids(
    conn: &mut PgConnection,
    account_id: i64,
    ids: &[i64],
    actor: &str,
) -> QueryResult<i64> {
    conn.transaction(|conn| {
        super::locks::sessions_then_contacts(conn, account_id, ids, ids)?;
        delete_locked(conn, account_id, ids, actor)
    })
}

/// Deletes `ids`, whose rows this transaction holds, and audits the count.
fn delete_locked(
    conn: &mut PgConnection,
    account_id: i64,
    ids: &[i64],
    actor: &str,
) -> QueryResult<i64> {
    let n = super::locks::delete_contacts(conn, account_id, ids)? as i64;
    if n > 0 {
        super::audit::record(
            conn,
            account_id,
            &super::audit::Event::new(actor, "contacts.bulk_deleted", None)
                .details(serde_json::json!({"deleted": n})),
        )?;
    }
    Ok(n)
}

/// Deletes one batch of contacts matching `filter`: returns how many matched the batch (0 when
/// none is left) and how many this call deleted (fewer if another request deleted some first).
pub fn delete_filtered_batch(
    conn: &mut PgConnection,
    account_id: i64,
    filter: &ContactFilter,
    actor: &str,
) -> QueryResult<(usize, i64)> {
    let ids: Vec<i64> = filtered(c::contacts.select(c::id).into_boxed(), account_id, filter)
        .order(c::id)
        .limit(BATCH)
        .load(conn)?;
    if ids.is_empty() {
        return Ok((0, 0));
    }
    // The ids were chosen without locks: an upsert may have moved a contact out of the filter
    // (a newer last_seen_at, another channel) before the locks were granted. Under the locks, a
    // new statement (a fresh snapshot) keeps only the contacts that still match, so an
    // acknowledged write is never deleted by a filter it no longer meets.
    let deleted = conn.transaction(|conn| {
        super::locks::sessions_then_contacts(conn, account_id, &ids, &ids)?;
        let still: Vec<i64> = filtered(c::contacts.select(c::id).into_boxed(), account_id, filter)
            .filter(c::id.eq_any(&ids))
            .load(conn)?;
        delete_locked(conn, account_id, &still, actor)
    })?;
    Ok((ids.len(), deleted))
}
