//! Configuration from the environment. Every variable the service reads is listed here:
//! `DATABASE_URL`, `BIND_ADDR`, `JWT_SECRET`, `JWT_PUBLIC_KEY_FILE`, `JWT_ISSUER`, `JWT_AUDIENCE`,
//! `DATABASE_POOL_SIZE`, `RETENTION_INTERVAL_SECONDS`, the limits of [`Limits::from_env`], `RUST_LOG`
//! (read by env_logger).

use std::net::SocketAddr;
use std::time::Duration;

/// The database used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/contacts";
/// The address served when `BIND_ADDR` is not set.
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";

/// A setting that is missing or malformed; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL URL; the database is created when missing.
    pub database_url: String,
    /// Address and port to listen on.
    pub bind_addr: SocketAddr,
    /// Maximum pooled connections.
    pub pool_size: u32,
    /// Token verification settings.
    pub jwt: JwtConfig,
    /// Time between two passes of the retention task.
    pub retention_interval: Duration,
    /// Rate limits, caps and timeouts.
    pub limits: Limits,
}

/// What one account or one client may take from the service, and how long anything may wait.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Session upserts (single and batch requests) per account per minute; 0 turns it off.
    pub upserts_per_minute: u32,
    /// Every other authenticated request, per account per minute; 0 turns it off.
    pub requests_per_minute: u32,
    /// Exports one account may run at the same time.
    pub exports_per_account: u32,
    /// `statement_timeout` of service connections.
    pub statement_timeout: Duration,
    /// `lock_timeout` of service connections.
    pub lock_timeout: Duration,
    /// How long a client may take to send its request headers, and then its body.
    pub client_timeout: Duration,
    /// Session upsert statements in flight per account and token; upserts beyond wait and are
    /// written together (group commit, `coalesce`); 0 writes each alone.
    pub upsert_lanes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            upserts_per_minute: 12_000,
            requests_per_minute: 3_000,
            exports_per_account: 2,
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            client_timeout: Duration::from_secs(10),
            upsert_lanes: 2,
        }
    }
}

impl Limits {
    /// Reads `RATE_LIMIT_UPSERTS_PER_MINUTE`, `RATE_LIMIT_REQUESTS_PER_MINUTE`,
    /// `EXPORTS_PER_ACCOUNT`, `DATABASE_STATEMENT_TIMEOUT_SECONDS`,
    /// `DATABASE_LOCK_TIMEOUT_SECONDS`, `CLIENT_TIMEOUT_SECONDS` and `UPSERT_LANES`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let secs = |name, default: Duration| -> Result<Duration, ConfigError> {
            let n = int_var(name, default.as_secs() as u32, 1..=3600)?;
            Ok(Duration::from_secs(n.into()))
        };
        Ok(Self {
            upserts_per_minute: int_var(
                "RATE_LIMIT_UPSERTS_PER_MINUTE",
                d.upserts_per_minute,
                0..=10_000_000,
            )?,
            requests_per_minute: int_var(
                "RATE_LIMIT_REQUESTS_PER_MINUTE",
                d.requests_per_minute,
                0..=10_000_000,
            )?,
            exports_per_account: int_var("EXPORTS_PER_ACCOUNT", d.exports_per_account, 1..=64)?,
            statement_timeout: secs("DATABASE_STATEMENT_TIMEOUT_SECONDS", d.statement_timeout)?,
            lock_timeout: secs("DATABASE_LOCK_TIMEOUT_SECONDS", d.lock_timeout)?,
            client_timeout: secs("CLIENT_TIMEOUT_SECONDS", d.client_timeout)?,
            upsert_lanes: int_var("UPSERT_LANES", d.upsert_lanes, 0..=64)?,
        })
    }
}

/// An integer setting within `range`, or `default` when unset.
fn int_var(
    name: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    match var(name)? {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError {
                var: name,
                reason: format!(
                    "must be an integer from {} to {}, got {v:?}",
                    range.start(),
                    range.end()
                ),
            }),
        },
    }
}

/// How bearer tokens are verified.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// PEM public key (RSA or EC) for RS256 / ES256, read from `JWT_PUBLIC_KEY_FILE`.
    pub public_key_pem: Option<Vec<u8>>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
}

fn var(name: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError {
            var: name,
            reason: "is not valid UTF-8".into(),
        }),
    }
}

impl JwtConfig {
    /// Reads the JWT variables; at least one key must be configured to serve.
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = var("JWT_SECRET")?;
        if let Some(s) = &secret {
            if s.len() < 32 {
                return Err(ConfigError {
                    var: "JWT_SECRET",
                    reason: "must be at least 32 bytes long".into(),
                });
            }
        }
        let public_key_pem = match var("JWT_PUBLIC_KEY_FILE")? {
            None => None,
            Some(path) => Some(std::fs::read(&path).map_err(|e| ConfigError {
                var: "JWT_PUBLIC_KEY_FILE",
                reason: format!("cannot read {path}: {e}"),
            })?),
        };
        Ok(Self {
            secret,
            public_key_pem,
            issuer: var("JWT_ISSUER")?,
            audience: var("JWT_AUDIENCE")?,
        })
    }
}

impl Config {
    /// Reads and checks every variable; the error names the first bad one.
    pub fn from_env() -> Result<Self, ConfigError> {
        let database_url = database_url()?;
        let bind_addr = var("BIND_ADDR")?
            .unwrap_or_else(|| DEFAULT_BIND_ADDR.into())
            .parse()
            .map_err(|e| ConfigError {
                var: "BIND_ADDR",
                reason: format!("not an address:port ({e})"),
            })?;
        let pool_size = int_var("DATABASE_POOL_SIZE", 16, 1..=1000)?;
        let retention_interval = int_var("RETENTION_INTERVAL_SECONDS", 300, 1..=86_400)?;
        let jwt = JwtConfig::from_env()?;
        if jwt.secret.is_none() && jwt.public_key_pem.is_none() {
            return Err(ConfigError {
                var: "JWT_SECRET",
                reason: "set JWT_SECRET or JWT_PUBLIC_KEY_FILE so tokens can be verified".into(),
            });
        }
        Ok(Self {
            database_url,
            bind_addr,
            pool_size,
            jwt,
            retention_interval: Duration::from_secs(retention_interval.into()),
            limits: Limits::from_env()?,
        })
    }
}

/// `DATABASE_URL` or its default, checked to be a postgres URL.
pub fn database_url() -> Result<String, ConfigError> {
    let url = var("DATABASE_URL")?.unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError {
            var: "DATABASE_URL",
            reason: "must be a postgres:// URL".into(),
        });
    }
    url::Url::parse(&url).map_err(|e| ConfigError {
        var: "DATABASE_URL",
        reason: format!("not a URL ({e})"),
    })?;
    Ok(url)
}
