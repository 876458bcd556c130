//! `GET /contacts/{id}/sessions`.

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn sessions_of_a_contact_newest_first_and_paginated() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:read");
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s1",
            json!({"channel": "website", "ip_address": "203.0.113.9"}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    // Link two more sessions to the same contact directly (merge, a later feature, does this).
    let mut conn = app.db.conn();
    use diesel::RunQueryDsl;
    for (sid, offset) in [("s2", 1), ("s3", 2)] {
        diesel::sql_query(format!(
            "INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel, last_seen_at)
             VALUES (1, 'bot', '{sid}', {id}, 'whatsapp', now() + interval '{offset} minutes')"
        ))
        .execute(&mut conn)
        .unwrap();
    }
    let page = app
        .get(&format!("/api/v1/contacts/{id}/sessions?limit=2"), &t)
        .await
        .ok(200);
    let data = page["data"].as_array().unwrap();
    assert_eq!(
        data.iter()
            .map(|s| s["session_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["s3", "s2"]
    );
    for key in [
        "chatbot_id",
        "session_id",
        "channel",
        "ip_address",
        "first_seen_at",
        "last_seen_at",
    ] {
        assert!(data[0].get(key).is_some(), "{key}");
    }
    assert!(data[0].get("account_id").is_none() && data[0].get("contact_id").is_none());
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = app
        .get(
            &format!("/api/v1/contacts/{id}/sessions?limit=2&cursor={cursor}"),
            &t,
        )
        .await
        .ok(200);
    assert_eq!(next["data"][0]["session_id"], "s1");
    assert_eq!(next["data"][0]["ip_address"], "203.0.113.9");
    assert_eq!(next["next_cursor"], serde_json::Value::Null);

    app.get("/api/v1/contacts/424242/sessions", &t)
        .await
        .problem(404, "not_found");
    // A cursor of another contact's listing is refused.
    let other = app
        .upsert_ok(&t, "bot", "x", json!({"channel": "api"}))
        .await;
    app.get(
        &format!("/api/v1/contacts/{}/sessions?cursor={cursor}", other["id"]),
        &t,
    )
    .await
    .problem(400, "invalid_parameter");
}
