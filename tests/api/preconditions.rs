//! Every write evaluates `If-Match` and `If-None-Match` or refuses (RFC 9110 §13.2.2): never a
//! condition silently ignored (issue #14). One contact: against its version; a collection: no
//! entity tag.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::helpers::*;

const ALL: &str = "contacts:upsert contacts:write contacts:read contacts:delete privacy:manage";

fn req(
    method: Method,
    path: &str,
    t: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> TestRequest {
    let mut r = TestRequest::default()
        .method(method)
        .uri(path)
        .insert_header(("authorization", format!("Bearer {t}")));
    for (k, v) in headers {
        r = r.append_header((*k, *v));
    }
    if let Some(b) = body {
        r = r.set_json(b);
    }
    r
}

#[actix_web::test]
async fn the_session_upsert_honours_if_match_and_if_none_match() {
    let app = spawn().await;
    let t = token(1, ALL);
    let path = "/api/v1/chatbots/bot/sessions/s1/contact";
    let body = || Some(json!({"channel": "web", "name": "Ada"}));
    // No contact yet: If-Match fails and creates nothing.
    for h in [("if-match", "*"), ("if-match", "\"1\"")] {
        let r = app.send(req(Method::PUT, path, &t, &[h], body())).await;
        r.problem(412, "precondition_failed");
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
    // If-None-Match: * creates only.
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-none-match", "*")],
            body(),
        ))
        .await;
    assert_eq!(r.ok(201)["version"], 1);
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-none-match", "*")],
            body(),
        ))
        .await;
    r.problem(412, "precondition_failed");
    // Stale If-Match: nothing changes, not even last_seen_at.
    let seen = app
        .db
        .count("SELECT (extract(epoch FROM last_seen_at) * 1e6)::bigint AS n FROM contacts");
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-match", "\"7\"")],
            Some(json!({"channel": "web", "name": "Eve"})),
        ))
        .await;
    assert!(r.problem(412, "precondition_failed")["detail"]
        .as_str()
        .unwrap()
        .contains("version is 1"));
    assert_eq!(app.db.count("SELECT max(version) AS n FROM contacts"), 1);
    assert_eq!(
        app.db
            .count("SELECT (extract(epoch FROM last_seen_at) * 1e6)::bigint AS n FROM contacts"),
        seen
    );
    // Weak tags never match If-Match; a matching strong one does; If-None-Match compares weakly.
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-match", "W/\"1\"")],
            body(),
        ))
        .await;
    r.problem(412, "precondition_failed");
    let r = app
        .send(req(Method::PUT, path, &t, &[("if-match", "\"1\"")], body()))
        .await;
    assert_eq!(r.ok(200)["version"], 2);
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-none-match", "W/\"2\"")],
            body(),
        ))
        .await;
    r.problem(412, "precondition_failed");
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-none-match", "\"1\"")],
            body(),
        ))
        .await;
    assert_eq!(r.ok(200)["version"], 3);
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-none-match", "nope")],
            body(),
        ))
        .await;
    r.problem(400, "invalid_header");
}

#[actix_web::test]
async fn patch_delete_and_merge_evaluate_both_headers_against_the_contact() {
    let app = spawn().await;
    let t = token(1, ALL);
    let a = app
        .upsert_ok(&t, "bot", "a", json!({"channel": "web"}))
        .await;
    let b = app
        .upsert_ok(&t, "bot", "b", json!({"channel": "web"}))
        .await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let contact = format!("/api/v1/contacts/{a}");
    let merge = format!("/api/v1/contacts/{a}/merge");
    let patch = Some(json!({"name": "X"}));
    let sources = Some(json!({"source_ids": [b]}));
    let refused = [
        (Method::PATCH, &contact, ("if-none-match", "\"1\""), &patch),
        (Method::PATCH, &contact, ("if-none-match", "*"), &patch),
        (Method::DELETE, &contact, ("if-none-match", "*"), &None),
        (Method::POST, &merge, ("if-match", "\"9\""), &sources),
        (Method::POST, &merge, ("if-none-match", "\"1\""), &sources),
    ];
    for (method, path, header, body) in refused {
        let r = app
            .send(req(method, path, &t, &[header], body.clone()))
            .await;
        r.problem(412, "precondition_failed");
    }
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contacts"),
        2,
        "nothing merged or deleted"
    );
    let r = app
        .send(req(
            Method::POST,
            &merge,
            &t,
            &[("if-match", "\"1\"")],
            sources,
        ))
        .await;
    r.ok(200);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
}

#[actix_web::test]
async fn writes_on_a_collection_refuse_tags_they_cannot_match() {
    let app = spawn().await;
    let t = token(1, ALL);
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "a",
            json!({"channel": "web", "email": "ada@example.com"}),
        )
        .await;
    let writes: Vec<(Method, &str, Value)> = vec![
        (
            Method::POST,
            "/api/v1/contacts",
            json!({"chatbot_id": "bot", "channel": "web"}),
        ),
        (
            Method::POST,
            "/api/v1/contacts/batch-upsert",
            json!({"items": [{"chatbot_id": "bot", "session_id": "z", "channel": "web"}]}),
        ),
        (
            Method::POST,
            "/api/v1/contacts/bulk-delete",
            json!({"ids": [c["id"]]}),
        ),
        (
            Method::POST,
            "/api/v1/privacy/erasure",
            json!({"email": "ada@example.com"}),
        ),
        (
            Method::POST,
            "/api/v1/privacy/access",
            json!({"email": "ada@example.com"}),
        ),
        (
            Method::PUT,
            "/api/v1/settings/retention",
            json!({"days": 30}),
        ),
    ];
    for (method, path, body) in &writes {
        for h in [
            ("if-match", "\"1\""),
            ("if-none-match", "*"),
            ("if-match", "W/\"1\""),
        ] {
            let r = app
                .send(req(method.clone(), path, &t, &[h], Some(body.clone())))
                .await;
            r.problem(412, "precondition_failed");
        }
        let r = app
            .send(req(
                method.clone(),
                path,
                &t,
                &[("if-match", "x")],
                Some(body.clone()),
            ))
            .await;
        r.problem(400, "invalid_header");
    }
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contacts"),
        1,
        "nothing written"
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        1
    );
    // `If-Match: *` (the collection exists) and unmatched If-None-Match tags hold.
    let (method, path, body) = &writes[0];
    let r = app
        .send(req(
            method.clone(),
            path,
            &t,
            &[("if-match", "*"), ("if-none-match", "\"5\"")],
            Some(body.clone()),
        ))
        .await;
    r.ok(201);
}

#[actix_web::test]
async fn a_tag_of_a_merged_away_contact_never_matches_its_target() {
    let app = spawn().await;
    let t = token(1, ALL);
    // A (session a) at version 3, B at version 2; A merged into B: session a now leads to B.
    for _ in 0..3 {
        app.upsert_ok(&t, "bot", "a", json!({"channel": "web"}))
            .await;
    }
    let mut b = json!(null);
    for _ in 0..2 {
        b = app
            .upsert_ok(&t, "bot", "b", json!({"channel": "web"}))
            .await;
    }
    let a = app
        .upsert(&t, "bot", "a", json!({"channel": "web"}))
        .await
        .ok(200);
    assert_eq!(
        (a["version"].as_i64(), b["version"].as_i64()),
        (Some(4), Some(2))
    );
    let merged = app
        .call(
            Method::POST,
            &format!("/api/v1/contacts/{}/merge", b["id"]),
            &t,
            Some(json!({"source_ids": [a["id"]]})),
        )
        .await
        .ok(200);
    assert_eq!(merged["version"], 5, "past every source's version");
    // The client still holds A's tag "4": it must not match B.
    let path = "/api/v1/chatbots/bot/sessions/a/contact";
    let r = app
        .send(req(
            Method::PUT,
            path,
            &t,
            &[("if-match", "\"4\"")],
            Some(json!({"channel": "web"})),
        ))
        .await;
    r.problem(412, "precondition_failed");
    // Only the exact text of the tag names a version.
    let contact = format!("/api/v1/contacts/{}", b["id"]);
    for tag in ["\"+5\"", "\"05\"", "\"5 \""] {
        let r = app
            .send(req(
                Method::PATCH,
                &contact,
                &t,
                &[("if-match", tag)],
                Some(json!({"name": "X"})),
            ))
            .await;
        assert!(
            matches!(r.status.as_u16(), 400 | 412),
            "{tag}: {}",
            r.status
        );
    }
    let r = app
        .send(req(
            Method::PATCH,
            &contact,
            &t,
            &[("if-match", "\"5\"")],
            Some(json!({"name": "X"})),
        ))
        .await;
    r.ok(200);
}
