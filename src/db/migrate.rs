//! Migrations: applied by one process at a time, then a check that no index was left invalid.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::{QueryableByName, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// Migrations compiled into the binary (`build.rs` makes new directories trigger a rebuild).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serialises migrations when several processes start at once.
const MIGRATION_LOCK: i64 = 0x636f_6e74_6163_7473; // "contacts"

/// Applies pending migrations under an advisory lock, then builds again any index that an
/// interrupted concurrent build left invalid; returns how many migrations ran.
pub fn run_migrations(conn: &mut PgConnection) -> Result<usize, String> {
    take_lock(conn).map_err(|e| format!("cannot take the migration lock: {e}"))?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|v| v.len())
        .map_err(|e| format!("migration failed: {e}"))
        .and_then(|n| {
            rebuild_invalid_indexes(conn).map_err(|e| format!("index rebuild failed: {e}"))?;
            Ok(n)
        });
    let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    result
}

/// Takes the migration lock, polling: a process blocked in `pg_advisory_lock` sits in a
/// statement, whose snapshot `CREATE INDEX CONCURRENTLY` (migrations 000010 and 000011) waits
/// out before it finishes; the migrating process would wait for the waiter, the waiter for the
/// lock, and PostgreSQL would end the deadlock by cancelling the build, leaving the index
/// invalid. Between two tries no statement runs.
fn take_lock(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    let (start, mut logged) = (Instant::now(), Duration::ZERO);
    loop {
        let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<BigInt, _>(MIGRATION_LOCK)
            .get_result(conn)?;
        if got.locked {
            return Ok(());
        }
        // (No deadline: a concurrent index build on a large table may take many minutes.)
        if start.elapsed() >= logged + Duration::from_secs(10) {
            logged = start.elapsed();
            log::info!("waiting for another process's migrations ({logged:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The indexes the migrations build concurrently (000010, 000011).
const CONCURRENT_INDEXES: [&str; 2] = ["contacts_channel_idx", "contacts_country_idx"];

/// Drops and builds again, concurrently, those of `CONCURRENT_INDEXES` that are invalid. A
/// concurrent build that fails or whose process dies leaves its index invalid (unused by plans,
/// still written by every insert), and `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would skip it
/// for good. Under the migration lock no build of this service is in progress, so an invalid
/// one is such a leftover. (Only these: an index an operator is building concurrently right now
/// is invalid too, and is not the service's to drop.)
fn rebuild_invalid_indexes(conn: &mut PgConnection) -> diesel::QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Invalid {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        def: String,
    }
    let invalid: Vec<Invalid> = diesel::sql_query(
        "SELECT format('%I.%I', n.nspname, c.relname) AS name, pg_get_indexdef(i.indexrelid) AS def \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND n.nspname = 'public' AND c.relname = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(&CONCURRENT_INDEXES[..])
    .load(conn)?;
    for index in &invalid {
        log::warn!(
            "index {} was left invalid by an interrupted build; building it again",
            index.name
        );
        conn.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {}", index.name))?;
        let def = index
            .def
            .replacen("CREATE INDEX ", "CREATE INDEX CONCURRENTLY ", 1)
            .replacen(
                "CREATE UNIQUE INDEX ",
                "CREATE UNIQUE INDEX CONCURRENTLY ",
                1,
            );
        conn.batch_execute(&def)?;
    }
    Ok(invalid.len())
}
