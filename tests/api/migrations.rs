//! Migrations when several processes start at once, and indexes that a concurrent build left
//! invalid (migrations 000010 and 000011 build theirs with `CREATE INDEX CONCURRENTLY`).

use contacts_api::db;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::helpers::*;

const INVALID: &str =
    "SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
     JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'public' AND NOT i.indisvalid";

/// Three processes start on a new database: one runs every migration while the others wait,
/// and the concurrent index builds finish. (A process waiting inside `pg_advisory_lock` held a
/// snapshot that the build waits out: a deadlock, which PostgreSQL ended by cancelling the
/// build.)
#[test]
fn concurrent_starts_migrate_once_and_leave_every_index_valid() {
    let db = TestDb::empty();
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut conn = PgConnection::establish(&url).unwrap();
                db::run_migrations(&mut conn)
            })
        })
        .collect();
    let ran: Vec<usize> = starts
        .into_iter()
        .map(|s| s.join().unwrap().expect("migrations"))
        .collect();
    assert_eq!(ran.iter().filter(|&&n| n > 0).count(), 1, "{ran:?}");
    assert_eq!(db.count(INVALID), 0);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM pg_indexes WHERE indexname IN ('contacts_channel_idx', 'contacts_country_idx')"),
        2
    );
}

/// An index of the migrations left invalid (its build failed, or its process died) is built
/// again at the next start, instead of being skipped by `IF NOT EXISTS` for good; an index that
/// is not the service's (an operator's concurrent build looks the same) is left alone.
#[test]
fn an_index_left_invalid_is_built_again_at_the_next_start() {
    let db = TestDb::new();
    let mut conn = db.conn();
    conn.batch_execute(
        "CREATE INDEX operators_idx ON contacts (name); \
         UPDATE pg_index SET indisvalid = false \
         WHERE indexrelid IN ('contacts_channel_idx'::regclass, 'operators_idx'::regclass)",
    )
    .unwrap();
    assert_eq!(db.count(INVALID), 2);
    assert_eq!(db::run_migrations(&mut conn).unwrap(), 0);
    assert_eq!(
        db.count(&format!("{INVALID} AND c.relname = 'operators_idx'")),
        1
    );
    assert_eq!(db.count(INVALID), 1);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM pg_indexes WHERE indexdef = 'CREATE INDEX contacts_channel_idx ON public.contacts USING btree (account_id, channel, id)'"),
        1
    );
}
