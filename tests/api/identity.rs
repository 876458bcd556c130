//! Identifiers round-trip exactly or are refused (issue #14, findings 1 and 2): percent-encoded
//! bytes that are not UTF-8, and list filters whose separator could sit inside an id.

use actix_web::http::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn session_ids_that_are_not_utf8_are_refused_and_never_merge_two_people() {
    let app = spawn().await;
    let t = token(
        1,
        "contacts:upsert contacts:read contacts:write contacts:delete",
    );
    // Latin-1 é and ñ: before the fix both decoded to "Jos\u{fffd}", one session.
    // Also malformed escapes that actix's second decoding pass would complete into %E9.
    for session in [
        "Jos%E9", "Jos%F1", "%FF", "a%C3", "%C3%28", "Jos%%459", "Jos%E%39", "%F%31",
    ] {
        let r = app
            .upsert(
                &t,
                "bot",
                session,
                json!({"channel": "web", "name": "José"}),
            )
            .await;
        let body = r.problem(400, "invalid_parameter");
        assert_eq!(body["errors"][0]["field"], "path", "{body}");
    }
    for chatbot in ["b%E9", "%80"] {
        let r = app
            .upsert(&t, chatbot, "s", json!({"channel": "web"}))
            .await;
        r.problem(400, "invalid_parameter");
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        0
    );

    // UTF-8 percent-encoded ids round-trip exactly, distinct ids stay distinct.
    let e = app
        .upsert_ok(
            &t,
            "bot",
            "Jos%C3%A9",
            json!({"channel": "web", "name": "José"}),
        )
        .await;
    let n = app
        .upsert_ok(
            &t,
            "bot",
            "Jos%C3%B1",
            json!({"channel": "web", "name": "Josñ"}),
        )
        .await;
    assert_eq!(e["session_id"], "José");
    assert_eq!(n["session_id"], "Josñ");
    assert_ne!(e["id"], n["id"]);

    // Every other route and the query string get the same rule, before any handler runs.
    for (method, path) in [
        (Method::GET, "/api/v1/contacts?chatbot_id=b%E9"),
        (Method::GET, "/api/v1/contacts?q=Jos%E9"),
        (Method::GET, "/api/v1/contacts?%E9=1"),
        (
            Method::GET,
            "/api/v1/contacts/export?format=csv&chatbot_id=%FF",
        ),
        (Method::GET, "/api/v1/contacts/stats?channel=%FE"),
        (Method::GET, "/api/v1/audit-events?actor=%E9"),
        (Method::GET, "/api/v1/contacts/1%E9"),
        (Method::DELETE, "/api/v1/contacts/%E9"),
        (Method::GET, "/api/v1/nowhere/%E9"),
    ] {
        let r = app.call(method.clone(), path, &t, None).await;
        r.problem(400, "invalid_parameter");
    }
}

#[actix_web::test]
async fn chatbot_ids_with_a_comma_or_edge_spaces_are_refused_on_every_write() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:write contacts:read");
    for bad in [
        "a,b",
        ",",
        "a%2Cb",
        "%20bot",
        "bot%20",
        "bot%E2%80%83",
        "%C2%A0bot",
    ] {
        let r = app.upsert(&t, bad, "s1", json!({"channel": "web"})).await;
        let body = r.problem(422, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "chatbot_id", "{bad}: {body}");
    }
    for (k, bad) in ["a,b", " bot", "bot ", "bot\u{3000}"]
        .into_iter()
        .enumerate()
    {
        let r = app
            .call(
                Method::POST,
                "/api/v1/contacts/batch-upsert",
                &t,
                Some(json!({"items": [
                    {"chatbot_id": "ok", "session_id": format!("s0-{k}"), "channel": "web"},
                    {"chatbot_id": bad, "session_id": "s1", "channel": "web"}
                ]})),
            )
            .await;
        let body = r.ok(207);
        assert_eq!(body["results"][0]["status"], 201, "{body}");
        assert_eq!(body["results"][1]["status"], 422, "{body}");
        let r = app
            .call(
                Method::POST,
                "/api/v1/contacts",
                &t,
                Some(json!({"chatbot_id": bad, "channel": "web"})),
            )
            .await;
        let body = r.problem(422, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "chatbot_id", "{body}");
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 4);
    // Inner spaces are fine: only the edges could be mistaken for list padding.
    app.upsert_ok(&t, "support%20bot", "s2", json!({"channel": "web"}))
        .await;
}

#[actix_web::test]
async fn a_chatbot_filter_names_exactly_the_ids_it_lists_in_list_export_stats_and_bulk_delete() {
    let app = spawn().await;
    let t = token(
        1,
        "contacts:upsert contacts:read contacts:export contacts:delete",
    );
    for (bot, session) in [("a", "1"), ("b", "2"), ("a%20b", "3")] {
        app.upsert_ok(&t, bot, session, json!({"channel": "web"}))
            .await;
    }
    // `a,b` names the chatbots a and b: no chatbot can be called "a,b".
    let r = app.get("/api/v1/contacts?chatbot_id=a,b", &t).await.ok(200);
    assert_eq!(r["data"].as_array().unwrap().len(), 2);
    let r = app
        .get("/api/v1/contacts?chatbot_id=a%20b", &t)
        .await
        .ok(200);
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    assert_eq!(r["data"][0]["chatbot_id"], "a b");
    // Padding is never trimmed into another id: " b" is refused, not read as "b".
    for q in [
        "/api/v1/contacts?chatbot_id=a,%20b",
        "/api/v1/contacts?chatbot_id=%20a",
        "/api/v1/contacts?chatbot_id=a,",
        "/api/v1/contacts/export?format=ndjson&chatbot_id=b%20",
        "/api/v1/contacts/stats?chatbot_id=,a",
    ] {
        let body = app.get(q, &t).await.problem(400, "invalid_parameter");
        assert_eq!(body["errors"][0]["field"], "chatbot_id", "{q}: {body}");
    }
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts/bulk-delete",
            &t,
            Some(json!({"filter": {"chatbot_id": "a, b"}})),
        )
        .await;
    let body = r.problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "filter.chatbot_id", "{body}");
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts/bulk-delete",
            &t,
            Some(json!({"filter": {"chatbot_id": "a b"}})),
        )
        .await;
    assert_eq!(r.ok(200)["deleted"], 1);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 2);
    // Channels and countries hold no spaces: padding there cannot name another value.
    let r = app
        .get("/api/v1/contacts?channel=web,%20api", &t)
        .await
        .ok(200);
    assert_eq!(r["data"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn a_phone_written_with_the_trunk_prefix_in_brackets_is_the_same_e164_everywhere() {
    let app = spawn().await;
    let t = token(
        1,
        "contacts:upsert contacts:write contacts:read privacy:manage",
    );
    let a = app
        .upsert_ok(
            &t,
            "bot",
            "a",
            json!({"channel": "web", "phone": "+447700900123"}),
        )
        .await;
    let b = app
        .upsert_ok(
            &t,
            "bot",
            "b",
            json!({"channel": "web", "phone": "+44 (0) 7700 900123"}),
        )
        .await;
    assert_eq!(b["phone"], "+447700900123", "not +4407700900123");
    let path = format!("/api/v1/contacts/{}", a["id"]);
    let r = app
        .call(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"phone": "0044 (0)7700 900123"})),
        )
        .await;
    assert_eq!(r.ok(200)["phone"], "+447700900123");
    let dups = app.get("/api/v1/contacts/duplicates", &t).await.ok(200);
    assert_eq!(dups["data"][0]["value"], "+447700900123", "{dups}");
    assert_eq!(dups["data"][0]["contact_ids"].as_array().unwrap().len(), 2);
    let r = app
        .call(
            Method::POST,
            "/api/v1/privacy/access",
            &t,
            Some(json!({"phone": "+44(0)7700 900123"})),
        )
        .await;
    assert_eq!(r.ok(200)["contacts"].as_array().unwrap().len(), 2);
}
