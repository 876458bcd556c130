//! Database trouble: an exhausted pool answers 503 with Retry-After; a failing query answers a
//! 500 whose body carries nothing internal.

use std::time::{Duration, Instant};

use contacts_api::config::JwtConfig;
use diesel::connection::SimpleConnection;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn an_exhausted_pool_answers_503_with_retry_after_within_seconds() {
    let jwt = JwtConfig {
        secret: Some(SECRET.into()),
        ..Default::default()
    };
    let app = spawn_full(jwt, 1).await;
    let t = token(1, "contacts:read");
    app.get("/api/v1/contacts", &t).await.ok(200);
    let held = app.db.pool.get().unwrap();
    let started = Instant::now();
    let r = app.get("/api/v1/contacts", &t).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered in {:?}",
        started.elapsed()
    );
    r.problem(503, "service_unavailable");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    drop(held);
    app.get("/api/v1/contacts", &t).await.ok(200);
}

#[actix_web::test]
async fn a_failing_query_answers_500_without_internals() {
    let app = spawn().await;
    let t = token(1, "contacts:read contacts:upsert");
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api"}))
        .await;
    app.db
        .conn()
        .batch_execute("DROP TABLE contact_sessions")
        .unwrap();
    let r = app
        .get(&format!("/api/v1/contacts/{}/sessions", c["id"]), &t)
        .await;
    let p = r.problem(500, "internal_error");
    let text = String::from_utf8_lossy(&r.body).to_lowercase();
    for leak in [
        "contact_sessions",
        "relation",
        "select",
        "sql",
        "diesel",
        "panicked",
    ] {
        assert!(!text.contains(leak), "500 body leaks `{leak}`: {p}");
    }
}
