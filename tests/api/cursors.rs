//! Forged cursors: a cursor is client input. One that decodes to a value PostgreSQL cannot take
//! (NUL in a string, a time before 4713 BC) is a 400, never a 500 (issue #14).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;

fn decode(c: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap()
}

fn encode(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// The first page's cursor of `path` (which must have a next page), decoded.
macro_rules! cursor_of {
    ($app:expr, $path:expr, $t:expr) => {{
        let page = $app.get($path, $t).await.ok(200);
        decode(page["next_cursor"].as_str().expect("a next page"))
    }};
}

#[actix_web::test]
async fn forged_cursors_with_values_the_database_cannot_take_are_400() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:write contacts:read audit:read");
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = app
            .upsert_ok(
                &t,
                "bot",
                &format!("s{i}"),
                json!({"channel": "web", "name": format!("N{i}"), "email": "dup@example.com"}),
            )
            .await;
        ids.push(c["id"].as_i64().unwrap());
    }
    // A contact with two sessions, for the sessions listing.
    app.call(
        actix_web::http::Method::POST,
        &format!("/api/v1/contacts/{}/merge", ids[0]),
        &t,
        Some(json!({"source_ids": [ids[1]]})),
    )
    .await
    .ok(200);

    let mut forged: Vec<(String, Value)> = Vec::new();
    // List by name: a NUL in the name key.
    let base = "/api/v1/contacts?limit=1&sort=name";
    let mut c = cursor_of!(app, base, &t);
    c["p"]["key"] = json!({"Name": "a\u{0}b"});
    forged.push((base.into(), c));
    // List by time: years PostgreSQL refuses, and absurd ones it would take.
    for when in [
        "-262143-01-01T00:00:00Z",
        "-5000-01-01T00:00:00Z",
        "+262143-01-01T00:00:00Z",
    ] {
        for sort in ["created_at", "-last_seen_at"] {
            let base = format!("/api/v1/contacts?limit=1&sort={sort}");
            let mut c = cursor_of!(app, &base, &t);
            c["p"]["key"] = json!({ "Time": when });
            forged.push((base, c));
        }
    }
    // Sessions: NUL in the chatbot or session id, an out-of-range time.
    let base = format!("/api/v1/contacts/{}/sessions?limit=1", ids[0]);
    let good = cursor_of!(app, &base, &t);
    for (field, value) in [
        ("b", json!("bot\u{0}")),
        ("s", json!("\u{0}")),
        ("t", json!("-262143-01-01T00:00:00Z")),
    ] {
        let mut c = good.clone();
        c[field] = value;
        forged.push((base.clone(), c));
    }
    // Duplicates: NUL in the value to continue after.
    let base = "/api/v1/contacts/duplicates?limit=1";
    app.upsert_ok(
        &t,
        "bot",
        "s9",
        json!({"channel": "web", "email": "other@example.com"}),
    )
    .await;
    app.upsert_ok(
        &t,
        "bot",
        "s10",
        json!({"channel": "web", "email": "OTHER@example.com"}),
    )
    .await;
    let mut c = cursor_of!(app, base, &t);
    c["v"] = json!("dup\u{0}@example.com");
    forged.push((base.into(), c));
    // Audit: NUL in the filter key.
    let base = "/api/v1/audit-events?limit=1";
    let mut c = cursor_of!(app, base, &t);
    c["f"] = json!([null, null, "\u{0}"]);
    forged.push((base.into(), c));

    for (base, c) in forged {
        let path = format!("{base}&cursor={}", encode(&c));
        let body = app.get(&path, &t).await.problem(400, "invalid_parameter");
        assert_eq!(body["errors"][0]["field"], "cursor", "{c}: {body}");
    }
}

#[actix_web::test]
async fn time_filters_outside_years_1_to_9999_are_400_on_every_listing() {
    let app = spawn().await;
    let t = token(1, "contacts:read contacts:export contacts:delete");
    for value in [
        "-5000-01-01",
        "%2B262143-12-31",
        "-262144-01-01",
        "10000-01-01",
        "0000-12-31",
    ] {
        for path in [
            format!("/api/v1/contacts?created_from={value}"),
            format!("/api/v1/contacts?last_seen_to={value}&include_total=true"),
            format!("/api/v1/contacts/export?format=csv&created_to={value}"),
            format!("/api/v1/contacts/stats?interval=month&to={value}"),
            format!("/api/v1/contacts/stats?from={value}"),
        ] {
            app.get(&path, &t).await.problem(400, "invalid_parameter");
        }
    }
    let r = app
        .call(
            actix_web::http::Method::POST,
            "/api/v1/contacts/bulk-delete",
            &t,
            Some(json!({"filter": {"created_from": "-5000-01-01"}})),
        )
        .await;
    r.problem(422, "validation_failed");
}
