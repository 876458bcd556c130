//! Create, get, patch (merge patch, If-Match), delete and list.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::helpers::*;

const RW: &str = "contacts:read contacts:write contacts:delete contacts:upsert";

fn patch_req(id: i64, token: &str, body: Value) -> TestRequest {
    TestRequest::patch()
        .uri(&format!("/api/v1/contacts/{id}"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("content-type", "application/merge-patch+json"))
        .set_payload(body.to_string())
}

#[actix_web::test]
async fn create_by_hand_with_and_without_a_session() {
    let app = spawn().await;
    let t = token(1, RW);
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &t,
            Some(
                json!({"chatbot_id": "bot", "channel": "api", "session_id": "s1",
                        "name": "Grace", "email": "grace@example.com", "payload": {"a": 1}}),
            ),
        )
        .await;
    let c = r.ok(201);
    let id = c["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location").unwrap(),
        format!("/api/v1/contacts/{id}")
    );
    assert_eq!(r.header("etag").unwrap(), "\"1\"");
    assert_eq!(c["sessions_count"], 1);
    assert_eq!(c["session_id"], "s1");

    let bare = app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &t,
            Some(json!({"chatbot_id": "bot", "channel": "api"})),
        )
        .await
        .ok(201);
    assert_eq!(bare["sessions_count"], 0);
    assert_eq!(bare["session_id"], Value::Null);
    assert_eq!(bare["payload"], json!({}));

    // The session is linked already: 409 naming the contact, nothing written.
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &t,
            Some(json!({"chatbot_id": "bot", "channel": "api", "session_id": "s1"})),
        )
        .await;
    let p = r.problem(409, "session_conflict");
    assert_eq!(p["existing_contact_id"], id);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 2);

    // A later upsert of that session updates the hand-made contact.
    let u = app
        .upsert_ok(&t, "bot", "s1", json!({"channel": "web"}))
        .await;
    assert_eq!(u["id"], id);
}

#[actix_web::test]
async fn create_requires_chatbot_and_channel() {
    let app = spawn().await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &token(1, RW),
            Some(json!({"name": "x"})),
        )
        .await;
    r.problem(422, "invalid_body");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
}

#[actix_web::test]
async fn get_answers_the_contact_with_its_etag() {
    let app = spawn().await;
    let t = token(1, RW);
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api", "name": "Ada"}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let r = app.get(&format!("/api/v1/contacts/{id}"), &t).await;
    assert_eq!(r.ok(200), c);
    assert_eq!(r.header("etag").unwrap(), "\"1\"");
    assert_eq!(r.header("cache-control").unwrap(), "no-store");
    app.get("/api/v1/contacts/999999", &t)
        .await
        .problem(404, "not_found");
}

/// The payload is written as PostgreSQL stores it (`models::JsonText`): compact, keys in
/// `jsonb` order (shorter first), the same bytes in a contact, a page and an NDJSON export.
#[actix_web::test]
async fn the_payload_is_compact_json_in_jsonb_key_order() {
    let app = spawn().await;
    let t = token(1, "contacts:read contacts:upsert contacts:export");
    let payload = json!({"ccc": {"x": "y z, \"q\""}, "aa": [1, 2.5], "b": true});
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s",
            json!({"channel": "api", "payload": payload}),
        )
        .await;
    let expected = r#""payload":{"b":true,"aa":[1,2.5],"ccc":{"x":"y z, \"q\""}}"#;
    for path in [
        format!("/api/v1/contacts/{}", c["id"]),
        "/api/v1/contacts".to_string(),
        "/api/v1/contacts/export?format=ndjson".to_string(),
    ] {
        let r = app.get(&path, &t).await;
        assert_eq!(r.status.as_u16(), 200, "{path}");
        let body = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(body.contains(expected), "{path}: {body}");
    }
}

#[actix_web::test]
async fn patch_merges_fields_and_bumps_the_version() {
    let app = spawn().await;
    let t = token(1, RW);
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s",
            json!({"channel": "api", "name": "Ada", "email": "ada@example.com",
                   "country_code": "GB", "payload": {"plan": "pro", "meta": {"a": 1, "b": 2}}}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    let r = app
        .send(patch_req(
            id,
            &t,
            json!({"name": "Ada King", "email": null, "phone": "07700 900123",
                   "payload": {"plan": null, "meta": {"b": null, "c": 3}}}),
        ))
        .await;
    let p = r.ok(200);
    assert_eq!(r.header("etag").unwrap(), "\"2\"");
    assert_eq!(p["name"], "Ada King");
    assert_eq!(p["email"], Value::Null, "null clears");
    assert_eq!(
        p["phone"], "+447700900123",
        "national number uses the stored country"
    );
    assert_eq!(p["payload"], json!({"meta": {"a": 1, "c": 3}}));
    assert_eq!(p["version"], 2);
    assert_eq!(
        p["last_seen_at"], c["last_seen_at"],
        "an edit is not an interaction"
    );
    assert!(p["updated_at"].as_str().unwrap() > c["updated_at"].as_str().unwrap());

    // application/json is accepted too; an empty patch changes nothing, not even the version.
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            &t,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.ok(200)["version"], 2);

    // payload: null clears it to {}.
    let r = app.send(patch_req(id, &t, json!({"payload": null}))).await;
    assert_eq!(r.ok(200)["payload"], json!({}));
}

#[actix_web::test]
async fn patch_and_delete_honour_if_match() {
    let app = spawn().await;
    let t = token(1, RW);
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api", "name": "A"}))
        .await;
    let id = c["id"].as_i64().unwrap();

    let stale = patch_req(id, &t, json!({"name": "B"})).insert_header(("if-match", "\"7\""));
    app.send(stale).await.problem(412, "precondition_failed");
    assert_eq!(
        app.db.count("SELECT version AS n FROM contacts"),
        1,
        "nothing changed"
    );

    let fresh = patch_req(id, &t, json!({"name": "B"})).insert_header(("if-match", "\"1\""));
    assert_eq!(app.send(fresh).await.ok(200)["name"], "B");
    let star = patch_req(id, &t, json!({"name": "C"})).insert_header(("if-match", "*"));
    assert_eq!(app.send(star).await.ok(200)["version"], 3);

    let del = |v: &str| {
        TestRequest::delete()
            .uri(&format!("/api/v1/contacts/{id}"))
            .insert_header(("authorization", format!("Bearer {t}")))
            .insert_header(("if-match", v.to_string()))
    };
    app.send(del("\"2\""))
        .await
        .problem(412, "precondition_failed");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
    app.send(del("\"1\", \"3\"")).await.ok(204);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
}

#[actix_web::test]
async fn concurrent_patches_with_the_same_if_match_let_exactly_one_win() {
    let app = spawn().await;
    let t = token(1, RW);
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api"}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let calls = (0..10).map(|i| {
        app.send(
            patch_req(id, &t, json!({"name": format!("n{i}")}))
                .insert_header(("if-match", "\"1\"")),
        )
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(
        results.iter().filter(|r| r.status.as_u16() == 200).count(),
        1
    );
    assert_eq!(
        results.iter().filter(|r| r.status.as_u16() == 412).count(),
        9
    );
    assert_eq!(app.db.count("SELECT version AS n FROM contacts"), 2);
}

#[actix_web::test]
async fn delete_removes_the_contact_and_its_sessions() {
    let app = spawn().await;
    let t = token(1, RW);
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api"}))
        .await;
    let other = app
        .upsert_ok(&t, "bot", "s2", json!({"channel": "api"}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let path = format!("/api/v1/contacts/{id}");
    let r = app.call(Method::DELETE, &path, &t, None).await;
    r.ok(204);
    assert!(r.body.is_empty());
    app.get(&path, &t).await.problem(404, "not_found");
    app.call(Method::DELETE, &path, &t, None)
        .await
        .problem(404, "not_found");
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contact_sessions WHERE contact_id = {id}"
        )),
        0
    );
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
    app.get(&format!("/api/v1/contacts/{}", other["id"]), &t)
        .await
        .ok(200);
    app.call(
        Method::DELETE,
        &format!("/api/v1/contacts/{}", other["id"]),
        &token(1, "contacts:write"),
        None,
    )
    .await
    .problem(403, "insufficient_scope");
}

#[actix_web::test]
async fn list_pages_newest_first_with_an_opaque_cursor() {
    let app = spawn().await;
    let t = token(1, RW);
    let mut ids = Vec::new();
    for i in 0..7 {
        let c = app
            .upsert_ok(&t, "bot", &format!("s{i}"), json!({"channel": "api"}))
            .await;
        ids.push(c["id"].as_i64().unwrap());
    }
    // A contact that gave nothing is still listed.
    let empty = app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &t,
            Some(json!({"chatbot_id": "b", "channel": "api"})),
        )
        .await
        .ok(201);
    ids.push(empty["id"].as_i64().unwrap());
    ids.reverse();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/api/v1/contacts?limit=3".to_string(),
            Some(c) => format!("/api/v1/contacts?limit=3&cursor={c}"),
        };
        let page = app.get(&path, &t).await.ok(200);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 3);
        seen.extend(data.iter().map(|c| c["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every contact exactly once, newest first");

    let all = app.get("/api/v1/contacts", &t).await.ok(200);
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        8,
        "default limit is 50"
    );
    assert_eq!(all["next_cursor"], Value::Null);
}
