//! Configuration from the environment. Every variable the service reads is listed here:
//! `DATABASE_URL`, `BIND_ADDR`, `JWT_SECRET`, `JWT_PUBLIC_KEY_FILE`, `JWT_ISSUER`, `JWT_AUDIENCE`,
//! `DATABASE_POOL_SIZE`, `RETENTION_INTERVAL_SECONDS`, `RUST_LOG` (read by env_logger).

use std::net::SocketAddr;

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
    pub retention_interval: std::time::Duration,
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
        let pool_size = match var("DATABASE_POOL_SIZE")? {
            None => 16,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(ConfigError {
                        var: "DATABASE_POOL_SIZE",
                        reason: format!("must be an integer from 1 to 1000, got {v:?}"),
                    })
                }
            },
        };
        let retention_interval = match var("RETENTION_INTERVAL_SECONDS")? {
            None => 300,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=86_400).contains(&n) => n,
                _ => {
                    return Err(ConfigError {
                        var: "RETENTION_INTERVAL_SECONDS",
                        reason: format!("must be an integer from 1 to 86400, got {v:?}"),
                    })
                }
            },
        };
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
            retention_interval: std::time::Duration::from_secs(retention_interval),
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
