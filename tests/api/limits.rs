//! Limits: per-account budgets (429 with `Retry-After` and `RateLimit-*`), separate budgets for
//! upserts and the rest, the cap on concurrent exports, the body read timeout (408), and a
//! panicking handler answering 500 problem+json.

use std::time::Duration;

use actix_web::test::TestRequest;
use actix_web::web;
use contacts_api::config::Limits;
use serde_json::json;

use crate::helpers::*;

fn limits(upserts: u32, requests: u32) -> Limits {
    Limits {
        upserts_per_minute: upserts,
        requests_per_minute: requests,
        ..Default::default()
    }
}

fn num(r: &Resp, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

#[actix_web::test]
async fn a_spent_budget_answers_429_with_retry_after_and_ratelimit_headers() {
    let app = spawn_custom(limits(100, 3), |_| {}).await;
    let t = token(1, "contacts:read");
    for remaining in [2, 1, 0] {
        let r = app.get("/api/v1/contacts", &t).await;
        r.ok(200);
        assert_eq!(num(&r, "ratelimit-limit"), 3);
        assert_eq!(num(&r, "ratelimit-remaining"), remaining);
        // 20 s refill one request: the budget is full again after (3 - remaining) × 20 s.
        assert_eq!(num(&r, "ratelimit-reset"), (3 - remaining) * 20);
        assert_eq!(r.header("ratelimit-policy").as_deref(), Some("3;w=60"));
    }
    let r = app.get("/api/v1/contacts/1", &t).await;
    r.problem(429, "rate_limited");
    let retry = num(&r, "retry-after");
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(num(&r, "ratelimit-remaining"), 0);
    assert_eq!(num(&r, "ratelimit-limit"), 3);
    assert_eq!(num(&r, "ratelimit-reset"), retry);
    assert!(r.header("x-request-id").is_some());
}

#[actix_web::test]
async fn each_account_has_its_own_budget() {
    let app = spawn_custom(limits(100, 2), |_| {}).await;
    let a = token(1, "contacts:read");
    let b = token(2, "contacts:read");
    app.get("/api/v1/contacts", &a).await.ok(200);
    app.get("/api/v1/contacts", &a).await.ok(200);
    app.get("/api/v1/contacts", &a)
        .await
        .problem(429, "rate_limited");
    // Account 2 is untouched by account 1's spending, and a second token of account 1 (another
    // principal) shares account 1's spent budget.
    let r = app.get("/api/v1/contacts", &b).await;
    r.ok(200);
    assert_eq!(num(&r, "ratelimit-remaining"), 1);
    let a2 = token_for(1, "someone-else", "contacts:read", None);
    app.get("/api/v1/contacts", &a2)
        .await
        .problem(429, "rate_limited");
}

#[actix_web::test]
async fn upserts_spend_their_own_budget() {
    let app = spawn_custom(limits(2, 1), |_| {}).await;
    let t = token(1, "contacts:read contacts:upsert");
    // The one "other" request of the minute...
    app.get("/api/v1/contacts", &t).await.ok(200);
    app.get("/api/v1/contacts", &t)
        .await
        .problem(429, "rate_limited");
    // ...does not stop the chatbot runtime's upserts, which have their own budget.
    let r = app.upsert(&t, "bot", "s1", json!({"channel": "web"})).await;
    r.ok(201);
    assert_eq!(num(&r, "ratelimit-limit"), 2);
    assert_eq!(num(&r, "ratelimit-remaining"), 1);
    let batch = json!({"items": [{"chatbot_id": "bot", "session_id": "s2", "channel": "web"}]});
    app.call(
        actix_web::http::Method::POST,
        "/api/v1/contacts/batch-upsert",
        &t,
        Some(batch),
    )
    .await
    .ok(200);
    let r = app.upsert(&t, "bot", "s3", json!({"channel": "web"})).await;
    r.problem(429, "rate_limited");
    // Nothing was written by the refused upsert.
    let n: i64 = {
        use diesel::dsl::count_star;
        use diesel::prelude::*;
        contacts_api::schema::contacts::table
            .select(count_star())
            .get_result(&mut app.db.conn())
            .unwrap()
    };
    assert_eq!(n, 2);
}

#[actix_web::test]
async fn requests_that_fail_authentication_spend_no_budget() {
    let app = spawn_custom(limits(100, 1), |_| {}).await;
    for _ in 0..3 {
        app.get("/api/v1/contacts", "forged")
            .await
            .problem(401, "invalid_token");
        app.get("/api/v1/contacts", &token(1, "audit:read"))
            .await
            .problem(403, "insufficient_scope");
    }
    app.get("/api/v1/contacts", &token(1, "contacts:read"))
        .await
        .ok(200);
}

#[actix_web::test]
async fn a_zero_budget_turns_the_limit_off() {
    let app = spawn_custom(limits(0, 0), |_| {}).await;
    let t = token(1, "contacts:read");
    for _ in 0..20 {
        let r = app.get("/api/v1/contacts", &t).await;
        r.ok(200);
        assert!(r.header("ratelimit-limit").is_none());
    }
}

#[actix_web::test]
async fn an_account_runs_at_most_its_share_of_exports_at_once() {
    let app = spawn_custom(
        Limits {
            exports_per_account: 1,
            ..limits(0, 0)
        },
        |_| {},
    )
    .await;
    let a = token(1, "contacts:export");
    let b = token(2, "contacts:export");
    // The first export's body is not read yet: it is still running and holds its slot.
    let running = app
        .send_raw(
            TestRequest::get()
                .uri("/api/v1/contacts/export")
                .insert_header(("authorization", format!("Bearer {a}"))),
        )
        .await;
    assert_eq!(running.status(), 200);
    let r = app.get("/api/v1/contacts/export", &a).await;
    r.problem(429, "too_many_exports");
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    // Another account is not affected.
    assert_eq!(app.get("/api/v1/contacts/export", &b).await.status, 200);
    // Once the running export ends (read to the end, or its client gone), the slot is free.
    drop(running);
    for _ in 0..2 {
        assert_eq!(app.get("/api/v1/contacts/export", &a).await.status, 200);
    }
}

#[actix_web::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let app = spawn_custom(
        Limits {
            client_timeout: Duration::from_secs(1),
            ..limits(0, 0)
        },
        |_| {},
    )
    .await;
    let t = token(1, "contacts:upsert");
    // Headers promise a body that never comes.
    let (sender, payload) = actix_http::h1::Payload::create(false);
    let req = TestRequest::put()
        .uri("/api/v1/chatbots/bot/sessions/slow/contact")
        .insert_header(("authorization", format!("Bearer {t}")))
        .insert_header(("content-type", "application/json"))
        .to_request();
    let payload: actix_http::Payload = payload.into();
    let (req, _) = req.replace_payload(payload);
    let started = std::time::Instant::now();
    let r = app.send_request(req).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    r.problem(408, "request_timeout");
    drop(sender);
    let n: i64 = {
        use diesel::dsl::count_star;
        use diesel::prelude::*;
        contacts_api::schema::contacts::table
            .select(count_star())
            .get_result(&mut app.db.conn())
            .unwrap()
    };
    assert_eq!(n, 0);
}

async fn boom() -> &'static str {
    panic!("boom at the handler");
}

#[actix_web::test]
async fn a_panicking_handler_answers_500_problem_json_and_the_app_keeps_serving() {
    let app = spawn_custom(limits(0, 0), |cfg| {
        cfg.route("/test/panic", web::get().to(boom));
    })
    .await;
    let r = app
        .send(
            TestRequest::get()
                .uri("/test/panic")
                .insert_header(("x-request-id", "panic-1")),
        )
        .await;
    let p = r.problem(500, "internal_error");
    assert_eq!(p["request_id"], "panic-1");
    assert_eq!(r.header("x-request-id").as_deref(), Some("panic-1"));
    assert!(!String::from_utf8_lossy(&r.body).contains("boom"));
    // The same app (same worker) answers the next requests.
    app.send(TestRequest::get().uri("/healthz")).await.ok(200);
    app.get("/api/v1/contacts", &token(1, "contacts:read"))
        .await
        .ok(200);
    // The panic is counted under its own route label.
    let metrics = app.send(TestRequest::get().uri("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="panicked",status="500"} 1"#),
        "{text}"
    );
}

#[actix_web::test]
async fn metrics_count_requests_by_route_and_status_with_latency_pool_and_upserts() {
    let app = spawn_custom(limits(0, 0), |_| {}).await;
    let t = token(1, "contacts:read contacts:upsert");
    app.upsert_ok(&t, "bot", "s1", json!({"channel": "web"}))
        .await;
    app.upsert_ok(&t, "bot", "s1", json!({"channel": "web", "name": "Ada"}))
        .await;
    app.upsert_ok(&t, "bot", "s2", json!({"channel": "web"}))
        .await;
    app.get("/api/v1/contacts/999999", &t)
        .await
        .problem(404, "not_found");
    let r = app.send(TestRequest::get().uri("/metrics")).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8_lossy(&r.body).to_string();
    let upsert = "/api/v1/chatbots/{chatbot_id}/sessions/{session_id}/contact";
    for line in [
        format!(r#"http_requests_total{{method="PUT",route="{upsert}",status="201"}} 2"#),
        format!(r#"http_requests_total{{method="PUT",route="{upsert}",status="200"}} 1"#),
        r#"http_requests_total{method="GET",route="/api/v1/contacts/{id}",status="404"} 1"#.into(),
        format!(
            r#"http_request_duration_seconds_count{{method="PUT",route="{upsert}",status="201"}} 2"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{le="10.0",method="PUT",route="{upsert}",status="201"}} 2"#
        ),
        r#"contacts_upserts_total{outcome="created"} 2"#.into(),
        r#"contacts_upserts_total{outcome="updated"} 1"#.into(),
        "db_pool_max_connections 20".into(),
        "db_pool_waiting 0".into(),
        "# EOF".into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    let open: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("db_pool_connections "))
        .expect("db_pool_connections")
        .parse()
        .unwrap();
    assert!((1..=20).contains(&open), "db_pool_connections {open}");
    // Route patterns only: no session id, account or token in any name or label. Values are
    // left out of the check: a latency sum such as 0.0069999999 may contain the digits of the id.
    for leak in ["s1", "account", "Bearer", "999999"] {
        for line in text.lines() {
            let series = line
                .rsplit_once(' ')
                .map_or(line, |(series, _value)| series);
            assert!(!series.contains(leak), "metrics leak `{leak}` in `{line}`");
        }
    }
}

/// The request-head limits the application enforces itself (below actix-http's fixed ones,
/// which answer an empty 431 or 400 before the application runs): problem+json with
/// `X-Request-Id`, like every other refusal.
#[actix_web::test]
async fn oversized_request_heads_are_problem_json() {
    let app = spawn().await;
    let t = token(1, "contacts:read");
    // A query string beyond 8 KiB: 414, before anything parses it.
    let long = format!("/api/v1/contacts?q={}", "a".repeat(8 * 1024));
    let r = app
        .send(
            TestRequest::get()
                .uri(&long)
                .insert_header(("authorization", format!("Bearer {t}"))),
        )
        .await;
    r.problem(414, "uri_too_long");
    // Just within: answered normally.
    let fits = format!("/healthz?x={}", "a".repeat(8 * 1024 - 11));
    app.send(TestRequest::get().uri(&fits)).await.ok(200);
    let over = format!("/healthz?x={}", "a".repeat(8 * 1024 - 10));
    app.send(TestRequest::get().uri(&over))
        .await
        .problem(414, "uri_too_long");
    // More than 64 header fields: 431.
    let mut req = TestRequest::get()
        .uri("/api/v1/contacts")
        .insert_header(("authorization", format!("Bearer {t}")));
    for i in 0..70 {
        req = req.append_header((format!("x-filler-{i}"), "1"));
    }
    app.send(req).await.problem(431, "header_fields_too_large");
    // More than 32 KiB of header fields: 431, unauthenticated or not.
    let r = app
        .send(
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("x-a", "a".repeat(20 * 1024)))
                .insert_header(("x-b", "b".repeat(20 * 1024))),
        )
        .await;
    r.problem(431, "header_fields_too_large");
}
