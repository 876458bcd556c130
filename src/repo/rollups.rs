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
    // Another process folding this time: its turn, its vacuum.
    let Some(folded) = fold_once(conn)? else {
        return Ok(0);
    };
    // The deltas table is a queue: under load it takes and loses tens of thousands of rows a
    // second, faster than autovacuum (which looks at a database once a minute) reclaims them.
    // Unvacuumed, every fold scanned more dead rows (the benchmark saw 210 MB of them and
    // batch upserts stalling behind a fold that took seconds). A vacuum of this small table,
    // which has no index, takes milliseconds.
    //
    // The table does not give its empty tail back to the file system on its own
    // (`vacuum_truncate = false`, migration 000006: the truncation takes an exclusive lock that
    // writers would queue behind). After a burst of writes it stayed 34 MB of empty pages that
    // every stats read scanned (7 ms of a 25 ms read, the benchmark's EXPLAIN after its write
    // half). So the fold that holds the fold lock and had nothing to fold (no figure changed
    // since the last fold) truncates it when it is more than a few pages. The exclusive lock
    // is only tried (every 50 ms, for up to 5 s) while a writer holds the table, never queued
    // for, and PostgreSQL stops the truncation as soon as a writer waits.
    // (SKIP_LOCKED: when another process's vacuum of the table is running, this one is not
    // needed; waiting for it would only hold a connection.)
    if folded > 0 {
        conn.batch_execute("VACUUM (SKIP_LOCKED) contact_stats_deltas")?;
    } else if deltas_bytes(conn)? > SMALL_DELTAS_BYTES {
        conn.batch_execute("VACUUM (TRUNCATE, SKIP_LOCKED) contact_stats_deltas")?;
    }
    Ok(folded)
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
