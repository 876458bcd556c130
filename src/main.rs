//! The `contacts-api` binary: `serve` (default), `migrate`, `token`, `openapi`.

use std::process::ExitCode;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use actix_web::HttpServer;
use clap::{Parser, Subcommand};
use contacts_api::{auth, config, db, openapi, routes};

// mimalloc: glibc malloc/free were ~15% of the server's CPU when listing contacts (perf, see
// README "Performance"); many short-lived allocations per request is what mimalloc is built for.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "contacts-api",
    version,
    about = "Contacts of everyone who talks to a business's AI chatbots"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create and migrate the database, then serve the API (the default).
    Serve,
    /// Create the database if missing and apply pending migrations.
    Migrate,
    /// Mint a development token signed with JWT_SECRET.
    Token {
        /// Account (tenant) id, ≥ 1.
        #[arg(long)]
        account: i64,
        /// Acting principal, recorded in the audit log.
        #[arg(long)]
        sub: String,
        /// Space-separated scopes, e.g. "contacts:read contacts:write".
        #[arg(long)]
        scope: String,
        /// Lifetime: seconds, or a number followed by s, m, h or d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Restrict upserts to this chatbot.
        #[arg(long)]
        chatbot: Option<String>,
    },
    /// Print the OpenAPI document (the content of openapi/openapi.json).
    Openapi,
    /// Write the benchmark's operations (HTTP request and service SQL) for scripts/bench.
    #[command(hide = true)]
    BenchPlan {
        /// The seeded account to measure.
        #[arg(long, default_value_t = 1)]
        account: i64,
        /// Rows deep for the "deep page" operations.
        #[arg(long, default_value_t = 500_000)]
        depth: i64,
        /// Output directory.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Generate realistic contacts with COPY (for benchmarks and demos).
    Seed {
        /// Accounts to fill, comma-separated.
        #[arg(long, default_value = "1", value_delimiter = ',')]
        accounts: Vec<i64>,
        /// Contacts per account.
        #[arg(long, default_value_t = 100_000)]
        contacts: u64,
        /// Random seed (same seed, same data).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn parse_ttl(s: &str) -> Option<i64> {
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("contacts-api: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Migrate => match config::database_url().map_err(|e| e.to_string()) {
            Err(e) => fail(e),
            Ok(url) => match db::prepare_database(&url) {
                Ok(n) => {
                    println!("applied {n} migration(s)");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            },
        },
        Command::Token {
            account,
            sub,
            scope,
            ttl,
            chatbot,
        } => token(account, &sub, &scope, &ttl, chatbot.as_deref()),
        Command::Seed {
            accounts,
            contacts,
            seed,
        } => seed_accounts(&accounts, contacts, seed),
        Command::BenchPlan {
            account,
            depth,
            out,
        } => bench_plan(account, depth, &out),
        Command::Openapi => {
            print!("{}", openapi::document_json());
            ExitCode::SUCCESS
        }
    }
}

fn token(account: i64, sub: &str, scope: &str, ttl: &str, chatbot: Option<&str>) -> ExitCode {
    let jwt = match config::JwtConfig::from_env() {
        Ok(j) => j,
        Err(e) => return fail(e),
    };
    let Some(secret) = jwt.secret.as_deref() else {
        return fail("JWT_SECRET: must be set to mint tokens");
    };
    if account < 1 {
        return fail("--account must be ≥ 1");
    }
    let Some(ttl_secs) = parse_ttl(ttl) else {
        return fail("--ttl: expected seconds or a number with s, m, h or d (e.g. 1h)");
    };
    let request = auth::MintRequest {
        secret,
        account_id: account,
        sub,
        scope,
        ttl_secs,
        chatbot_id: chatbot,
        issuer: jwt.issuer.as_deref(),
        audience: jwt.audience.as_deref(),
    };
    match auth::mint(&request) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn bench_plan(account: i64, depth: i64, out: &std::path::Path) -> ExitCode {
    use diesel::Connection;
    let url = match config::database_url() {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let mut conn = match diesel::PgConnection::establish(&db::with_connection_params(&url)) {
        Ok(c) => c,
        Err(e) => return fail(format!("DATABASE_URL: {e}")),
    };
    let ops = match contacts_api::bench::list_ops(&mut conn, account, depth) {
        Ok(ops) => ops,
        Err(e) => return fail(format!("bench plan: {e}")),
    };
    let upserts = contacts_api::bench::upsert_ops();
    let written = contacts_api::bench::write_plan(out, "ops", &ops)
        .and_then(|()| contacts_api::bench::write_plan(out, "upserts", &upserts))
        .and_then(|()| {
            std::fs::write(out.join("item.json"), contacts_api::bench::upsert_body(""))?;
            std::fs::write(
                out.join("batch-item.json"),
                contacts_api::bench::upsert_body(r#""chatbot_id":"bench","session_id":"SID","#),
            )
        });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("--out: {e}")),
    }
}

fn seed_accounts(accounts: &[i64], contacts: u64, seed: u64) -> ExitCode {
    let url = match config::database_url() {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    if let Err(e) = db::prepare_database(&url) {
        return fail(e);
    }
    let url = db::with_connection_params(&url);
    // One connection per core: PostgreSQL's index upkeep is the work.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let started = std::time::Instant::now();
    for &account_id in accounts {
        if account_id < 1 {
            return fail("--accounts: account ids must be ≥ 1");
        }
        let bar = indicatif::ProgressBar::new(contacts).with_style(
            indicatif::ProgressStyle::with_template(
                "account {msg} [{bar:40}] {pos}/{len} contacts ({per_sec}, eta {eta})",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar.set_message(account_id.to_string());
        let plan = contacts_api::seed::SeedPlan {
            account_id,
            contacts,
            seed,
        };
        if let Err(e) = contacts_api::seed::seed(&url, &plan, workers, &|n| bar.set_position(n)) {
            return fail(format!("seed failed: {e}"));
        }
        bar.finish();
    }
    let secs = started.elapsed().as_secs_f64();
    let total = contacts * accounts.len() as u64;
    println!(
        "seeded {total} contacts in {secs:.1} s ({:.0} contacts/s, {workers} connections)",
        total as f64 / secs
    );
    ExitCode::SUCCESS
}

/// A background task on its own thread (it runs blocking queries): `pass` at start, then one
/// every `interval`, each with a pooled connection. Dropping the returned sender stops it (and
/// releases its handle on the pool).
fn spawn_task(
    name: &'static str,
    pool: db::Pool,
    interval: Duration,
    mut pass: impl FnMut(&mut diesel::PgConnection) -> diesel::QueryResult<i64> + Send + 'static,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            match pool.get() {
                Ok(mut conn) => match pass(&mut conn) {
                    Ok(n) => log::debug!("{name}: {n}"),
                    Err(e) => log::warn!("{name} pass failed: {e}"),
                },
                Err(e) => log::warn!("{name} pass skipped, no database connection: {e}"),
            }
            if let Err(mpsc::RecvTimeoutError::Disconnected) = stopped.recv_timeout(interval) {
                return;
            }
        })
        .unwrap_or_else(|e| panic!("spawn the {name} thread: {e}"));
    (stop, handle)
}

/// Retention: safe with several server processes (each batch takes rows with SKIP LOCKED).
fn retention_pass(conn: &mut diesel::PgConnection) -> diesel::QueryResult<i64> {
    let n = contacts_api::repo::retention::run_once(conn)?;
    if n > 0 {
        log::info!("retention: deleted {n} expired contact(s)");
    }
    Ok(n)
}

/// How often the stats deltas are folded into the rollups. Reads are exact either way; folding
/// often keeps the deltas that every stats read adds up few.
const FOLD_INTERVAL: Duration = Duration::from_secs(1);

fn serve() -> ExitCode {
    let cfg = match config::Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let verifier = match auth::TokenVerifier::new(&cfg.jwt) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    // The address first, before any thread touches the database: a taken BIND_ADDR fails
    // fast, and the process never exits while a pool thread is inside libpq (exit-time
    // teardown of libkrb5 or OpenSSL under such a thread crashed it with SIGSEGV or SIGABRT).
    // actix binds here (its backlog of 1024, not std's 128); the workers build the app from
    // the state once `run` starts them, which is after the state is set below.
    let state_cell: Arc<OnceLock<routes::AppState>> = Arc::default();
    let app_state = Arc::clone(&state_cell);
    let server = HttpServer::new(move || {
        routes::app(app_state.get().expect("state is set before run").clone())
    })
    .bind(cfg.bind_addr);
    let server = match server {
        Ok(s) => s,
        Err(e) => return fail(format!("BIND_ADDR: {e}")),
    };
    // A server started before its database waits for it instead of exiting.
    loop {
        match db::prepare_database(&cfg.database_url) {
            Ok(n) => {
                log::info!("database ready ({n} migration(s) applied)");
                break;
            }
            Err(e) => {
                log::warn!("database not ready, retrying in 2 s: {e}");
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
    let pool = db::build_pool(&cfg.database_url, cfg.pool_size, &cfg.limits);
    let tasks = [
        spawn_task(
            "retention",
            pool.clone(),
            cfg.retention_interval,
            retention_pass,
        ),
        spawn_task("stats fold", pool.clone(), FOLD_INTERVAL, {
            let mut folder = contacts_api::repo::rollups::Folder::default();
            move |conn: &mut diesel::PgConnection| folder.pass(conn)
        }),
    ];
    let client_timeout = cfg.limits.client_timeout;
    let _ = state_cell.set(routes::AppState::with_limits(pool, verifier, cfg.limits));
    // The workers hold their own clones of the state; this one must not outlive the server.
    drop(state_cell);
    let result = actix_web::rt::System::new().block_on(async move {
        log::info!("serving on http://{}", cfg.bind_addr);
        // SIGTERM: stop accepting, let in-flight requests finish (up to 30 s), then return here,
        // where the pool is dropped and its connections closed. (SIGINT and SIGQUIT are
        // actix's forced shutdown: in-flight requests are cut.)
        server
            .client_request_timeout(client_timeout)
            .client_disconnect_timeout(Duration::from_secs(2))
            .keep_alive(Duration::from_secs(75))
            .shutdown_timeout(30)
            .run()
            .await
    });
    // The server dropped its handles on the pool; the background tasks hold the last ones.
    for (stop, task) in tasks {
        drop(stop);
        let _ = task.join();
    }
    // The pool's own threads may still be opening a connection (replenishing after a lost
    // one); the process exits only once none is inside libpq.
    if !db::wait_for_connects(Duration::from_secs(10)) {
        log::warn!("exiting while a database connection is still being opened");
    }
    log::info!("stopped: server shut down, database pool closed");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("BIND_ADDR: {e}")),
    }
}
