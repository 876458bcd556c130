//! Folding the stats deltas into the per-day rollups.
//!
//! Writes to contacts append their effect on the figures to `contact_stats_deltas` (triggers,
//! migration 000006); `fold` moves them into `contact_daily_stats`, one row per account, day,
//! channel and chatbot. Reads add both, so folding changes no figure: it only keeps the deltas
//! few, and the reads fast.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};

/// Advisory lock key of the fold: one process folds at a time, the others skip their turn.
/// (Not the migrations' key: a process migrating would keep every other from folding.)
pub const FOLD_LOCK: i64 = 0x636f_6e74_666f_6c64; // "contfold"

/// Moves every delta visible now into the rollups, in one transaction. The `DELETE` sees only
/// committed deltas, and a delta committed meanwhile stays for the next fold, so none is
/// counted twice or lost. Returns the number of deltas folded (0 when another process holds
/// the fold). Not to be called inside a transaction (it vacuums).
pub fn fold(conn: &mut PgConnection) -> QueryResult<i64> {
    Ok(fold_and_vacuum(conn)?.unwrap_or(0))
}

/// `fold`, saying `None` when another process held the fold.
fn fold_and_vacuum(conn: &mut PgConnection) -> QueryResult<Option<i64>> {
    // Another process folding this time: its turn, its vacuum.
    let Some(folded) = fold_once(conn)? else {
        return Ok(None);
    };
    // The deltas table is a queue: under load it takes and loses tens of thousands of rows a
    // second, faster than autovacuum (which looks at a database once a minute) reclaims them.
    // Unvacuumed, every fold scanned more dead rows (the benchmark saw 210 MB of them and
    // batch upserts stalling behind a fold that took seconds). A vacuum of this small table,
    // which has no index, takes milliseconds. (SKIP_LOCKED: when another process's vacuum of
    // the table is running, this one is not needed.)
    if folded > 0 {
        conn.batch_execute("VACUUM (SKIP_LOCKED) contact_stats_deltas")?;
    }
    Ok(Some(folded))
}

/// Folds after this many folds in a row with nothing to fold (seconds, at one fold a second)
/// give the deltas table's empty pages back.
pub const QUIET_FOLDS: u32 = 30;

/// The server's fold task: `fold` every second, and after a quiet spell, the table's empty
/// pages given back.
///
/// The table does not shrink on its own (`vacuum_truncate = false`, migration 000006: the
/// truncation takes an exclusive lock that writers queue behind). After a burst of writes (a
/// bulk delete, an import, the seed) it kept its high-water size, all empty pages that every
/// stats read scanned: 34 MB, 7 ms of a 25 ms read in the benchmark. Truncating at the first
/// fold with nothing to fold put the lock in the way of the writes that came next (new-session
/// upserts right after the benchmark emptied an account: p99 5.7 / 10.4 ms -> 26.7 / 94.2 ms at
/// 16 / 32 clients); after a quiet spell of `QUIET_FOLDS` folds that is rare, and PostgreSQL
/// stops the truncation as soon as a writer waits. Only the process that holds the fold does it.
#[derive(Debug, Default)]
pub struct Folder {
    /// Folds in a row by this process with nothing to fold.
    quiet: u32,
}

impl Folder {
    /// One pass: fold, then give the empty pages back after a quiet spell.
    pub fn pass(&mut self, conn: &mut PgConnection) -> QueryResult<i64> {
        let Some(folded) = fold_and_vacuum(conn)? else {
            return Ok(0);
        };
        self.quiet = if folded > 0 {
            0
        } else {
            self.quiet.saturating_add(1)
        };
        if self.quiet >= QUIET_FOLDS && deltas_bytes(conn)? > SMALL_DELTAS_BYTES {
            conn.batch_execute("VACUUM (TRUNCATE, SKIP_LOCKED) contact_stats_deltas")?;
        }
        Ok(folded)
    }
}

/// Size under which an idle deltas table is left alone: 8 pages.
const SMALL_DELTAS_BYTES: i64 = 8 * 8192;

/// The deltas table's size on disk.
pub fn deltas_bytes(conn: &mut PgConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let size: Size = diesel::sql_query("SELECT pg_relation_size('contact_stats_deltas') AS bytes")
        .get_result(conn)?;
    Ok(size.bytes)
}

/// The deltas folded, or `None` when another process holds the fold.
fn fold_once(conn: &mut PgConnection) -> QueryResult<Option<i64>> {
    conn.transaction(|conn| {
        #[derive(QueryableByName)]
        struct Locked {
            #[diesel(sql_type = Bool)]
            locked: bool,
        }
        let lock: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
            .bind::<BigInt, _>(FOLD_LOCK)
            .get_result(conn)?;
        if !lock.locked {
            return Ok(None);
        }
        #[derive(QueryableByName)]
        struct Folded {
            #[diesel(sql_type = BigInt)]
            deltas: i64,
        }
        let folded: Folded = diesel::sql_query(FOLD).get_result(conn)?;
        Ok(Some(folded.deltas))
    })
}

/// Writer 0: the rollup rows the fold (and the migrations' backfill) own.
const FOLD: &str = "WITH moved AS (DELETE FROM contact_stats_deltas RETURNING *), \
    folded AS (INSERT INTO contact_daily_stats AS s (account_id, day, channel, chatbot_id, \
        writer, total, with_email, with_phone, with_email_or_phone, complete, \
        returning_contacts, sessions) \
    SELECT account_id, day, channel, chatbot_id, 0, sum(total), sum(with_email), \
        sum(with_phone), sum(with_email_or_phone), sum(complete), sum(returning_contacts), \
        sum(sessions) \
    FROM moved GROUP BY 1, 2, 3, 4 \
    ON CONFLICT (account_id, day, channel, chatbot_id, writer) DO UPDATE SET \
        total = s.total + EXCLUDED.total, with_email = s.with_email + EXCLUDED.with_email, \
        with_phone = s.with_phone + EXCLUDED.with_phone, \
        with_email_or_phone = s.with_email_or_phone + EXCLUDED.with_email_or_phone, \
        complete = s.complete + EXCLUDED.complete, \
        returning_contacts = s.returning_contacts + EXCLUDED.returning_contacts, \
        sessions = s.sessions + EXCLUDED.sessions) \
    SELECT count(*) AS deltas FROM moved";
