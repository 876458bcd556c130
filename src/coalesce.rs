//! Group commit for the session upsert. Concurrent upserts of one account and token that
//! arrive while that key already has `lanes` statements in flight wait, and the next free lane
//! writes all that waited in one transaction through the batch upsert
//! (`repo::batch::upsert_batch`, where repeats of a session apply in arrival order, as if sent
//! one after the other). Nothing waits for company: a request that finds a free lane is
//! written at once, alone, by the single-row statement. Under load this trades many
//! statements, commits and WAL flushes for a few multi-row ones, which is where PostgreSQL's
//! cost per row drops sixfold (README, benchmark).
//!
//! Each request keeps its own outcome: an item's database error is its own (the batch retries
//! a failing item alone in a savepoint), and a group whose statement fails as a whole while the
//! database answers (a lock wait past `lock_timeout`, a deadlock after retries) is rerun one
//! request at a time, so that one blocked row costs its own request a 503, not the group's.
//! Only a database that does not answer fails every request of the group (503).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use diesel::Connection;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use crate::db::{retry_transient, with_conn, Pool};
use crate::error::ApiError;
use crate::models::Contact;
use crate::repo::{batch, contacts, contacts::SessionUpsert};

/// The outcome of one upsert: the contact and whether it was created.
pub type Outcome = Result<(Contact, bool), ApiError>;

type Key = (i64, String);

struct Job {
    upsert: SessionUpsert,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Lane {
    waiting: Vec<Job>,
    running: usize,
}

/// The waiting upserts per (account, actor), and how many statements each key has in flight.
pub struct Coalescer {
    lanes: usize,
    keys: Mutex<HashMap<Key, Lane>>,
    groups: Histogram,
}

impl Coalescer {
    /// Up to `lanes` statements per key at a time; 0 writes every upsert alone, at once.
    /// `groups` observes how many upserts each transaction wrote.
    pub fn new(lanes: u32, groups: Histogram) -> Self {
        Self {
            lanes: lanes as usize,
            keys: Mutex::default(),
            groups,
        }
    }

    /// Writes `upsert` for `account` as `actor` (the audit's actor), alone or with others.
    pub async fn upsert(
        self: Arc<Self>,
        pool: &Pool,
        account: i64,
        actor: String,
        upsert: SessionUpsert,
    ) -> Outcome {
        if self.lanes == 0 {
            return write_alone(pool, account, actor, upsert).await;
        }
        let (reply, answer) = oneshot::channel();
        let key = (account, actor);
        let start = {
            let mut keys = self.keys.lock().expect("coalescer lock");
            let lane = keys.entry(key.clone()).or_default();
            lane.waiting.push(Job { upsert, reply });
            let start = lane.running < self.lanes;
            lane.running += usize::from(start);
            start
        };
        if start {
            // Its own task: the lane goes on serving others after this request is answered,
            // and even if this request's client goes away.
            actix_web::rt::spawn(Arc::clone(&self).drain(pool.clone(), key));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(ApiError::internal("upsert lane dropped the request")))
    }

    /// Writes what waits under `key` until nothing does, then frees the lane.
    async fn drain(self: Arc<Self>, pool: Pool, key: Key) {
        loop {
            let jobs = {
                let mut keys = self.keys.lock().expect("coalescer lock");
                let lane = keys.get_mut(&key).expect("a running lane has its key");
                if lane.waiting.is_empty() {
                    lane.running -= 1;
                    if lane.running == 0 {
                        keys.remove(&key);
                    }
                    return;
                }
                let n = lane.waiting.len().min(crate::routes::batch::MAX_ITEMS);
                lane.waiting.drain(..n).collect::<Vec<Job>>()
            };
            self.groups.observe(jobs.len() as f64);
            write(&pool, key.0, &key.1, jobs).await;
        }
    }
}

async fn write_alone(pool: &Pool, account: i64, actor: String, upsert: SessionUpsert) -> Outcome {
    with_conn(pool, move |conn| {
        // A deadlock with a concurrent writer of the same rows (a delete locks the contact,
        // then its sessions) is retried: the statement runs alone, so running it again is safe.
        Ok(retry_transient(|| {
            contacts::upsert_session(conn, account, &upsert, &actor)
        })?)
    })
    .await
}

async fn write(pool: &Pool, account: i64, actor: &str, mut jobs: Vec<Job>) {
    if jobs.len() == 1 {
        let job = jobs.pop().expect("one job");
        let outcome = write_alone(pool, account, actor.to_string(), job.upsert).await;
        let _ = job.reply.send(outcome);
        return;
    }
    let items: Vec<SessionUpsert> = jobs.iter().map(|j| j.upsert.clone()).collect();
    let owned_actor = actor.to_string();
    let written = with_conn(pool, move |conn| {
        let written = retry_transient(|| {
            conn.transaction(|conn| batch::upsert_batch(conn, account, &items, &owned_actor))
        });
        match written {
            Err(e) if crate::db::is_statement_failure(&e) => {
                Err(ApiError::internal(format!("group statement failed: {e}")))
            }
            other => Ok(other?),
        }
    })
    .await;
    match written {
        Ok(results) => {
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(result.map_err(ApiError::from));
            }
        }
        // The database is unreachable: so it is for each of them.
        Err(ApiError::Unavailable) => {
            for job in jobs {
                let _ = job.reply.send(Err(ApiError::Unavailable));
            }
        }
        // Anything else: one at a time, so that each request gets its own answer.
        Err(e) => {
            log::warn!(
                "group upsert of {} failed, writing each alone: {e}",
                jobs.len()
            );
            for job in jobs {
                let outcome = write_alone(pool, account, actor.to_string(), job.upsert).await;
                let _ = job.reply.send(outcome);
            }
        }
    }
}
