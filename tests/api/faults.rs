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

#[actix_web::test]
async fn a_connection_killed_under_the_pool_costs_one_503_then_the_pool_reconnects() {
    let jwt = JwtConfig {
        secret: Some(SECRET.into()),
        ..Default::default()
    };
    // One connection: without discarding it, every later request would draw the dead one.
    let app = spawn_full(jwt, 1).await;
    let t = token(1, "contacts:read contacts:upsert");
    // A single statement outside any transaction: diesel's own broken-connection check (an
    // open or failed transaction) does not see this connection die.
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api"}))
        .await;
    let path = format!("/api/v1/contacts/{}", c["id"]);
    // What a database restart does to an idle pooled connection.
    let killed: Vec<bool> = {
        use diesel::prelude::*;
        use diesel::sql_types::{Bool, Text};
        #[derive(QueryableByName)]
        struct Killed {
            #[diesel(sql_type = Bool)]
            k: bool,
        }
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<Text, _>(&app.db.name)
        .load::<Killed>(&mut app.db.conn())
        .unwrap()
        .into_iter()
        .map(|r| r.k)
        .collect()
    };
    assert!(!killed.is_empty() && killed.iter().all(|k| *k));
    std::thread::sleep(Duration::from_millis(100));
    let first = app.get(&path, &t).await;
    if first.status != 200 {
        first.problem(503, "service_unavailable");
        assert_eq!(first.header("retry-after").as_deref(), Some("1"));
    }
    for _ in 0..5 {
        app.get(&path, &t).await.ok(200);
    }
}

#[actix_web::test]
async fn a_write_stuck_behind_a_lock_answers_503_after_the_lock_timeout() {
    let app = spawn_custom(
        contacts_api::config::Limits {
            lock_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let t = token(1, "contacts:read contacts:write contacts:upsert");
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api", "name": "Ada"}))
        .await;
    // Another session holds the contact's row for longer than the service may wait.
    let mut holder = app.db.conn();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM contacts WHERE id = {} FOR UPDATE",
            c["id"]
        ))
        .unwrap();
    let started = Instant::now();
    let req = actix_web::test::TestRequest::patch()
        .uri(&format!("/api/v1/contacts/{}", c["id"]))
        .insert_header(("authorization", format!("Bearer {t}")))
        .insert_header(("content-type", "application/merge-patch+json"))
        .set_payload(r#"{"name": "Grace"}"#);
    let r = app.send(req).await;
    let waited = started.elapsed();
    r.problem(503, "service_unavailable");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "answered after {waited:?}"
    );
    holder.batch_execute("ROLLBACK").unwrap();
    let now = app
        .get(&format!("/api/v1/contacts/{}", c["id"]), &t)
        .await
        .ok(200);
    assert_eq!(now["name"], "Ada", "the refused edit left nothing behind");
}
