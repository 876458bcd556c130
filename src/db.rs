//! The database: connection pool, database creation, embedded migrations, and `with_conn`, the
//! one bridge from async handlers to blocking diesel code.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use actix_web::web;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, ManageConnection, Pool as R2d2Pool};
use diesel::sql_types::{Bool, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::config::Limits;
use crate::error::ApiError;

/// The shared connection pool.
pub type Pool = R2d2Pool<Manager>;

mod migrate;

pub use migrate::{run_migrations, MIGRATIONS};

/// Adds libpq timeouts unless the URL sets them: a dropped packet must not hang a worker.
pub fn with_connection_params(url: &str) -> String {
    let mut params = Vec::new();
    for (key, value) in [
        ("connect_timeout", "5"),
        ("keepalives", "1"),
        ("keepalives_idle", "30"),
        ("keepalives_interval", "10"),
        ("keepalives_count", "3"),
        // libpq's default (`prefer`) first asks libkrb5 for Kerberos credentials on every TCP
        // connection: a round trip when the server has none, and Kerberos code running in the
        // pool's threads (where a process exiting under it crashed). GSSAPI encryption stays
        // available by setting `gssencmode` in DATABASE_URL.
        ("gssencmode", "disable"),
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

/// The libpq `options` of service connections: a runaway query or a lock queue must end in an
/// error the client can retry (503), not in a worker held forever.
///
/// JIT off: PostgreSQL compiles a query to machine code once its estimated cost passes
/// `jit_above_cost`, which the counted stats and large filtered counts do; for the counted stats
/// of half of a 1M-contact account the compilation took 500-630 ms of an 865-1094 ms query, and
/// the query took 700-722 ms without it (EXPLAIN ANALYZE, 2 runs each). No statement of the
/// service runs long enough to win the compilation back.
fn service_options(limits: &Limits) -> String {
    format!(
        "-c jit=off -c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
        limits.statement_timeout.as_millis(),
        limits.lock_timeout.as_millis(),
        // A transaction is never left open on purpose; this only reaps a leaked one.
        limits.statement_timeout.as_millis() * 2,
    )
}

/// The URL of service connections: libpq timeouts plus the session settings of
/// `service_options` (JIT off, the timeouts of `limits`), unless the URL sets `options` itself.
pub fn service_url(url: &str, limits: &Limits) -> String {
    let url = with_connection_params(url);
    if url.contains("options=") {
        return url;
    }
    let options: String = url::form_urlencoded::byte_serialize(service_options(limits).as_bytes())
        .collect::<String>()
        // libpq decodes %20, not `+`, as a space in URI parameters.
        .replace('+', "%20");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options={options}")
}

/// A pooled connection, whether it lost its server, and when it last served.
///
/// A statement that failed at the connection level marks it `lost`, so it is closed instead of
/// returned to the pool. A connection idle for a while may have died unseen (the database
/// restarted during a quiet spell): it is pinged before it is handed out again. Busy
/// connections are never pinged, so the hot path pays no extra round trip.
pub struct Conn {
    pg: PgConnection,
    lost: bool,
    last_used: Instant,
}

/// Idle longer than this, a connection is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

impl Conn {
    /// Marks the connection to be closed instead of returned to the pool.
    pub fn discard(&mut self) {
        self.lost = true;
    }
}

impl Deref for Conn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.pg
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.pg
    }
}

/// diesel's r2d2 manager, plus the `lost` flag of [`Conn`].
pub struct Manager(ConnectionManager<PgConnection>);

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Conn, Self::Error> {
        let _opening = Opening::start();
        self.0.connect().map(|pg| Conn {
            pg,
            lost: false,
            last_used: Instant::now(),
        })
    }

    /// Called at every checkout (`test_on_check_out`); pings only after an idle spell.
    fn is_valid(&self, conn: &mut Conn) -> Result<(), Self::Error> {
        if conn.last_used.elapsed() < PING_AFTER_IDLE {
            return Ok(());
        }
        self.0.is_valid(&mut conn.pg)?;
        conn.last_used = Instant::now();
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.lost || self.0.has_broken(&mut conn.pg)
    }
}

/// Connections being opened right now (by the pool's threads), and a signal when one ends.
static OPENING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// One connection being opened; counted in [`OPENING`] until dropped.
struct Opening;

impl Opening {
    fn start() -> Self {
        *OPENING.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Opening
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        *OPENING.0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        OPENING.1.notify_all();
    }
}

/// Waits (at most `timeout`) until no pooled connection is being opened; false on timeout.
/// Called at exit: a process that exits while a thread is inside libpq's connection setup
/// (Kerberos, TLS) can crash in their exit-time teardown.
pub fn wait_for_connects(timeout: Duration) -> bool {
    let count = OPENING.0.lock().unwrap_or_else(|p| p.into_inner());
    let (count, _) = OPENING
        .1
        .wait_timeout_while(count, timeout, |n| *n > 0)
        .unwrap_or_else(|p| p.into_inner());
    *count == 0
}

/// Builds the pool; connections are opened lazily, so this succeeds while the database is down.
pub fn build_pool(url: &str, size: u32, limits: &Limits) -> Pool {
    let manager = Manager(ConnectionManager::new(service_url(url, limits)));
    R2d2Pool::builder()
        .max_size(size)
        .min_idle(Some(size.min(4)))
        // A request waits at most this long for a connection, then gets 503.
        .connection_timeout(Duration::from_secs(3))
        .test_on_check_out(true)
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

/// Creates the database if needed and migrates it: what `serve` and `migrate` do first.
pub fn prepare_database(url: &str) -> Result<usize, String> {
    create_database_if_missing(url)?;
    let mut conn = PgConnection::establish(&with_connection_params(url))
        .map_err(|e| format!("cannot connect to DATABASE_URL: {e}"))?;
    run_migrations(&mut conn)
}

/// Requests waiting for a pooled connection right now (all pools of the process).
static WAITING: AtomicI64 = AtomicI64::new(0);

/// How many requests wait for a pooled connection (the `db_pool_waiting` gauge).
pub fn waiting() -> i64 {
    WAITING.load(Ordering::Relaxed)
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
        WAITING.fetch_add(1, Ordering::Relaxed);
        let conn = pool.get();
        WAITING.fetch_sub(1, Ordering::Relaxed);
        let mut conn = conn.map_err(|e| {
            log::warn!("database pool: {e}");
            ApiError::Unavailable
        })?;
        let result = f(&mut conn);
        conn.last_used = Instant::now();
        // A connection-level failure (lost server, timeout, deadlock) costs one reconnect at
        // most; keeping a dead connection would cost every request that drew it.
        if matches!(result, Err(ApiError::Unavailable)) {
            conn.discard();
        }
        result
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

/// True when the database answered but refused this statement for the moment: a deadlock or
/// serialization failure, or a wait past `lock_timeout` or `statement_timeout`
/// (SQLSTATE 55P03, 57014). Unlike a lost connection, running smaller statements may succeed.
pub fn is_statement_failure(e: &diesel::result::Error) -> bool {
    use diesel::result::Error;
    is_retryable(e)
        || matches!(e, Error::DatabaseError(_, info)
            if info.message().starts_with("canceling statement due to lock timeout")
                || info.message().starts_with("canceling statement due to statement timeout"))
}

fn is_retryable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// The statement of `ping` (also the benchmark's floor).
pub const PING_SQL: &str = "SELECT 1";

/// True when the database answers a trivial query (readiness).
pub fn ping(conn: &mut PgConnection) -> bool {
    diesel::sql_query(PING_SQL).execute(conn).is_ok()
}
