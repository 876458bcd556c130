//! Retention: per-account settings and the deletion of contacts not seen for longer.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer};

use super::audit;
use crate::schema::account_settings::dsl as s;

/// Contacts deleted per transaction.
pub const BATCH: i64 = 1000;

/// The account's retention in days (`None`: keep forever).
pub fn get(conn: &mut PgConnection, account_id: i64) -> QueryResult<Option<i32>> {
    Ok(s::account_settings
        .find(account_id)
        .select(s::retention_days)
        .first::<Option<i32>>(conn)
        .optional()?
        .flatten())
}

/// Sets the account's retention.
pub fn set(conn: &mut PgConnection, account_id: i64, days: Option<i32>) -> QueryResult<()> {
    diesel::insert_into(s::account_settings)
        .values((s::account_id.eq(account_id), s::retention_days.eq(days)))
        .on_conflict(s::account_id)
        .do_update()
        .set((
            s::retention_days.eq(days),
            s::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Policy {
    #[diesel(sql_type = BigInt)]
    account_id: i64,
    #[diesel(sql_type = Integer)]
    retention_days: i32,
}

/// Claims the sessions of one batch of expired contacts of `account_id`, oldest first through
/// the activity index (`contacts` has no index on last_seen_at: migration 000009), in key order
/// and `SKIP LOCKED`: the lock order of every write path is sessions, then contacts
/// (`repo::locks`), and the delete's cascade would otherwise take the sessions after the
/// contact, against an upsert that holds a session and waits for its contact (issue #14).
/// Returns each contact whose sessions were claimed, with how many of them.
const CLAIM_SQL: &str = concat!(
    r#"
WITH candidates AS (
    SELECT a.contact_id AS id FROM contact_activity a
    WHERE a.account_id = $1 AND a.last_seen_at < now() - make_interval(days => $2)
    ORDER BY a.last_seen_at, a.contact_id
    LIMIT $3
)
SELECT id, count(*) AS n FROM ("#,
    super::locks::lock_sessions_sql!("candidates", "FOR UPDATE SKIP LOCKED"),
    r#") claimed
GROUP BY id
"#
);

/// Locks the expired contacts all of whose sessions were claimed (and those without a session,
/// created by hand), `SKIP LOCKED` again: several server processes work at once, each takes
/// rows nobody else holds, so none deletes a row twice and each audit row counts exactly the
/// rows its transaction deleted. A contact with more sessions than this transaction holds (one
/// skipped) is left for a later pass.
const LOCK_SQL: &str = r#"
WITH claimed AS (
    SELECT * FROM unnest($4::bigint[], $5::bigint[]) AS k(id, n)
)
SELECT c.id FROM contact_activity a
JOIN contacts c ON c.account_id = a.account_id AND c.id = a.contact_id
LEFT JOIN claimed k ON k.id = c.id
WHERE a.account_id = $1 AND a.last_seen_at < now() - make_interval(days => $2)
  AND c.last_seen_at < now() - make_interval(days => $2)
  AND COALESCE(k.n, 0) = (
      SELECT count(*) FROM contact_sessions s
      WHERE s.account_id = $1 AND s.contact_id = c.id
  )
ORDER BY a.last_seen_at, a.contact_id
LIMIT $3
FOR UPDATE OF c SKIP LOCKED
"#;

/// Deletes the locked contacts `$3`, checked again in this statement's fresh snapshot: a merge
/// that moved a session into one of them before its lock was taken is seen now (the count
/// differs: kept, its cascade would take a session this transaction does not hold), and so is
/// an interaction (kept).
const EXPIRE_SQL: &str = r#"
WITH claimed AS (
    SELECT * FROM unnest($4::bigint[], $5::bigint[]) AS k(id, n)
)
DELETE FROM contacts c
USING unnest($3::bigint[]) AS d(id) LEFT JOIN claimed k ON k.id = d.id
WHERE c.account_id = $1 AND c.id = d.id
  AND c.last_seen_at < now() - make_interval(days => $2)
  AND COALESCE(k.n, 0) = (
      SELECT count(*) FROM contact_sessions s
      WHERE s.account_id = $1 AND s.contact_id = c.id
  )
"#;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// One retention pass over every account with a policy; returns the contacts deleted.
pub fn run_once(conn: &mut PgConnection) -> QueryResult<i64> {
    let policies: Vec<Policy> = diesel::sql_query(
        "SELECT account_id, retention_days FROM account_settings WHERE retention_days IS NOT NULL",
    )
    .load(conn)?;
    let mut total = 0;
    for p in policies {
        loop {
            let n = conn.transaction(|conn| {
                let claimed: Vec<Claimed> = diesel::sql_query(CLAIM_SQL)
                    .bind::<BigInt, _>(p.account_id)
                    .bind::<Integer, _>(p.retention_days)
                    .bind::<BigInt, _>(BATCH)
                    .load(conn)?;
                let (ids, counts): (Vec<i64>, Vec<i64>) =
                    claimed.into_iter().map(|c| (c.id, c.n)).unzip();
                let locked: Vec<Locked> = diesel::sql_query(LOCK_SQL)
                    .bind::<BigInt, _>(p.account_id)
                    .bind::<Integer, _>(p.retention_days)
                    .bind::<BigInt, _>(BATCH)
                    .bind::<Array<BigInt>, _>(&ids)
                    .bind::<Array<BigInt>, _>(&counts)
                    .load(conn)?;
                let locked: Vec<i64> = locked.into_iter().map(|l| l.id).collect();
                let n = diesel::sql_query(EXPIRE_SQL)
                    .bind::<BigInt, _>(p.account_id)
                    .bind::<Integer, _>(p.retention_days)
                    .bind::<Array<BigInt>, _>(&locked)
                    .bind::<Array<BigInt>, _>(&ids)
                    .bind::<Array<BigInt>, _>(&counts)
                    .execute(conn)?;
                if n > 0 {
                    audit::record(
                        conn,
                        p.account_id,
                        &audit::Event::new("system:retention", "contacts.retention_deleted", None)
                            .details(serde_json::json!({
                                "deleted": n,
                                "retention_days": p.retention_days,
                            })),
                    )?;
                }
                Ok::<_, diesel::result::Error>(n as i64)
            })?;
            total += n;
            if n < BATCH {
                break;
            }
        }
    }
    Ok(total)
}
