//! The database: connection pool, database creation, embedded migrations, and `with_conn`, the
//! one bridge from async handlers to blocking diesel code.

use std::time::Duration;

use actix_web::web;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool as R2d2Pool};
use diesel::sql_types::{Bool, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::ApiError;

/// The shared connection pool.
pub type Pool = R2d2Pool<ConnectionManager<PgConnection>>;

/// Migrations compiled into the binary (`build.rs` makes new directories trigger a rebuild).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serialises migrations when several processes start at once.
const MIGRATION_LOCK: i64 = 0x636f_6e74_6163_7473; // "contacts"

/// Adds libpq timeouts unless the URL sets them: a dropped packet must not hang a worker.
pub fn with_connection_params(url: &str) -> String {
    let mut params = Vec::new();
    for (key, value) in [
        ("connect_timeout", "5"),
        ("keepalives", "1"),
        ("keepalives_idle", "30"),
        ("keepalives_interval", "10"),
        ("keepalives_count", "3"),
    ] {
        if !url.contains(&format!("{key}=")) {
            params.push(format!("{key}={value}"));
        }
    }
    if params.is_empty() {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", params.join("&"))
}

/// Builds the pool; connections are opened lazily, so this succeeds while the database is down.
pub fn build_pool(url: &str, size: u32) -> Pool {
    let manager = ConnectionManager::<PgConnection>::new(with_connection_params(url));
    R2d2Pool::builder()
        .max_size(size)
        .min_idle(Some(size.min(4)))
        // A request waits at most this long for a connection, then gets 503.
        .connection_timeout(Duration::from_secs(3))
        .test_on_check_out(false)
        .build_unchecked(manager)
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

/// Creates the database named in `url` when it does not exist, connecting to `postgres` on the
/// same server to do it.
pub fn create_database_if_missing(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
    let name = parsed.path().trim_start_matches('/').to_string();
    if name.is_empty() {
        return Err("DATABASE_URL: names no database".into());
    }
    let name = percent_decode(&name);
    let mut admin_url = parsed.clone();
    admin_url.set_path("/postgres");
    let mut conn = PgConnection::establish(&with_connection_params(admin_url.as_str()))
        .map_err(|e| format!("cannot connect to the server of DATABASE_URL: {e}"))?;
    let found =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(&name)
            .get_result::<Exists>(&mut conn)
            .map_err(|e| format!("cannot list databases: {e}"))?;
    if !found.exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = conn.batch_execute(&sql) {
            // Another process may have created it at the same moment.
            if !e.to_string().contains("already exists") {
                return Err(format!("cannot create database {name}: {e}"));
            }
        }
        log::info!("created database {name}");
    }
    Ok(())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Applies pending migrations under an advisory lock; returns how many ran.
pub fn run_migrations(conn: &mut PgConnection) -> Result<usize, String> {
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(|e| format!("cannot take the migration lock: {e}"))?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|v| v.len())
        .map_err(|e| format!("migration failed: {e}"));
    let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    result
}

/// Creates the database if needed and migrates it: what `serve` and `migrate` do first.
pub fn prepare_database(url: &str) -> Result<usize, String> {
    create_database_if_missing(url)?;
    let mut conn = PgConnection::establish(&with_connection_params(url))
        .map_err(|e| format!("cannot connect to DATABASE_URL: {e}"))?;
    run_migrations(&mut conn)
}

/// Runs `f` with a pooled connection on the blocking thread pool.
///
/// The only place that calls `web::block` and `pool.get()`: a connection is never held across
/// an `.await`, and a pool that cannot hand one out in time answers 503.
pub async fn with_conn<F, T>(pool: &Pool, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    web::block(move || {
        let mut conn = pool.get().map_err(|e| {
            log::warn!("database pool: {e}");
            ApiError::Unavailable
        })?;
        f(&mut conn)
    })
    .await
    .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
}

/// Runs `f` again (up to three more times, with a short pause) when it fails with a deadlock
/// or a serialization failure: both mean "another transaction won this time", never bad input.
pub fn retry_transient<T>(mut f: impl FnMut() -> diesel::QueryResult<T>) -> diesel::QueryResult<T> {
    let mut attempt = 0u64;
    loop {
        match f() {
            Err(e) if attempt < 3 && is_retryable(&e) => {
                attempt += 1;
                log::debug!("retrying after a transient failure: {e}");
                std::thread::sleep(Duration::from_millis(5 * attempt));
            }
            other => return other,
        }
    }
}

fn is_retryable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// True when the database answers a trivial query (readiness).
pub fn ping(conn: &mut PgConnection) -> bool {
    diesel::sql_query("SELECT 1").execute(conn).is_ok()
}
