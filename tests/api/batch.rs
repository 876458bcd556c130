//! `POST /contacts/batch-upsert`: per-item results in input order, invalid items failing alone,
//! in-batch duplicates applied one after the other, limits, scopes, tenancy and concurrency.

use std::collections::{HashMap, HashSet};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use diesel::sql_types::Jsonb;
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::helpers::*;

const PATH: &str = "/api/v1/contacts/batch-upsert";
const READ: &str = "contacts:read";

/// Sends one batch.
async fn batch<S, B>(app: &TestApp<S>, tok: &str, items: Vec<Value>) -> Resp
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    app.call(Method::POST, PATH, tok, Some(json!({ "items": items })))
        .await
}

/// The `results` array of a batch answer with the expected status.
#[track_caller]
fn results(r: &Resp, status: u16) -> Vec<Value> {
    let body = r.ok(status);
    body["results"].as_array().expect("results array").clone()
}

/// An item of the batch.
fn item(chatbot: &str, session: &str, fields: Value) -> Value {
    let mut v = fields;
    v["chatbot_id"] = json!(chatbot);
    v["session_id"] = json!(session);
    v
}

/// Asserts a failed item: `status`, the problem `code` and (when given) the field it names.
#[track_caller]
fn failed(result: &Value, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(result["status"], status, "result: {result}");
    assert!(result.get("contact").is_none(), "result: {result}");
    let e = &result["error"];
    assert_eq!(e["status"], status, "result: {result}");
    assert_eq!(e["code"], code, "result: {result}");
    assert!(
        e["type"].is_string() && e["title"].is_string() && e["detail"].is_string(),
        "result: {result}"
    );
    if let Some(f) = field {
        let fields: Vec<&str> = e["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("errors in {result}"))
            .iter()
            .map(|x| x["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&f), "expected field {f} in {result}");
    }
}

/// A successful item's contact.
#[track_caller]
fn succeeded(result: &Value, status: u16) -> Value {
    assert_eq!(result["status"], status, "result: {result}");
    assert!(result.get("error").is_none(), "result: {result}");
    result["contact"].clone()
}

/// A contact without what differs between two equivalent histories.
fn comparable(c: &Value) -> Value {
    let mut c = c.clone();
    let m = c.as_object_mut().expect("contact object");
    for k in ["id", "created_at", "updated_at", "last_seen_at"] {
        m.remove(k);
    }
    c
}

#[derive(diesel::QueryableByName)]
struct J {
    #[diesel(sql_type = Jsonb)]
    j: Value,
}

/// The rows of a query as JSON objects (`SELECT ... FROM ... ` wrapped in `to_jsonb`).
fn rows<S>(app: &TestApp<S>, sql: &str) -> Vec<Value> {
    let q = format!("SELECT COALESCE(jsonb_agg(to_jsonb(x)), '[]'::jsonb) AS j FROM ({sql}) x");
    let j: J = diesel::sql_query(&q)
        .get_result(&mut app.db.conn())
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    j.j.as_array().unwrap().clone()
}

/// The stored contact `id` as JSON.
fn stored<S>(app: &TestApp<S>, id: i64) -> Value {
    let r = rows(app, &format!("SELECT * FROM contacts WHERE id = {id}"));
    assert_eq!(r.len(), 1, "contact {id} stored once");
    r[0].clone()
}

/// Asserts that the stored row holds what the API answered.
#[track_caller]
fn same_as_stored(api: &Value, row: &Value) {
    for k in [
        "id",
        "name",
        "email",
        "phone",
        "avatar_url",
        "country_code",
        "ip_address",
        "channel",
        "chatbot_id",
        "session_id",
        "payload",
        "sessions_count",
        "version",
    ] {
        assert_eq!(api[k], row[k], "{k}: api {api} vs row {row}");
    }
}

fn session_count<S>(app: &TestApp<S>, account: i64, chatbot: &str, session: &str) -> i64 {
    app.db.count(&format!(
        "SELECT count(*) AS n FROM contact_sessions WHERE account_id = {account} \
         AND chatbot_id = '{chatbot}' AND session_id = '{session}'"
    ))
}

#[actix_web::test]
async fn an_all_valid_batch_creates_every_contact_and_the_same_batch_updates_them() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert");
    let items = vec![
        item(
            "bot",
            "s1",
            json!({"channel": "whatsapp", "name": " Ada Lovelace ", "phone": "07700 900123",
                   "country_code": "gb", "payload": {"plan": "pro"}}),
        ),
        item(
            "bot",
            "s2",
            json!({"channel": "website", "email": "grace@example.com",
                   "ip_address": "203.0.113.9"}),
        ),
        // Same session id, another chatbot: another session.
        item(
            "other-bot",
            "s1",
            json!({"channel": "telegram", "avatar_url": "https://cdn.example.com/a.png"}),
        ),
        item("bot", "s3", json!({"channel": "api"})),
    ];
    let r = batch(&app, &t, items.clone()).await;
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let res = results(&r, 200);
    assert_eq!(res.len(), 4);
    let created: Vec<Value> = res.iter().map(|x| succeeded(x, 201)).collect();
    let ids: Vec<i64> = created.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 4, "four contacts");

    let c = &created[0];
    assert_eq!(c["name"], "Ada Lovelace");
    assert_eq!(c["phone"], "+447700900123");
    assert_eq!(c["country_code"], "GB");
    assert_eq!(c["channel"], "whatsapp");
    assert_eq!(c["chatbot_id"], "bot");
    assert_eq!(c["session_id"], "s1");
    assert_eq!(c["payload"], json!({"plan": "pro"}));
    assert_eq!(c["sessions_count"], 1);
    assert_eq!(c["version"], 1);
    assert_eq!(created[1]["email"], "grace@example.com");
    assert_eq!(created[1]["ip_address"], "203.0.113.9");
    assert_eq!(created[1]["payload"], json!({}));
    assert_eq!(created[2]["chatbot_id"], "other-bot");
    assert_eq!(created[2]["session_id"], "s1");
    assert_eq!(created[2]["avatar_url"], "https://cdn.example.com/a.png");
    assert_eq!(created[3]["name"], Value::Null);

    for c in &created {
        let id = c["id"].as_i64().unwrap();
        same_as_stored(c, &stored(&app, id));
        let got = app
            .get(&format!("/api/v1/contacts/{id}"), &token(1, READ))
            .await
            .ok(200);
        assert_eq!(&got, c, "GET answers what the batch answered");
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 4);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        4
    );
    for (chatbot, session) in [
        ("bot", "s1"),
        ("bot", "s2"),
        ("other-bot", "s1"),
        ("bot", "s3"),
    ] {
        assert_eq!(session_count(&app, 1, chatbot, session), 1);
    }

    // The same batch again updates every contact.
    let res = results(&batch(&app, &t, items).await, 200);
    for (k, x) in res.iter().enumerate() {
        let u = succeeded(x, 200);
        assert_eq!(u["id"], ids[k], "same session, same contact");
        assert_eq!(u["version"], 2);
        assert_eq!(u["sessions_count"], 1);
        assert_eq!(u["created_at"], created[k]["created_at"]);
        assert_eq!(
            comparable(&u)
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "version")
                .collect::<Vec<_>>(),
            comparable(&created[k])
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "version")
                .collect::<Vec<_>>(),
            "same data"
        );
        same_as_stored(&u, &stored(&app, ids[k]));
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 4);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        4
    );
}

#[actix_web::test]
async fn invalid_items_fail_alone_in_input_order_and_the_valid_ones_are_applied() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert");
    let items = vec![
        item("bot", "s1", json!({"channel": "website", "name": "Ada"})),
        item(
            "bot",
            "s2",
            json!({"channel": "website", "email": "not-an-email"}),
        ),
        item("bot", "s3", json!({"channel": "website", "nickname": "x"})),
        item(
            "bot",
            "s4",
            json!({"channel": "telegram", "email": "Grace@Example.com"}),
        ),
        json!({"chatbot_id": "bot", "session_id": "s5"}),
        item("bot", "s6", json!({"channel": "website", "name": 5})),
        item(
            "bot",
            "s7",
            json!({"channel": "website", "name": "A\u{0}B"}),
        ),
        json!(42),
        item("bot", "a/b", json!({"channel": "website"})),
        item(
            "bot",
            "s8",
            json!({"channel": "website", "payload": {"k": "a\u{0}"}}),
        ),
        item("bot", "s9", json!({"channel": "website", "id": 7})),
        item("bot", "s10", json!({"channel": "BAD SLUG!"})),
        json!(["bot", "s11", "website"]),
        item(
            "bot",
            "s1",
            json!({"channel": "whatsapp", "email": "ada@example.com"}),
        ),
    ];
    let r = batch(&app, &t, items).await;
    let res = results(&r, 207);
    assert_eq!(res.len(), 14, "one result per item");

    let s1 = succeeded(&res[0], 201);
    assert_eq!(
        (s1["session_id"].as_str(), s1["name"].as_str()),
        (Some("s1"), Some("Ada"))
    );
    failed(&res[1], 422, "validation_failed", Some("email"));
    failed(&res[2], 422, "unknown_field", Some("nickname"));
    let s4 = succeeded(&res[3], 201);
    assert_eq!(s4["session_id"], "s4");
    assert_eq!(s4["email"], "Grace@Example.com");
    failed(&res[4], 422, "invalid_body", Some("channel"));
    failed(&res[5], 422, "invalid_body", Some("name"));
    failed(&res[6], 422, "validation_failed", Some("name"));
    failed(&res[7], 422, "invalid_body", None);
    failed(&res[8], 422, "validation_failed", Some("session_id"));
    failed(&res[9], 422, "validation_failed", Some("payload"));
    failed(&res[10], 422, "unknown_field", Some("id"));
    failed(&res[11], 422, "validation_failed", Some("channel"));
    failed(&res[12], 422, "invalid_body", None);
    let s1b = succeeded(&res[13], 200);
    assert_eq!(s1b["id"], s1["id"]);
    assert_eq!(s1b["version"], 2);
    assert_eq!(s1b["name"], "Ada");
    assert_eq!(s1b["email"], "ada@example.com");
    assert_eq!(s1b["channel"], "whatsapp");

    same_as_stored(&s1b, &stored(&app, s1["id"].as_i64().unwrap()));
    same_as_stored(&s4, &stored(&app, s4["id"].as_i64().unwrap()));
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 2);
    let sessions: HashSet<String> =
        rows(&app, "SELECT chatbot_id, session_id FROM contact_sessions")
            .iter()
            .map(|r| format!("{}/{}", r["chatbot_id"], r["session_id"]))
            .collect();
    assert_eq!(
        sessions,
        HashSet::from(["\"bot\"/\"s1\"".to_string(), "\"bot\"/\"s4\"".to_string()])
    );

    // A batch whose every item fails is a 207 too, and writes nothing.
    let r = batch(
        &app,
        &t,
        vec![item(
            "bot",
            "s20",
            json!({"channel": "website", "email": "nope"}),
        )],
    )
    .await;
    let res = results(&r, 207);
    failed(&res[0], 422, "validation_failed", Some("email"));
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 2);
}

#[actix_web::test]
async fn duplicates_of_one_session_apply_one_after_the_other_like_single_upserts() {
    let app = spawn().await;
    let steps = [
        json!({"channel": "website", "name": "Ada", "ip_address": "203.0.113.9",
               "payload": {"a": 1, "b": 1}}),
        json!({"channel": "whatsapp", "name": null, "email": "ada@example.com",
               "payload": {"b": 2, "c": 2}}),
        json!({"channel": "telegram", "phone": "+447700900123", "email": null,
               "payload": {"c": 3, "d": {"x": 3}}}),
    ];
    // In the batch the three are interleaved with other sessions.
    let items = vec![
        item("bot", "dup", steps[0].clone()),
        item(
            "bot",
            "other-1",
            json!({"channel": "api", "payload": {"o": 1}}),
        ),
        item("bot", "dup", steps[1].clone()),
        item("bot", "other-2", json!({"channel": "api"})),
        item(
            "bot",
            "other-1",
            json!({"channel": "api", "payload": {"o": 2}}),
        ),
        item("bot", "dup", steps[2].clone()),
    ];
    let res = results(&batch(&app, &token(1, "contacts:upsert"), items).await, 200);
    let first = succeeded(&res[0], 201);
    let second = succeeded(&res[2], 200);
    let third = succeeded(&res[5], 200);
    assert_eq!(first["version"], 1);
    assert_eq!(second["version"], 2);
    assert_eq!(third["version"], 3);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["id"], third["id"]);
    assert_eq!(second["name"], "Ada", "null keeps");
    assert_eq!(second["payload"], json!({"a": 1, "b": 2, "c": 2}));
    assert_eq!(third["email"], "ada@example.com", "null keeps");
    assert_eq!(
        third["payload"],
        json!({"a": 1, "b": 2, "c": 3, "d": {"x": 3}}),
        "later keys win"
    );
    assert_eq!(third["channel"], "telegram");
    assert_eq!(third["sessions_count"], 1);
    let o1 = succeeded(&res[1], 201);
    let o1b = succeeded(&res[4], 200);
    assert_eq!(o1b["id"], o1["id"]);
    assert_eq!(
        (o1b["version"].as_i64(), &o1b["payload"]),
        (Some(2), &json!({"o": 2}))
    );
    succeeded(&res[3], 201);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 3);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        3
    );
    let id = third["id"].as_i64().unwrap();
    same_as_stored(&third, &stored(&app, id));

    // The same three sent one by one in another account.
    let t2 = token(2, "contacts:upsert");
    let mut single = Vec::new();
    for s in &steps {
        single.push(app.upsert_ok(&t2, "bot", "dup", s.clone()).await);
    }
    for (b, s) in [&first, &second, &third].iter().zip(&single) {
        assert_eq!(comparable(b), comparable(s), "batch step = single step");
    }
    let batch_final = app
        .get(&format!("/api/v1/contacts/{id}"), &token(1, READ))
        .await
        .ok(200);
    let single_id = single[2]["id"].as_i64().unwrap();
    let single_final = app
        .get(&format!("/api/v1/contacts/{single_id}"), &token(2, READ))
        .await
        .ok(200);
    assert_eq!(comparable(&batch_final), comparable(&single_final));
    let sessions = |account: i64| {
        let mut s = rows(
            &app,
            &format!(
                "SELECT chatbot_id, session_id, channel, ip_address FROM contact_sessions \
                 WHERE account_id = {account} AND session_id = 'dup'"
            ),
        );
        s.sort_by_key(|r| r.to_string());
        s
    };
    assert_eq!(sessions(1), sessions(2));
}

#[actix_web::test]
async fn item_count_body_size_and_shape_limits() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert");
    let one = |i: usize| item("bot", &format!("s{i}"), json!({"channel": "api"}));

    let r = batch(&app, &t, vec![]).await;
    let p = r.problem(422, "validation_failed");
    assert_eq!(p["errors"][0]["field"], "items");

    let r = batch(&app, &t, (0..501).map(one).collect()).await;
    let p = r.problem(422, "validation_failed");
    assert_eq!(p["errors"][0]["field"], "items");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);

    let r = app.call(Method::POST, PATH, &t, Some(json!({}))).await;
    let p = r.problem(422, "invalid_body");
    assert_eq!(p["errors"][0]["field"], "items");

    let r = app
        .call(Method::POST, PATH, &t, Some(json!({"items": {"a": 1}})))
        .await;
    let p = r.problem(422, "invalid_body");
    assert_eq!(p["errors"][0]["field"], "items");

    let r = app
        .call(
            Method::POST,
            PATH,
            &t,
            Some(json!({"items": [one(1)], "dry_run": true})),
        )
        .await;
    let p = r.problem(422, "unknown_field");
    assert_eq!(p["errors"][0]["field"], "dry_run");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);

    // Over 4 MiB: 300 items of 15 KB payloads.
    let big = "x".repeat(15_000);
    let items: Vec<Value> = (0..300)
        .map(|i| {
            item(
                "bot",
                &format!("s{i}"),
                json!({"channel": "api", "payload": {"k": big}}),
            )
        })
        .collect();
    let r = batch(&app, &t, items).await;
    r.problem(413, "payload_too_large");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);

    // Exactly 500 items is fine.
    let res = results(&batch(&app, &t, (0..500).map(one).collect()).await, 200);
    assert_eq!(res.len(), 500);
    for (i, x) in res.iter().enumerate() {
        assert_eq!(succeeded(x, 201)["session_id"], format!("s{i}"));
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 500);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        500
    );
}

#[actix_web::test]
async fn a_chatbot_restricted_token_fails_the_other_chatbots_items_alone() {
    let app = spawn().await;
    let t = token_for(1, "rt", "contacts:upsert", Some("bot"));
    let items = vec![
        item("bot", "s1", json!({"channel": "api"})),
        item("other-bot", "s1", json!({"channel": "api"})),
        item("bot", "s2", json!({"channel": "api"})),
    ];
    let res = results(&batch(&app, &t, items).await, 207);
    succeeded(&res[0], 201);
    failed(&res[1], 403, "insufficient_scope", None);
    succeeded(&res[2], 201);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 2);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE chatbot_id = 'other-bot'"),
        0
    );
    assert_eq!(session_count(&app, 1, "other-bot", "s1"), 0);
}

#[actix_web::test]
async fn an_item_whose_merged_payload_is_too_large_fails_alone_and_changes_nothing() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:read");
    // Two 8 KB payloads of distinct keys: about 16,000 bytes stored, under the 16 KiB limit.
    app.upsert_ok(
        &t,
        "bot",
        "big",
        json!({"channel": "website", "ip_address": "203.0.113.9",
               "payload": {"a": "a".repeat(8_000)}}),
    )
    .await;
    let before = app
        .upsert_ok(
            &t,
            "bot",
            "big",
            json!({"channel": "website", "payload": {"b": "b".repeat(8_000)}}),
        )
        .await;
    let id = before["id"].as_i64().unwrap();
    assert_eq!(before["version"], 2);
    let stored_before = stored(&app, id);
    let session_before = rows(
        &app,
        "SELECT * FROM contact_sessions WHERE session_id = 'big'",
    );

    let items = vec![
        item("bot", "s1", json!({"channel": "api", "payload": {"x": 1}})),
        item(
            "bot",
            "big",
            json!({"channel": "telegram", "ip_address": "2001:db8::1", "name": "Too Big",
                   "payload": {"c": "c".repeat(5_000)}}),
        ),
        item("bot", "s2", json!({"channel": "api"})),
    ];
    let res = results(&batch(&app, &t, items).await, 207);
    succeeded(&res[0], 201);
    failed(&res[1], 422, "validation_failed", Some("payload"));
    succeeded(&res[2], 201);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 3);
    assert_eq!(
        stored(&app, id),
        stored_before,
        "the failed item changed nothing"
    );
    assert_eq!(
        rows(
            &app,
            "SELECT * FROM contact_sessions WHERE session_id = 'big'"
        ),
        session_before,
        "the failed item did not touch its session either"
    );

    // A later item of the same session still applies, after the failed one.
    let items = vec![
        item(
            "bot",
            "big",
            json!({"channel": "telegram", "payload": {"c": "c".repeat(5_000)}}),
        ),
        item("bot", "big", json!({"channel": "whatsapp", "name": "Ada"})),
        item("bot", "s1", json!({"channel": "api"})),
    ];
    let res = results(&batch(&app, &t, items).await, 207);
    failed(&res[0], 422, "validation_failed", Some("payload"));
    let after = succeeded(&res[1], 200);
    assert_eq!(after["version"], 3);
    assert_eq!(after["name"], "Ada");
    assert_eq!(after["channel"], "whatsapp");
    assert_eq!(after["payload"], before["payload"]);
    assert_eq!(succeeded(&res[2], 200)["version"], 2);
    same_as_stored(&after, &stored(&app, id));
}

#[actix_web::test]
async fn the_batch_needs_the_upsert_or_write_scope() {
    let app = spawn().await;
    let items = vec![item("bot", "s1", json!({"channel": "api"}))];
    for scopes in [READ, "contacts:delete contacts:export"] {
        let r = batch(&app, &token(1, scopes), items.clone()).await;
        r.problem(403, "insufficient_scope");
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
    let r = app
        .send(
            actix_web::test::TestRequest::post()
                .uri(PATH)
                .set_json(json!({ "items": items })),
        )
        .await;
    r.problem(401, "invalid_token");

    let res = results(
        &batch(&app, &token(1, "contacts:write"), items.clone()).await,
        200,
    );
    succeeded(&res[0], 201);
    let res = results(&batch(&app, &token(1, "contacts:upsert"), items).await, 200);
    succeeded(&res[0], 200);
}

#[actix_web::test]
async fn a_batch_in_another_account_creates_its_own_contacts_and_leaves_the_first_untouched() {
    let app = spawn().await;
    let t1 = token(1, "contacts:upsert");
    let a = app
        .upsert_ok(
            &t1,
            "bot",
            "s1",
            json!({"channel": "website", "name": "Ada"}),
        )
        .await;
    let b = app
        .upsert_ok(
            &t1,
            "bot",
            "s2",
            json!({"channel": "website", "name": "Grace"}),
        )
        .await;
    let before: Vec<Value> = [&a, &b]
        .iter()
        .map(|c| stored(&app, c["id"].as_i64().unwrap()))
        .collect();

    let items = vec![
        item(
            "bot",
            "s1",
            json!({"channel": "telegram", "name": "Mallory"}),
        ),
        item(
            "bot",
            "s2",
            json!({"channel": "telegram", "payload": {"k": 1}}),
        ),
    ];
    let res = results(&batch(&app, &token(2, "contacts:upsert"), items).await, 200);
    for (x, old) in res.iter().zip([&a, &b]) {
        let c = succeeded(x, 201);
        assert_ne!(c["id"], old["id"]);
        assert_eq!(c["version"], 1);
        assert_eq!(stored(&app, c["id"].as_i64().unwrap())["account_id"], 2);
    }
    let c = succeeded(&res[1], 201);
    assert_eq!(c["name"], Value::Null, "nothing leaks from account 1");
    let after: Vec<Value> = [&a, &b]
        .iter()
        .map(|c| stored(&app, c["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(before, after, "account 1 untouched");
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1"),
        2
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contact_sessions WHERE account_id = 2"),
        2
    );
}

/// 8 concurrent batches over the same 20 sessions, each batch in its own order; the sessions
/// in `existing` are created first. Every item must succeed (no 500, no 503 after the internal
/// retries) and each session must end with one contact updated once per batch.
async fn concurrent_batches<S, B>(app: &TestApp<S>, existing: &[usize])
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    const BATCHES: usize = 8;
    const SESSIONS: usize = 20;
    let t = token(1, "contacts:upsert");
    for &i in existing {
        app.upsert_ok(&t, "bot", &format!("s{i}"), json!({"channel": "api"}))
            .await;
    }
    let batches: Vec<Vec<Value>> = (0..BATCHES)
        .map(|k| {
            // Each batch in its own order: rotated, every other one reversed.
            let mut order: Vec<usize> = (0..SESSIONS).map(|i| (i + k * 7) % SESSIONS).collect();
            if k % 2 == 1 {
                order.reverse();
            }
            order
                .into_iter()
                .map(|i| {
                    item(
                        "bot",
                        &format!("s{i}"),
                        json!({"channel": "api", "payload": {format!("b{k}"): k}}),
                    )
                })
                .collect()
        })
        .collect();
    let answers =
        futures::future::join_all(batches.iter().map(|items| batch(app, &t, items.clone()))).await;
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<String, HashSet<i64>> = HashMap::new();
    for (k, r) in answers.iter().enumerate() {
        let res = results(r, 200);
        assert_eq!(res.len(), SESSIONS);
        for (x, sent) in res.iter().zip(&batches[k]) {
            let status = x["status"].as_u64().unwrap();
            assert!(status == 200 || status == 201, "batch {k}: {x}");
            let c = &x["contact"];
            assert_eq!(c["session_id"], sent["session_id"], "input order");
            let s = c["session_id"].as_str().unwrap().to_string();
            if status == 201 {
                *created.entry(s.clone()).or_default() += 1;
            }
            ids.entry(s).or_default().insert(c["id"].as_i64().unwrap());
        }
    }
    assert_eq!(created.len(), SESSIONS - existing.len());
    assert!(
        created.values().all(|&n| n == 1),
        "one creation per session"
    );
    assert!(
        ids.values().all(|s| s.len() == 1),
        "one contact per session"
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contacts"),
        SESSIONS as i64
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        SESSIONS as i64
    );
    let all_keys: Value = (0..BATCHES)
        .map(|k| (format!("b{k}"), json!(k)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    for r in rows(
        app,
        "SELECT session_id, version, payload, sessions_count FROM contacts",
    ) {
        let pre = existing.iter().any(|i| r["session_id"] == format!("s{i}"));
        let expected = BATCHES as i64 + i64::from(pre);
        assert_eq!(r["version"], expected, "one update per batch: {r}");
        assert_eq!(r["payload"], all_keys);
        assert_eq!(r["sessions_count"], 1);
    }
}

#[actix_web::test]
async fn concurrent_batches_over_the_same_new_sessions_all_succeed_without_duplicates() {
    let app = spawn().await;
    concurrent_batches(&app, &[]).await;
}

#[actix_web::test]
async fn concurrent_batches_mixing_new_and_existing_sessions_all_succeed() {
    let app = spawn().await;
    let existing: Vec<usize> = (0..20).filter(|i| i % 2 == 0).collect();
    concurrent_batches(&app, &existing).await;
}

#[actix_web::test]
async fn two_sessions_of_one_contact_in_a_batch_apply_in_input_order() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:write contacts:read");
    let mut ids = Vec::new();
    for s in ["s1", "s2"] {
        let c = app.upsert_ok(&t, "bot", s, json!({"channel": "web"})).await;
        ids.push(c["id"].as_i64().unwrap());
    }
    // s2's contact merged into s1's: both sessions lead to one contact.
    app.call(
        Method::POST,
        &format!("/api/v1/contacts/{}/merge", ids[0]),
        &t,
        Some(json!({"source_ids": [ids[1]]})),
    )
    .await
    .ok(200);
    for (first, second) in [("s1", "s2"), ("s2", "s1")] {
        let r = app
            .call(
                Method::POST,
                "/api/v1/contacts/batch-upsert",
                &t,
                Some(json!({"items": [
                    {"chatbot_id": "bot", "session_id": first, "channel": "web", "name": "First"},
                    {"chatbot_id": "bot", "session_id": second, "channel": "api", "name": "Second"}
                ]})),
            )
            .await;
        r.ok(200);
        let c = app
            .get(&format!("/api/v1/contacts/{}", ids[0]), &t)
            .await
            .ok(200);
        assert_eq!(c["name"], "Second", "the later item is applied last");
        assert_eq!(c["session_id"], second);
        assert_eq!(c["channel"], "api");
    }
}
