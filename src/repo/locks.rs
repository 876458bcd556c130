//! The one lock order of every write path, and the helper that deleting paths use to follow it.
//!
//! A transaction that writes contacts takes its row locks in this order, and each step in one
//! statement, sorted:
//!
//! 1. **Sessions** (`contact_sessions`), by key `(chatbot_id, session_id)`. Inserting a new
//!    session counts as locking its key (a concurrent insert of the same key waits for this
//!    transaction), so existing and new sessions are taken in ONE pass in key order: the batch
//!    does it with `INSERT ... ON CONFLICT DO UPDATE ... WHERE false` (`batch::CLAIM_SQL`), the
//!    single upsert has one session only.
//! 2. **Contacts**, by id, in a later statement than the sessions: its snapshot then sees the
//!    contact of a session that another transaction created while this one waited for it.
//! 3. Rows that belong to a locked contact (`contact_activity`, `consent_events`,
//!    `contact_merges`, the audit of it) and rows this transaction creates. Nobody takes these
//!    without holding the contact first, and `contact_stats_deltas` / `audit_events` are only
//!    appended to.
//!
//! Why sessions before contacts: the upsert reaches a contact through its session, so it holds
//! the session when it needs the contact. A delete reaches the sessions through the contact
//! (`ON DELETE CASCADE`), which is the reverse order: every deleting path (delete, bulk delete,
//! erasure, retention, and merge, which deletes its sources) therefore locks the contacts'
//! sessions first, with [`sessions_then_contacts`], and only then the contacts. Why one sorted
//! pass per step: a lock taken after others in a later statement (a second round of a batch
//! locking a session that someone else created in the meantime) is out of order, and that is
//! what deadlocked overlapping batches (issue #14).
//!
//! PATCH, consent changes and the single upsert's contact update hold one contact and wait for
//! nothing after it, so they cannot close a cycle.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::fragments::{Bind, Prepared};

// The statements probe by key, one `LATERAL` subquery per id or session that the planner cannot
// flatten (`OFFSET 0`, `FOR UPDATE`): `= ANY ($array)` or a join let a generic plan of a
// never-analysed account scan the whole account (see `batch::BATCH_UPSERT_SQL`). The locks are
// taken in the order of the sorted outer rows.

/// Locks the sessions of the contacts of relation `$contacts` (a column `id`), in key order,
/// with the locking clause `$lock`; one row per locked session, its contact as `id`. Shared by
/// the deleting paths (`LOCK_SESSIONS_SQL`) and retention (`SKIP LOCKED`).
macro_rules! lock_sessions_sql {
    ($contacts:literal, $lock:literal) => {
        concat!(
            r#"
SELECT l.contact_id AS id
FROM (
    SELECT s.chatbot_id, s.session_id
    FROM "#,
            $contacts,
            r#" k
    CROSS JOIN LATERAL (
        SELECT s.chatbot_id, s.session_id FROM contact_sessions s
        WHERE s.account_id = (SELECT $1::bigint) AND s.contact_id = k.id
        OFFSET 0
    ) s
    ORDER BY s.chatbot_id, s.session_id
) k
CROSS JOIN LATERAL (
    SELECT s.contact_id FROM contact_sessions s
    WHERE s.account_id = (SELECT $1::bigint) AND s.chatbot_id = k.chatbot_id AND s.session_id = k.session_id
    "#,
            $lock,
            r#"
) l
"#
        )
    };
}
pub(crate) use lock_sessions_sql;

/// Locks the sessions of the contacts `$2`, in key order; returns each one's contact.
pub const LOCK_SESSIONS_SQL: &str =
    lock_sessions_sql!("(SELECT DISTINCT unnest($2::bigint[]) AS id)", "FOR UPDATE");

/// Locks the contacts `$2` that exist, in id order; returns their ids.
pub const LOCK_CONTACTS_SQL: &str = r#"
SELECT t.id
FROM (SELECT DISTINCT unnest($2::bigint[]) AS id ORDER BY 1) k
CROSS JOIN LATERAL (
    SELECT t.id FROM contacts t
    WHERE t.account_id = (SELECT $1::bigint) AND t.id = k.id
    FOR UPDATE
) t
"#;

/// How many sessions the contacts `$2` have now.
pub const COUNT_SESSIONS_SQL: &str = r#"
SELECT count(*) AS id
FROM (SELECT DISTINCT unnest($2::bigint[]) AS id) k
CROSS JOIN LATERAL (
    SELECT 1 FROM contact_sessions s
    WHERE s.account_id = (SELECT $1::bigint) AND s.contact_id = k.id
    OFFSET 0
) s
"#;

/// Deletes the contacts `$2` (sessions, activity, consent history and redirects cascade);
/// call with them locked (`sessions_then_contacts`). The rows are named by their `ctid`, read
/// by key probes in this statement, so the only plan is a TID scan: with `account_id = $1` on
/// the target, a generic plan scanned the account (a bitmap on any index that starts with it).
/// The probes filter on the account, so no other tenant's row can be named.
pub const DELETE_CONTACTS_SQL: &str = r#"
DELETE FROM contacts t
WHERE t.ctid = ANY (ARRAY(
    SELECT c.ctid
    FROM (SELECT DISTINCT unnest($2::bigint[]) AS id) k
    CROSS JOIN LATERAL (
        SELECT c.ctid FROM contacts c
        WHERE c.account_id = (SELECT $1::bigint) AND c.id = k.id
        OFFSET 0
    ) c
))
"#;

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

fn ids(
    conn: &mut PgConnection,
    sql: &'static str,
    account_id: i64,
    of: &[i64],
) -> QueryResult<Vec<i64>> {
    let rows: Vec<Id> = Prepared {
        sql,
        binds: &[Bind::Int8(account_id), Bind::Int8Array(of)],
    }
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Deletes the contacts `ids` of the account (locked by [`sessions_then_contacts`] before);
/// returns how many.
pub fn delete_contacts(
    conn: &mut PgConnection,
    account_id: i64,
    ids: &[i64],
) -> QueryResult<usize> {
    Prepared {
        sql: DELETE_CONTACTS_SQL,
        binds: &[Bind::Int8(account_id), Bind::Int8Array(ids)],
    }
    .execute(conn)
}

/// Locks, in the house order, the sessions of `session_owners` and then the contacts
/// `contacts`; returns the ids of `contacts` that exist (locked). Call inside a transaction.
///
/// A merge that moved a session into one of these contacts between the two statements leaves
/// a session that the first statement could not see; the cascade of a delete would then lock it
/// last, out of order. The count is therefore checked once the contacts are held (nothing can be
/// moved into a locked contact), and on a difference the locks are given back (rollback to a
/// savepoint) and taken again, a few times at most.
pub fn sessions_then_contacts(
    conn: &mut PgConnection,
    account_id: i64,
    session_owners: &[i64],
    contacts: &[i64],
) -> QueryResult<Vec<i64>> {
    for _ in 0..3 {
        conn.batch_execute("SAVEPOINT lock_order")?;
        let sessions = ids(conn, LOCK_SESSIONS_SQL, account_id, session_owners)?;
        let locked = ids(conn, LOCK_CONTACTS_SQL, account_id, contacts)?;
        let held: Vec<i64> = session_owners
            .iter()
            .copied()
            .filter(|id| locked.contains(id))
            .collect();
        let expected = sessions.iter().filter(|id| held.contains(id)).count() as i64;
        let now = ids(conn, COUNT_SESSIONS_SQL, account_id, &held)?[0];
        if now == expected {
            conn.batch_execute("RELEASE SAVEPOINT lock_order")?;
            return Ok(locked);
        }
        conn.batch_execute("ROLLBACK TO SAVEPOINT lock_order; RELEASE SAVEPOINT lock_order")?;
    }
    // Still racing with merges: go on in the old order; the worst case is a deadlock that
    // PostgreSQL resolves and the caller retries.
    let _ = ids(conn, LOCK_SESSIONS_SQL, account_id, session_owners)?;
    ids(conn, LOCK_CONTACTS_SQL, account_id, contacts)
}
