//! The session upsert: create-then-update semantics and exactly-once under concurrency.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn first_upsert_creates_then_updates_with_null_keeping_and_payload_merging() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert");
    let r = app
        .upsert(
            &t,
            "support-bot",
            "wa-447700900123",
            json!({"channel": "whatsapp", "name": " Ada Lovelace ", "phone": "07700 900123",
                   "country_code": "gb", "payload": {"plan": "pro", "seats": 3}}),
        )
        .await;
    let c = r.ok(201);
    let id = c["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location").unwrap(),
        format!("/api/v1/contacts/{id}")
    );
    assert_eq!(r.header("etag").unwrap(), "\"1\"");
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(c["name"], "Ada Lovelace");
    assert_eq!(c["phone"], "+447700900123");
    assert_eq!(c["country_code"], "GB");
    assert_eq!(c["channel"], "whatsapp");
    assert_eq!(c["chatbot_id"], "support-bot");
    assert_eq!(c["session_id"], "wa-447700900123");
    assert_eq!(c["sessions_count"], 1);
    assert_eq!(c["version"], 1);
    assert_eq!(c["created_at"], c["last_seen_at"]);

    let r = app
        .upsert(
            &t,
            "support-bot",
            "wa-447700900123",
            json!({"channel": "whatsapp", "name": null, "email": "ada@example.com",
                   "payload": {"plan": "enterprise", "locale": "en"}}),
        )
        .await;
    let u = r.ok(200);
    assert_eq!(r.header("location"), None);
    assert_eq!(u["id"], id, "same session, same contact");
    assert_eq!(u["name"], "Ada Lovelace", "null keeps the stored value");
    assert_eq!(u["phone"], "+447700900123", "absent keeps the stored value");
    assert_eq!(u["email"], "ada@example.com");
    assert_eq!(
        u["payload"],
        json!({"plan": "enterprise", "seats": 3, "locale": "en"}),
        "payload merges key by key"
    );
    assert_eq!(u["version"], 2);
    assert_eq!(u["created_at"], c["created_at"]);
    assert!(u["last_seen_at"].as_str().unwrap() > c["last_seen_at"].as_str().unwrap());
    assert_eq!(u["updated_at"], u["last_seen_at"]);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        1
    );
}

#[actix_web::test]
async fn the_channel_and_ip_follow_the_latest_interaction() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert");
    app.upsert_ok(
        &t,
        "bot",
        "s1",
        json!({"channel": "website", "ip_address": "203.0.113.9"}),
    )
    .await;
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s1",
            json!({"channel": "Telegram", "ip_address": "2001:db8::1"}),
        )
        .await;
    assert_eq!(c["channel"], "telegram");
    assert_eq!(c["ip_address"], "2001:db8::1");
    let id = c["id"].as_i64().unwrap();
    let s = app
        .get(
            &format!("/api/v1/contacts/{id}/sessions"),
            &token(1, "contacts:read"),
        )
        .await
        .ok(200);
    assert_eq!(s["data"][0]["channel"], "telegram");
    assert_eq!(s["data"][0]["ip_address"], "2001:db8::1");
}

#[actix_web::test]
async fn fifty_concurrent_upserts_of_one_session_make_one_contact_and_one_session() {
    let app = spawn().await;
    let t = token(7, "contacts:upsert");
    let calls = (0..50).map(|i| {
        app.upsert(
            &t,
            "bot",
            "same-session",
            json!({"channel": "website", "payload": {format!("k{i}"): i}}),
        )
    });
    let results = futures::future::join_all(calls).await;
    let created = results.iter().filter(|r| r.status.as_u16() == 201).count();
    let updated = results.iter().filter(|r| r.status.as_u16() == 200).count();
    assert_eq!((created, updated), (1, 49), "exactly one call creates");
    let ids: std::collections::HashSet<i64> = results
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "every call answers the same contact");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        1
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts, jsonb_object_keys(payload)"),
        50,
        "no merge is lost"
    );
    assert_eq!(app.db.count("SELECT max(version) AS n FROM contacts"), 50);
}

#[actix_web::test]
async fn concurrent_upserts_of_many_sessions_make_one_contact_each() {
    let app = spawn().await;
    let t = token(7, "contacts:upsert");
    let sessions: Vec<String> = (0..60).map(|i| format!("s{}", i % 12)).collect();
    let calls = sessions
        .iter()
        .map(|s| app.upsert(&t, "bot", s, json!({"channel": "website"})));
    let results = futures::future::join_all(calls).await;
    assert_eq!(
        results.iter().filter(|r| r.status.as_u16() == 201).count(),
        12
    );
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 12);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        12
    );
}

#[actix_web::test]
async fn the_same_session_id_in_two_accounts_gives_two_contacts() {
    let app = spawn().await;
    let a = app
        .upsert_ok(
            &token(1, "contacts:upsert"),
            "bot",
            "s",
            json!({"channel": "api", "name": "A"}),
        )
        .await;
    let b = app
        .upsert_ok(
            &token(2, "contacts:upsert"),
            "bot",
            "s",
            json!({"channel": "api", "name": "B"}),
        )
        .await;
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["name"], "A");
    assert_eq!(b["name"], "B");
    assert_eq!(
        b["version"], 1,
        "account 2's upsert created, it did not update account 1's contact"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1"),
        1
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 2"),
        1
    );
}

#[actix_web::test]
async fn the_same_session_id_under_two_chatbots_gives_two_contacts() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert");
    let a = app
        .upsert_ok(&t, "bot-a", "s", json!({"channel": "api"}))
        .await;
    let b = app
        .upsert_ok(&t, "bot-b", "s", json!({"channel": "api"}))
        .await;
    assert_ne!(a["id"], b["id"]);
}

#[actix_web::test]
async fn a_write_token_may_upsert_and_a_chatbot_restricted_token_only_for_its_chatbot() {
    let app = spawn().await;
    app.upsert_ok(
        &token(1, "contacts:write"),
        "bot",
        "s",
        json!({"channel": "api"}),
    )
    .await;
    let restricted = token_for(1, "runtime", "contacts:upsert", Some("bot"));
    app.upsert_ok(&restricted, "bot", "s2", json!({"channel": "api"}))
        .await;
    app.upsert(&restricted, "other-bot", "s3", json!({"channel": "api"}))
        .await
        .problem(403, "insufficient_scope");
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE chatbot_id = 'other-bot'"),
        0
    );
    app.upsert(
        &token(1, "contacts:read"),
        "bot",
        "s4",
        json!({"channel": "api"}),
    )
    .await
    .problem(403, "insufficient_scope");
}

#[actix_web::test]
async fn an_upsert_after_delete_starts_a_fresh_contact() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:delete");
    let c = app
        .upsert_ok(&t, "bot", "s", json!({"channel": "api", "name": "Old"}))
        .await;
    let id = c["id"].as_i64().unwrap();
    app.call(
        actix_web::http::Method::DELETE,
        &format!("/api/v1/contacts/{id}"),
        &t,
        None,
    )
    .await
    .ok(204);
    let r = app.upsert(&t, "bot", "s", json!({"channel": "api"})).await;
    let fresh = r.ok(201);
    assert_ne!(fresh["id"], id);
    assert_eq!(fresh["name"], serde_json::Value::Null);
}
