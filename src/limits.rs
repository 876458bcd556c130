//! Per-account limits: request budgets (GCRA, from `governor`) and concurrent export slots.
//! Budgets are per process: with N server processes an account may send N times the budget,
//! which is the price of keeping the hot path free of a shared counter.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::Limits;
use crate::error::ApiError;

type Keyed = RateLimiter<i64, DashMapStateStore<i64>, DefaultClock, StateInformationMiddleware>;

/// Which budget a request spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// Session upserts, single and batch (the chatbot runtimes' hot path).
    Upserts,
    /// Every other authenticated request.
    Requests,
}

/// A budget's state after a request, sent back as `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateInfo {
    /// Requests per minute (also the largest burst).
    pub limit: u32,
    /// Requests the account may still send at once.
    pub remaining: u32,
    /// Seconds until the budget is full again.
    pub reset_secs: u64,
}

/// The process's limits, shared by every worker.
pub struct Limiter {
    upserts: Option<Keyed>,
    requests: Option<Keyed>,
    checks: AtomicU64,
    exports: Arc<Mutex<HashMap<i64, u32>>>,
    exports_per_account: u32,
}

fn keyed(per_minute: u32) -> Option<Keyed> {
    let n = NonZeroU32::new(per_minute)?;
    Some(RateLimiter::dashmap(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>())
}

fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Limiter {
    /// Limits as configured.
    pub fn new(limits: &Limits) -> Self {
        Self {
            upserts: keyed(limits.upserts_per_minute),
            requests: keyed(limits.requests_per_minute),
            checks: AtomicU64::new(0),
            exports: Arc::default(),
            exports_per_account: limits.exports_per_account,
        }
    }

    /// Spends one request of `account`'s `budget`. `None` when that budget is off; otherwise
    /// the budget's state, and `Err` with the seconds to wait when it is spent.
    pub fn check(&self, account: i64, budget: Budget) -> Option<(RateInfo, Result<(), ApiError>)> {
        let limiter = match budget {
            Budget::Upserts => self.upserts.as_ref()?,
            Budget::Requests => self.requests.as_ref()?,
        };
        // Forget accounts idle for a full window now and then, so the map stays small.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 65_536 == 65_535 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        Some(match limiter.check_key(&account) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let limit = quota.burst_size().get();
                let remaining = snapshot.remaining_burst_capacity();
                let refill = quota.replenish_interval() * (limit - remaining);
                let info = RateInfo {
                    limit,
                    remaining,
                    reset_secs: ceil_secs(refill),
                };
                (info, Ok(()))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                let secs = ceil_secs(wait).max(1);
                let info = RateInfo {
                    limit: not_until.quota().burst_size().get(),
                    remaining: 0,
                    reset_secs: secs,
                };
                (info, Err(ApiError::RateLimited(secs)))
            }
        })
    }

    /// Takes one of `account`'s export slots, held until the guard drops (the export's stream
    /// ends or the client goes away).
    pub fn export_slot(&self, account: i64) -> Result<ExportSlot, ApiError> {
        let mut running = self.exports.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.entry(account).or_insert(0);
        if *n >= self.exports_per_account {
            return Err(ApiError::TooManyExports(self.exports_per_account));
        }
        *n += 1;
        Ok(ExportSlot {
            exports: Arc::clone(&self.exports),
            account,
        })
    }
}

/// A running export of one account.
pub struct ExportSlot {
    exports: Arc<Mutex<HashMap<i64, u32>>>,
    account: i64,
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        let mut running = self.exports.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.account);
            }
        }
    }
}
