//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Labels are bounded on purpose: the route *pattern* (never the raw path, which holds session
//! ids), the method and the status. No account id: a label per tenant would grow without bound.

use actix_web::{get, web, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::db::Pool;

/// The labels of the request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route pattern, `unmatched` when no route matched.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type Latency = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to 10 s: the service's p50 is a few ms; exports and stats run for seconds.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
    upserts: Family<OutcomeLabels, Counter>,
    upsert_groups: Histogram,
    pool_connections: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    pool_waiting: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Latency = Family::new_with_constructor(latency_histogram);
        let upserts = Family::<OutcomeLabels, Counter>::default();
        let upsert_groups = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
        let (pool_connections, pool_idle, pool_max, pool_waiting): (Gauge, Gauge, Gauge, Gauge) =
            Default::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request received to response headers, by route, method and status",
            latency.clone(),
        );
        registry.register(
            "contacts_upserts",
            "Session upserts (single and batch items) by outcome: created or updated",
            upserts.clone(),
        );
        registry.register(
            "contacts_upsert_group_size",
            "Single session upserts written per transaction (group commit, UPSERT_LANES)",
            upsert_groups.clone(),
        );
        let pool_metrics = [
            (
                "db_pool_connections",
                "Open database connections",
                &pool_connections,
            ),
            (
                "db_pool_idle_connections",
                "Idle pooled connections",
                &pool_idle,
            ),
            (
                "db_pool_max_connections",
                "Pool size (DATABASE_POOL_SIZE)",
                &pool_max,
            ),
            (
                "db_pool_waiting",
                "Requests waiting for a database connection",
                &pool_waiting,
            ),
        ];
        for (name, help, gauge) in pool_metrics {
            registry.register(name, help, gauge.clone());
        }
        Self {
            registry,
            requests,
            latency,
            upserts,
            upsert_groups,
            pool_connections,
            pool_idle,
            pool_max,
            pool_waiting,
        }
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// The histogram of group sizes that the upsert coalescer feeds.
    pub fn upsert_groups(&self) -> Histogram {
        self.upsert_groups.clone()
    }

    /// Counts upserts that created and updated a contact.
    pub fn upserted(&self, created: u64, updated: u64) {
        for (outcome, n) in [("created", created), ("updated", updated)] {
            if n > 0 {
                self.upserts
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc_by(n);
            }
        }
    }

    /// The text exposition, with the pool gauges read now.
    pub fn render(&self, pool: &Pool) -> String {
        let state = pool.state();
        self.pool_connections.set(state.connections.into());
        self.pool_idle.set(state.idle_connections.into());
        self.pool_max.set(pool.max_size().into());
        self.pool_waiting.set(crate::db::waiting());
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Prometheus metrics.
///
/// Request counts and latency histograms per route pattern, method and status; pool size, open,
/// idle and waiting; session upserts created vs updated. Unauthenticated, like the probes: bind
/// the service where only the scraper can reach this path, or filter it at the proxy.
#[utoipa::path(
    tag = "system",
    responses((status = 200, description = "Prometheus text format 1.0.0.",
               content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
               body = String))
)]
#[get("/metrics")]
pub async fn metrics(metrics: web::Data<Metrics>, pool: web::Data<Pool>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.render(&pool))
}
