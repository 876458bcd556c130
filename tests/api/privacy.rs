//! Privacy by design: the consent history (append-only, moved by merges), data-subject access and
//! erasure by email or phone (checked against every table), and retention (the settings, one
//! pass, two concurrent passes, and two real server processes on one database).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use diesel::{PgConnection, RunQueryDsl};
use serde_json::{json, Value};

use crate::helpers::*;

const MANAGE: &str = "privacy:manage";
const RW: &str = "contacts:read contacts:write contacts:upsert contacts:export";
const ACCESS: &str = "/api/v1/privacy/access";
const ERASURE: &str = "/api/v1/privacy/erasure";
const RETENTION: &str = "/api/v1/settings/retention";

// ---------------------------------------------------------------------------------------------
// SQL helpers

/// Runs SQL on the test database.
fn exec(conn: &mut PgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The text column `s` of every row.
fn texts(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Text)]
        s: String,
    }
    diesel::sql_query(sql)
        .load::<S>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.s)
        .collect()
}

/// The bigint column `n` of every row.
fn numbers(conn: &mut PgConnection, sql: &str) -> Vec<i64> {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .load::<N>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.n)
        .collect()
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    numbers(conn, sql)[0]
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Every table of the schema (but diesel's bookkeeping): a new table is scanned too.
fn tables(conn: &mut PgConnection) -> Vec<String> {
    texts(
        conn,
        "SELECT table_name::text AS s FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
           AND table_name NOT LIKE '\\_\\_diesel%' ORDER BY 1",
    )
}

/// Rows of account 1 in any table whose text form contains `value` (ignoring case).
fn rows_holding(conn: &mut PgConnection, value: &str) -> Vec<String> {
    let needle = value.replace('\'', "''");
    let mut out = Vec::new();
    for t in tables(conn) {
        out.extend(texts(
            conn,
            &format!(
                "SELECT '{t}: ' || x::text AS s FROM {t} x \
                 WHERE x.account_id = 1 AND x::text ILIKE '%{needle}%'"
            ),
        ));
    }
    out
}

/// Rows of any table that point at one of `ids` (a contact, a session's contact, a consent
/// event, a redirect either way, an audit event's contact or a merge event's source list).
fn rows_pointing_at(conn: &mut PgConnection, ids: &[i64]) -> Vec<String> {
    let l = id_list(ids);
    let arr = format!("ARRAY[{l}]::bigint[]");
    let mut out = Vec::new();
    for sql in [
        format!("SELECT 'contacts: ' || x::text AS s FROM contacts x WHERE id IN ({l})"),
        format!(
            "SELECT 'contact_sessions: ' || x::text AS s FROM contact_sessions x \
             WHERE contact_id IN ({l})"
        ),
        format!(
            "SELECT 'consent_events: ' || x::text AS s FROM consent_events x \
             WHERE contact_id IN ({l})"
        ),
        format!(
            "SELECT 'contact_merges: ' || x::text AS s FROM contact_merges x \
             WHERE source_id IN ({l}) OR target_id IN ({l})"
        ),
        format!(
            "SELECT 'audit_events: ' || x::text AS s FROM audit_events x \
             WHERE contact_id IN ({l}) \
                OR EXISTS (SELECT 1 FROM jsonb_array_elements_text( \
                     CASE jsonb_typeof(x.details -> 'source_ids') WHEN 'array' \
                     THEN x.details -> 'source_ids' ELSE '[]'::jsonb END) AS e(v) \
                   WHERE e.v::bigint = ANY({arr}))"
        ),
    ] {
        out.extend(texts(conn, &sql));
    }
    out
}

/// Every row of one account, as text, for "nothing changed" comparisons.
fn account_state(conn: &mut PgConnection, account: i64) -> String {
    texts(
        conn,
        &format!(
            "SELECT concat_ws(E'\\n--\\n', \
               (SELECT string_agg(x::text, E'\\n' ORDER BY x.id) FROM contacts x \
                  WHERE account_id = {account}), \
               (SELECT string_agg(x::text, E'\\n' ORDER BY x.chatbot_id, x.session_id) \
                  FROM contact_sessions x WHERE account_id = {account}), \
               (SELECT string_agg(x::text, E'\\n' ORDER BY x.id) FROM consent_events x \
                  WHERE account_id = {account}), \
               (SELECT string_agg(x::text, E'\\n' ORDER BY x.source_id) FROM contact_merges x \
                  WHERE account_id = {account}), \
               (SELECT string_agg(x::text, E'\\n' ORDER BY x.id) FROM audit_events x \
                  WHERE account_id = {account})) AS s"
        ),
    )
    .remove(0)
}

/// Rows of one contact (by `id`) only, as text.
fn contact_state(conn: &mut PgConnection, id: i64) -> String {
    texts(
        conn,
        &format!(
            "SELECT concat_ws(E'\\n--\\n', \
               (SELECT string_agg(x::text, E'\\n') FROM contacts x WHERE id = {id}), \
               (SELECT string_agg(x::text, E'\\n' ORDER BY x.chatbot_id, x.session_id) \
                  FROM contact_sessions x WHERE contact_id = {id}), \
               (SELECT string_agg(x::text, E'\\n' ORDER BY x.id) FROM consent_events x \
                  WHERE contact_id = {id})) AS s"
        ),
    )
    .remove(0)
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

async fn post<S, B>(app: &TestApp<S>, tok: &str, path: &str, body: Value) -> Resp
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    app.call(Method::POST, path, tok, Some(body)).await
}

async fn merge<S, B>(app: &TestApp<S>, tok: &str, target: i64, sources: &[i64]) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    app.call(
        Method::POST,
        &format!("/api/v1/contacts/{target}/merge"),
        tok,
        Some(json!({ "source_ids": sources })),
    )
    .await
    .ok(200)
}

fn consent(status: &str, source: &str, version: &str) -> Value {
    json!({"status": status, "source": source, "text_version": version})
}

fn ids_of(doc: &Value) -> Vec<i64> {
    doc["contacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no contacts array: {doc}"))
        .iter()
        .map(|r| r["contact"]["id"].as_i64().unwrap())
        .collect()
}

fn record(doc: &Value, id: i64) -> &Value {
    doc["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["contact"]["id"] == id)
        .unwrap_or_else(|| panic!("no record of {id} in {doc}"))
}

/// Asserts a 422 problem whose `errors` name `field`.
#[track_caller]
fn names(r: &Resp, code: &str, field: &str) {
    let p = r.problem(422, code);
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {p}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&field), "{field} not in {p}");
}

// ---------------------------------------------------------------------------------------------
// Consent

#[actix_web::test]
async fn consent_in_the_upsert_is_current_and_each_change_is_appended_once() {
    let app = spawn().await;
    let rt = token_for(1, "runtime-7", "contacts:upsert", None);
    let read = token(1, "contacts:read");
    let c = app
        .upsert_ok(
            &rt,
            "support-bot",
            "s1",
            json!({"channel": "website", "name": "Ada",
                   "consent": consent("granted", "web-form", "v1")}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["consent"]["status"], "granted");
    assert_eq!(c["consent"]["source"], "web-form");
    assert_eq!(c["consent"]["text_version"], "v1");
    let recorded = c["consent"]["recorded_at"].as_str().unwrap().to_string();
    chrono::DateTime::parse_from_rfc3339(&recorded).expect("recorded_at is RFC 3339");
    let mut conn = app.db.conn();
    let history = |conn: &mut PgConnection| {
        texts(
            conn,
            "SELECT concat_ws('|', contact_id, status, source, text_version, actor) AS s \
             FROM consent_events WHERE account_id = 1 ORDER BY id",
        )
    };
    assert_eq!(
        history(&mut conn),
        vec![format!("{id}|granted|web-form|v1|runtime-7")]
    );
    let stored = app
        .get(&format!("/api/v1/contacts/{id}"), &read)
        .await
        .ok(200);
    assert_eq!(
        stored["consent"], c["consent"],
        "GET shows the current consent"
    );

    // The same statement again, and an upsert without consent: nothing appended.
    let again = app
        .upsert_ok(
            &rt,
            "support-bot",
            "s1",
            json!({"channel": "website", "consent": consent("granted", "web-form", "v1")}),
        )
        .await;
    assert_eq!(again["consent"], c["consent"], "recorded_at unchanged");
    let quiet = app
        .upsert_ok(&rt, "support-bot", "s1", json!({"channel": "website"}))
        .await;
    assert_eq!(quiet["consent"], c["consent"], "absent consent keeps it");
    assert_eq!(history(&mut conn).len(), 1);

    // A change is appended.
    let w = app
        .upsert_ok(
            &rt,
            "support-bot",
            "s1",
            json!({"channel": "website", "consent": consent("withdrawn", "web-form", "v1")}),
        )
        .await;
    assert_eq!(w["id"], id);
    assert_eq!(w["consent"]["status"], "withdrawn");
    assert!(w["consent"]["recorded_at"].as_str().unwrap() >= recorded.as_str());
    assert_eq!(
        history(&mut conn),
        vec![
            format!("{id}|granted|web-form|v1|runtime-7"),
            format!("{id}|withdrawn|web-form|v1|runtime-7"),
        ]
    );
    // Another text version is a change too.
    app.upsert_ok(
        &rt,
        "support-bot",
        "s1",
        json!({"channel": "website", "consent": consent("withdrawn", "web-form", "v2")}),
    )
    .await;
    assert_eq!(history(&mut conn).len(), 3);
    let stored = app
        .get(&format!("/api/v1/contacts/{id}"), &read)
        .await
        .ok(200);
    assert_eq!(stored["consent"]["text_version"], "v2");
}

#[actix_web::test]
async fn consent_in_create_is_recorded_and_patch_cannot_rewrite_it() {
    let app = spawn().await;
    let agent = token_for(1, "agent-alice", "contacts:write contacts:read", None);
    let r = post(
        &app,
        &agent,
        "/api/v1/contacts",
        json!({"chatbot_id": "support-bot", "channel": "api", "name": "Grace",
               "consent": consent("granted", "phone-call", "2026-01")}),
    )
    .await;
    let c = r.ok(201);
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["consent"]["status"], "granted");
    assert_eq!(c["consent"]["source"], "phone-call");
    assert_eq!(c["consent"]["text_version"], "2026-01");
    assert!(c["consent"]["recorded_at"].is_string());
    assert_eq!(
        r.header("etag").unwrap(),
        format!("\"{}\"", c["version"]),
        "ETag names the version after the consent"
    );
    let mut conn = app.db.conn();
    assert_eq!(
        texts(
            &mut conn,
            "SELECT concat_ws('|', contact_id, status, actor) AS s FROM consent_events"
        ),
        vec![format!("{id}|granted|agent-alice")]
    );

    // A create without consent has none and no history.
    let plain = post(
        &app,
        &agent,
        "/api/v1/contacts",
        json!({"chatbot_id": "support-bot", "channel": "api", "name": "Linus"}),
    )
    .await
    .ok(201);
    assert_eq!(plain["consent"], Value::Null);

    // PATCH cannot touch consent: unknown field, nothing stored.
    let before = contact_state(&mut conn, id);
    for body in [
        json!({"consent": consent("withdrawn", "dashboard", "2026-01")}),
        json!({"name": "Grace Hopper", "consent": null}),
    ] {
        let r = app
            .call(
                Method::PATCH,
                &format!("/api/v1/contacts/{id}"),
                &agent,
                Some(body),
            )
            .await;
        let p = r.problem(422, "unknown_field");
        assert_eq!(p["errors"][0]["field"], "consent", "{p}");
    }
    assert_eq!(contact_state(&mut conn, id), before);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM consent_events"), 1);
    // A PATCH of other fields leaves the consent as it was.
    let p = app
        .call(
            Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            &agent,
            Some(json!({"name": "Grace Hopper"})),
        )
        .await
        .ok(200);
    assert_eq!(p["consent"], c["consent"]);
}

#[actix_web::test]
async fn the_consent_history_is_append_only_in_the_database() {
    let app = spawn().await;
    let rt = token(1, "contacts:upsert");
    let c = app
        .upsert_ok(
            &rt,
            "bot",
            "s1",
            json!({"channel": "website", "consent": consent("granted", "web-form", "v1")}),
        )
        .await;
    let mut conn = app.db.conn();
    let snapshot = |conn: &mut PgConnection| {
        texts(
            conn,
            "SELECT string_agg(x::text, E'\\n' ORDER BY id) AS s FROM consent_events x",
        )
    };
    let before = snapshot(&mut conn);
    for sql in [
        "UPDATE consent_events SET status = 'withdrawn'",
        "UPDATE consent_events SET actor = 'mallory'",
        "UPDATE consent_events SET recorded_at = now() - interval '1 year'",
        "UPDATE consent_events SET source = NULL",
        "UPDATE consent_events SET text_version = 'v0'",
    ] {
        let err = diesel::sql_query(sql)
            .execute(&mut conn)
            .expect_err(&format!("{sql} must fail"));
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(snapshot(&mut conn), before, "the rows stay as recorded");
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM consent_events WHERE contact_id = {} \
                 AND status = 'granted'",
            c["id"]
        )),
        1
    );
}

#[actix_web::test]
async fn invalid_consent_is_a_422_naming_the_consent_field_and_stores_nothing() {
    let app = spawn().await;
    let rt = token(1, "contacts:upsert contacts:write");
    let long = "x".repeat(201);
    let cases = [
        (
            json!({"status": "maybe"}),
            "validation_failed",
            "consent.status",
        ),
        (
            json!({"status": "granted", "source": long}),
            "validation_failed",
            "consent.source",
        ),
        (
            json!({"status": "granted", "text_version": long}),
            "validation_failed",
            "consent.text_version",
        ),
        (
            json!({"status": "granted", "source": "a\u{7}b"}),
            "validation_failed",
            "consent.source",
        ),
        (
            json!({"status": "granted", "recorded_at": "2020-01-01T00:00:00Z"}),
            "unknown_field",
            "consent.recorded_at",
        ),
        (
            json!({"status": "granted", "actor": "someone-else"}),
            "unknown_field",
            "consent.actor",
        ),
    ];
    for (bad, code, field) in &cases {
        let r = app
            .upsert(
                &rt,
                "bot",
                "s1",
                json!({"channel": "website", "consent": bad}),
            )
            .await;
        names(&r, code, field);
        let r = post(
            &app,
            &rt,
            "/api/v1/contacts",
            json!({"chatbot_id": "bot", "channel": "api", "consent": bad}),
        )
        .await;
        names(&r, code, field);
    }
    let r = app
        .upsert(
            &rt,
            "bot",
            "s1",
            json!({"channel": "website", "consent": {"source": "web-form"}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 422, "status is required");
    // 200 characters are fine.
    let ok = app
        .upsert_ok(
            &rt,
            "bot",
            "s2",
            json!({"channel": "website",
                   "consent": {"status": "granted", "source": "y".repeat(200)}}),
        )
        .await;
    assert_eq!(ok["consent"]["source"].as_str().unwrap().len(), 200);
    assert_eq!(ok["consent"]["text_version"], Value::Null);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM consent_events"), 1);
    assert_eq!(
        texts(
            &mut app.db.conn(),
            "SELECT action || ':' || changed_fields::text AS s FROM audit_events ORDER BY id"
        ),
        vec!["contact.created:{}", "contact.updated:{consent}"],
        "a failing request leaves no audit row"
    );
}

#[actix_web::test]
async fn merge_keeps_the_consent_history_of_both_contacts_on_the_target() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let agent = token_for(1, "agent", RW, None);
    let a = app
        .upsert_ok(
            &rt,
            "bot",
            "a",
            json!({"channel": "website", "email": "ada@example.com",
                   "consent": consent("granted", "web-form", "v1")}),
        )
        .await;
    app.upsert_ok(
        &rt,
        "bot",
        "b",
        json!({"channel": "whatsapp", "consent": consent("granted", "wa-optin", "v1")}),
    )
    .await;
    let b = app
        .upsert_ok(
            &rt,
            "bot",
            "b",
            json!({"channel": "whatsapp", "consent": consent("withdrawn", "wa-optin", "v1")}),
        )
        .await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let mut conn = app.db.conn();
    let all_before = texts(
        &mut conn,
        "SELECT concat_ws('|', id, status, source, text_version, actor, recorded_at) AS s \
         FROM consent_events ORDER BY id",
    );
    assert_eq!(all_before.len(), 3);

    let merged = merge(&app, &agent, a, &[b]).await;
    assert_eq!(
        merged["consent"]["status"], "withdrawn",
        "the latest statement is the current one"
    );
    let all_after = texts(
        &mut conn,
        &format!(
            "SELECT concat_ws('|', id, status, source, text_version, actor, recorded_at) AS s \
             FROM consent_events WHERE contact_id = {a} ORDER BY id"
        ),
    );
    assert_eq!(
        all_after, all_before,
        "every statement kept, unchanged, on the target"
    );
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM consent_events WHERE contact_id <> {a}"
        )),
        0
    );
    // And access returns the whole history on the target.
    let doc = post(
        &app,
        &token(1, MANAGE),
        ACCESS,
        json!({"email": "ada@example.com"}),
    )
    .await
    .ok(200);
    assert_eq!(ids_of(&doc), vec![a]);
    let h = record(&doc, a)["consent_history"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(h.len(), 3);
    assert!(h.iter().all(|e| e["contact_id"] == a));
    let statuses: Vec<&str> = h.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["granted", "granted", "withdrawn"]);
}

// ---------------------------------------------------------------------------------------------
// Access

/// The people of the access and erasure tests.
struct People {
    /// Ada's contacts found by email: the first also has her phone and two sessions merged in.
    by_email: Vec<i64>,
    /// Ada's contacts found by phone.
    by_phone: Vec<i64>,
    /// Ada's contact merged away into the first (a redirect).
    merged_away: i64,
    /// Other people of account 1.
    others: Vec<i64>,
    /// Ada in account 2 (same email and phone).
    other_account: i64,
}

async fn people<S, B>(app: &TestApp<S>) -> People
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let agent = token_for(1, "agent", RW, None);
    let id = |v: Value| v["id"].as_i64().unwrap();
    let c1 = id(app
        .upsert_ok(
            &rt,
            "support-bot",
            "wa-447700900123",
            json!({"channel": "whatsapp", "name": "Ada Lovelace", "email": "ada@example.com",
                   "phone": "+447700900123", "ip_address": "203.0.113.9",
                   "payload": {"note": "Ada's secret plan"},
                   "consent": consent("granted", "wa-optin", "v1")}),
        )
        .await);
    // An update (audited with field names).
    app.upsert_ok(
        &rt,
        "support-bot",
        "wa-447700900123",
        json!({"channel": "whatsapp", "avatar_url": "https://cdn.example.com/ada.png"}),
    )
    .await;
    app.call(
        Method::PATCH,
        &format!("/api/v1/contacts/{c1}"),
        &agent,
        Some(json!({"name": "Ada King"})),
    )
    .await
    .ok(200);
    // Another session of hers, merged into the first.
    let merged_away = id(app
        .upsert_ok(
            &rt,
            "web-bot",
            "web-ada",
            json!({"channel": "website", "email": "ada@example.com",
                   "consent": consent("granted", "web-form", "v3")}),
        )
        .await);
    merge(app, &agent, c1, &[merged_away]).await;
    // Her contact on another chatbot, email in other case, consent given then withdrawn.
    let c2 = id(app
        .upsert_ok(
            &rt,
            "sales-bot",
            "tg-5",
            json!({"channel": "telegram", "email": "ADA@Example.com",
                   "consent": consent("granted", "tg", "v1")}),
        )
        .await);
    app.upsert_ok(
        &rt,
        "sales-bot",
        "tg-5",
        json!({"channel": "telegram", "consent": consent("withdrawn", "tg", "v1")}),
    )
    .await;
    // Her contact known by phone only (national format at the time).
    let c3 = id(app
        .upsert_ok(
            &rt,
            "sales-bot",
            "sms-1",
            json!({"channel": "api", "name": "A. Lovelace", "phone": "07700 900123",
                   "country_code": "GB"}),
        )
        .await);
    // Other people: different email, a near-miss email, another phone.
    let bob = id(app
        .upsert_ok(
            &rt,
            "support-bot",
            "wa-447700900999",
            json!({"channel": "whatsapp", "name": "Bob", "email": "bob@example.com",
                   "phone": "+447700900999", "consent": consent("granted", "wa-optin", "v1")}),
        )
        .await);
    let near = id(app
        .upsert_ok(
            &rt,
            "support-bot",
            "near",
            json!({"channel": "website", "name": "Adam", "email": "ada@example.co",
                   "phone": "+447700900124"}),
        )
        .await);
    let near2 = id(app
        .upsert_ok(
            &rt,
            "support-bot",
            "near2",
            json!({"channel": "website", "email": "ada.l@example.com"}),
        )
        .await);
    // Ada in account 2.
    let other_account = id(app
        .upsert_ok(
            &token_for(2, "runtime-2", "contacts:upsert", None),
            "support-bot",
            "wa-447700900123",
            json!({"channel": "whatsapp", "name": "Ada Lovelace", "email": "ada@example.com",
                   "phone": "+447700900123", "consent": consent("granted", "wa-optin", "v1")}),
        )
        .await);
    People {
        by_email: vec![c1, c2],
        by_phone: vec![c1, c3],
        merged_away,
        others: vec![bob, near, near2],
        other_account,
    }
}

#[actix_web::test]
async fn access_by_email_in_any_case_finds_the_person_across_chatbots_and_sessions_only() {
    let app = spawn().await;
    let p = people(&app).await;
    let c1 = p.by_email[0];
    // Many sessions: the document holds all of them, not a page.
    let mut conn = app.db.conn();
    exec(
        &mut conn,
        &format!(
            "INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel) \
             SELECT 1, 'bulk-bot', 'bulk-' || g, {c1}, 'website' FROM generate_series(1, 60) g"
        ),
    );
    let dpo = token_for(1, "dpo-eve", MANAGE, None);
    let r = post(&app, &dpo, ACCESS, json!({"email": "ADA@Example.COM"})).await;
    let doc = r.ok(200);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let keys: BTreeSet<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["schema", "generated_at", "subject", "contacts"])
    );
    assert_eq!(doc["schema"], "contacts-api/privacy-access/v1");
    assert_eq!(
        doc["subject"],
        json!({"selector": "email", "value": "ada@example.com"})
    );
    assert_eq!(
        ids_of(&doc),
        p.by_email,
        "both of her contacts, oldest first"
    );

    for r in doc["contacts"].as_array().unwrap() {
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["contact", "sessions", "consent_history", "audit_events"])
        );
        let id = r["contact"]["id"].as_i64().unwrap();
        assert!(r["consent_history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["contact_id"] == id));
        assert!(r["audit_events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["contact_id"] == id));
    }

    let first = record(&doc, c1);
    assert_eq!(first["contact"]["name"], "Ada King");
    assert_eq!(first["contact"]["phone"], "+447700900123");
    let sessions: BTreeSet<String> = first["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["chatbot_id"].as_str().unwrap(),
                s["session_id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(sessions.len(), 62, "every session: {sessions:?}");
    assert!(sessions.contains("support-bot/wa-447700900123"));
    assert!(
        sessions.contains("web-bot/web-ada"),
        "the merged-in session"
    );
    let history: Vec<(&str, &str)> = first["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["status"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    assert_eq!(history, [("granted", "wa-optin"), ("granted", "web-form")]);
    assert!(first["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "runtime" && e["recorded_at"].is_string()));
    let actions: Vec<(String, String)> = first["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("contact.created", "runtime"),
        ("contact.updated", "agent"),
        ("contact.merged", "agent"),
    ] {
        assert!(
            actions.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {actions:?}"
        );
    }

    let second = record(&doc, p.by_email[1]);
    assert_eq!(second["contact"]["email"], "ADA@Example.com");
    assert_eq!(second["contact"]["chatbot_id"], "sales-bot");
    assert_eq!(second["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(second["sessions"][0]["session_id"], "tg-5");
    let statuses: Vec<&str> = second["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["granted", "withdrawn"]);
    assert_eq!(second["contact"]["consent"]["status"], "withdrawn");

    // Nothing about anyone else.
    let text = doc.to_string();
    for other in [
        "bob@example.com",
        "+447700900999",
        "ada@example.co\"",
        "ada.l@",
        "Adam",
    ] {
        assert!(!text.contains(other), "{other} leaked into {text}");
    }
    for id in p.others.iter().chain([&p.other_account, &p.by_phone[1]]) {
        assert!(!ids_of(&doc).contains(id));
    }

    // Account 2 sees only its own Ada.
    let doc2 = post(
        &app,
        &token(2, MANAGE),
        ACCESS,
        json!({"email": "ada@example.com"}),
    )
    .await
    .ok(200);
    assert_eq!(ids_of(&doc2), vec![p.other_account]);
    let r2 = &doc2["contacts"][0];
    assert_eq!(r2["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(r2["consent_history"].as_array().unwrap().len(), 1);
    assert!(r2["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "runtime-2"));

    // No match: an empty document, still versioned.
    let none = post(&app, &dpo, ACCESS, json!({"email": "nobody@example.com"}))
        .await
        .ok(200);
    assert_eq!(none["contacts"], json!([]));
    assert_eq!(none["schema"], "contacts-api/privacy-access/v1");
    // Account 3 has nothing at all.
    let none = post(
        &app,
        &token(3, MANAGE),
        ACCESS,
        json!({"email": "ada@example.com"}),
    )
    .await
    .ok(200);
    assert_eq!(none["contacts"], json!([]));
}

#[actix_web::test]
async fn access_by_phone_in_any_format_finds_the_same_contacts() {
    let app = spawn().await;
    let p = people(&app).await;
    let dpo = token(1, MANAGE);
    for body in [
        json!({"phone": "+447700900123"}),
        json!({"phone": "+44 7700 900123"}),
        json!({"phone": "07700 900123", "country_code": "GB"}),
        json!({"phone": "07700900123", "country_code": "gb"}),
        json!({"phone": "00447700900123"}),
        json!({"phone": " 0044 7700 900 123 "}),
    ] {
        let doc = post(&app, &dpo, ACCESS, body.clone()).await.ok(200);
        assert_eq!(ids_of(&doc), p.by_phone, "{body}");
        assert_eq!(
            doc["subject"],
            json!({"selector": "phone", "value": "+447700900123"}),
            "{body}"
        );
        let text = doc.to_string();
        assert!(
            !text.contains("900999") && !text.contains("900124"),
            "{text}"
        );
        assert!(!text.contains("bob@"), "{text}");
    }
    let doc = post(&app, &dpo, ACCESS, json!({"phone": "+447700900124"}))
        .await
        .ok(200);
    assert_eq!(
        ids_of(&doc),
        vec![p.others[1]],
        "a different number is another person"
    );
    let doc = post(&app, &dpo, ACCESS, json!({"phone": "+14155550100"}))
        .await
        .ok(200);
    assert_eq!(doc["contacts"], json!([]));
}

#[actix_web::test]
async fn access_matches_non_ascii_emails_ignoring_case_as_the_database_does() {
    let app = spawn().await;
    let rt = token(1, "contacts:upsert");
    let dpo = token(1, MANAGE);
    let mut ids = Vec::new();
    for (session, email) in [
        ("s1", "ΟΔΥΣΣΕΑΣ@example.gr"),
        ("s2", "οδυσσεας@example.gr"),
        ("s3", "İnci@example.com"),
    ] {
        let c = app
            .upsert_ok(
                &rt,
                "bot",
                session,
                json!({"channel": "website", "email": email}),
            )
            .await;
        assert_eq!(c["email"], email);
        ids.push(c["id"].as_i64().unwrap());
    }
    // The exact stored value always finds its contact.
    for (email, want) in [
        ("ΟΔΥΣΣΕΑΣ@example.gr", ids[0]),
        ("İnci@example.com", ids[2]),
    ] {
        let doc = post(&app, &dpo, ACCESS, json!({ "email": email }))
            .await
            .ok(200);
        assert!(ids_of(&doc).contains(&want), "{email}: {doc}");
    }
    let doc = post(&app, &dpo, ACCESS, json!({"email": "ΟΔΥΣΣΕΑΣ@EXAMPLE.GR"}))
        .await
        .ok(200);
    assert!(ids_of(&doc).contains(&ids[0]), "{doc}");
    // Erasure matches the same way.
    let r = post(&app, &dpo, ERASURE, json!({"email": "İnci@example.com"}))
        .await
        .ok(200);
    assert_eq!(r, json!({"erased": 1}));
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contacts WHERE id = {}",
            ids[2]
        )),
        0
    );
}

#[actix_web::test]
async fn access_and_erasure_need_exactly_one_valid_selector_and_privacy_manage() {
    let app = spawn().await;
    let p = people(&app).await;
    let dpo = token(1, MANAGE);
    let mut conn = app.db.conn();
    let before = account_state(&mut conn, 1);
    for path in [ACCESS, ERASURE] {
        for body in [
            json!({}),
            json!({"email": "ada@example.com", "phone": "+447700900123"}),
            json!({"email": null}),
            json!({"email": ""}),
            json!({"email": "   "}),
            json!({"country_code": "GB"}),
            json!({"email": "not-an-email"}),
            json!({"phone": "07700 900123"}),
            json!({"phone": "not a number"}),
            json!({"phone": "07700 900123", "country_code": "ZZZ"}),
        ] {
            let r = post(&app, &dpo, path, body.clone()).await;
            let prob = r.problem(422, "validation_failed");
            assert!(
                prob["errors"].as_array().is_some_and(|e| !e.is_empty()),
                "{body}: {prob}"
            );
        }
        let r = post(
            &app,
            &dpo,
            path,
            json!({"email": "ada@example.com", "name": "Ada"}),
        )
        .await;
        names(&r, "unknown_field", "name");
        let r = post(&app, &dpo, path, json!({"email": 42})).await;
        assert_eq!(r.status.as_u16(), 422, "{path}");
        for scopes in [RW, "audit:read contacts:delete"] {
            let r = post(
                &app,
                &token(1, scopes),
                path,
                json!({"email": "ada@example.com"}),
            )
            .await;
            r.problem(403, "insufficient_scope");
        }
        let r = app
            .send(
                actix_web::test::TestRequest::post()
                    .uri(path)
                    .set_json(json!({"email": "ada@example.com"})),
            )
            .await;
        r.problem(401, "invalid_token");
    }
    assert_eq!(
        account_state(&mut conn, 1),
        before,
        "refused requests change nothing and are not audited"
    );
    assert!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contacts WHERE id IN ({})",
            id_list(&p.by_email)
        )) == 2
    );
}

#[actix_web::test]
async fn access_is_audited_with_the_actor_and_count_but_not_the_value() {
    let app = spawn().await;
    let p = people(&app).await;
    let dpo = token_for(1, "dpo-eve", MANAGE, None);
    post(&app, &dpo, ACCESS, json!({"email": "Ada@Example.com"}))
        .await
        .ok(200);
    post(
        &app,
        &dpo,
        ACCESS,
        json!({"phone": "07700 900123", "country_code": "GB"}),
    )
    .await
    .ok(200);
    post(&app, &dpo, ACCESS, json!({"email": "nobody@example.com"}))
        .await
        .ok(200);
    let mut conn = app.db.conn();
    let rows = texts(
        &mut conn,
        "SELECT concat_ws('|', account_id, actor, coalesce(contact_id::text, '-'), \
                changed_fields::text, details->>'contacts', details::text) AS s \
         FROM audit_events WHERE action = 'privacy.accessed' ORDER BY id",
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].starts_with("1|dpo-eve|-|{}|2|"), "{rows:?}");
    assert!(rows[1].starts_with("1|dpo-eve|-|{}|2|"), "{rows:?}");
    assert!(rows[2].starts_with("1|dpo-eve|-|{}|0|"), "{rows:?}");
    for row in &rows {
        let lower = row.to_lowercase();
        for value in ["ada", "example", "7700", "900123", "nobody"] {
            assert!(!lower.contains(value), "{value} in {row}");
        }
    }
    // Visible in the audit log.
    let log = app
        .get(
            "/api/v1/audit-events?action=privacy.accessed",
            &token(1, "audit:read"),
        )
        .await
        .ok(200);
    assert_eq!(log["data"].as_array().unwrap().len(), 3, "{log}");
    assert!(log["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "dpo-eve" && e["contact_id"].is_null()));
    // Reading changed no contact.
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contacts WHERE id IN ({})",
            id_list(&p.by_email)
        )),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Erasure

#[actix_web::test]
async fn erasure_removes_every_row_about_the_person_and_audits_only_the_count() {
    let app = spawn().await;
    let p = people(&app).await;
    let mut conn = app.db.conn();
    let dpo = token_for(1, "dpo-eve", MANAGE, None);
    // An export filtered by her email happened (its audit row must not hold the value).
    let r = app
        .get(
            "/api/v1/contacts/export?format=ndjson&q=ada%40example.com",
            &token_for(1, "agent", "contacts:export", None),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200);
    let others_before: Vec<String> = p
        .others
        .iter()
        .map(|id| contact_state(&mut conn, *id))
        .collect();
    let account2_before = account_state(&mut conn, 2);
    let audit_before = app
        .db
        .count("SELECT count(*) AS n FROM audit_events WHERE account_id = 1");
    let events_of_hers = app.db.count(&format!(
        "SELECT count(*) AS n FROM audit_events WHERE contact_id IN ({}, {}, {})",
        id_list(&p.by_email),
        p.by_phone[1],
        p.merged_away
    ));
    assert!(events_of_hers > 5, "the setup audited her contacts");

    let r = post(&app, &dpo, ERASURE, json!({"email": "ADA@example.COM"})).await;
    assert_eq!(r.ok(200), json!({"erased": 2}));
    // Her phone-only contact is still there (it does not match the email) ...
    let doc = post(&app, &dpo, ACCESS, json!({"phone": "+447700900123"}))
        .await
        .ok(200);
    assert_eq!(ids_of(&doc), vec![p.by_phone[1]]);
    // ... until erased by phone.
    let r = post(
        &app,
        &dpo,
        ERASURE,
        json!({"phone": "07700 900123", "country_code": "GB"}),
    )
    .await;
    assert_eq!(r.ok(200), json!({"erased": 1}));
    let r = post(&app, &dpo, ERASURE, json!({"phone": "+447700900123"})).await;
    assert_eq!(r.ok(200), json!({"erased": 0}), "nothing left");

    // Every table, every row of the account: no erased value ...
    for value in [
        "ada@example.com",
        "447700900123",
        "7700 900123",
        "Lovelace",
        "Ada King",
        "Ada's secret plan",
        "secret plan",
        "cdn.example.com/ada",
        "203.0.113.9",
        "web-form",
        "web-ada",
        "tg-5",
        "sms-1",
    ] {
        let rows = rows_holding(&mut conn, value);
        assert!(rows.is_empty(), "{value} is still stored: {rows:#?}");
    }
    // ... and nothing points at her contacts, including the one merged away earlier.
    let mut hers: Vec<i64> = p.by_email.clone();
    hers.extend([p.by_phone[1], p.merged_away]);
    let rows = rows_pointing_at(&mut conn, &hers);
    assert!(
        rows.is_empty(),
        "rows still point at erased contacts: {rows:#?}"
    );
    assert!(app
        .get(
            &format!("/api/v1/audit-events?contact_id={}", p.by_email[0]),
            &token(1, "audit:read")
        )
        .await
        .ok(200)["data"]
        .as_array()
        .unwrap()
        .is_empty());
    for id in &hers {
        app.get(
            &format!("/api/v1/contacts/{id}"),
            &token(1, "contacts:read"),
        )
        .await
        .problem(404, "not_found");
    }

    // The audit log kept the past events (unlinked) and recorded each erasure once.
    let erasures = texts(
        &mut conn,
        "SELECT concat_ws('|', actor, coalesce(contact_id::text, '-'), details::text) AS s \
         FROM audit_events WHERE action = 'privacy.erased' ORDER BY id",
    );
    assert_eq!(erasures.len(), 3, "{erasures:?}");
    for (row, n) in erasures.iter().zip([2, 1, 0]) {
        assert!(row.starts_with("dpo-eve|-|"), "{row}");
        let details: Value = serde_json::from_str(row.splitn(3, '|').nth(2).unwrap()).unwrap();
        assert_eq!(details["erased"], n, "{row}");
    }
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM audit_events WHERE account_id = 1"),
        audit_before + 1 + 3,
        "past events kept (one access, three erasures added)"
    );

    // Other people and the other account are untouched.
    let others_after: Vec<String> = p
        .others
        .iter()
        .map(|id| contact_state(&mut conn, *id))
        .collect();
    assert_eq!(others_after, others_before);
    assert_eq!(account_state(&mut conn, 2), account2_before);
    let doc = post(
        &app,
        &token(2, MANAGE),
        ACCESS,
        json!({"email": "ada@example.com"}),
    )
    .await
    .ok(200);
    assert_eq!(ids_of(&doc), vec![p.other_account]);
}

#[actix_web::test]
async fn an_upsert_after_erasure_starts_a_fresh_contact_with_only_the_new_data() {
    let app = spawn().await;
    let p = people(&app).await;
    let dpo = token(1, MANAGE);
    let r = post(&app, &dpo, ERASURE, json!({"email": "ada@example.com"})).await;
    assert_eq!(r.ok(200), json!({"erased": 2}));
    let r = post(&app, &dpo, ERASURE, json!({"phone": "+447700900123"})).await;
    assert_eq!(r.ok(200), json!({"erased": 1}));
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let r = app
        .upsert(
            &rt,
            "support-bot",
            "wa-447700900123",
            json!({"channel": "whatsapp", "name": "New Person"}),
        )
        .await;
    let c = r.ok(201);
    let id = c["id"].as_i64().unwrap();
    assert!(!p.by_email.contains(&id) && id != p.merged_away, "a new id");
    assert_eq!(c["name"], "New Person");
    for field in [
        "email",
        "phone",
        "avatar_url",
        "ip_address",
        "country_code",
        "consent",
    ] {
        assert_eq!(c[field], Value::Null, "{field}: {c}");
    }
    assert_eq!(c["payload"], json!({}));
    assert_eq!(c["sessions_count"], 1);
    assert_eq!(c["version"], 1);
    // The other merged-in session starts afresh too.
    let w = app
        .upsert(&rt, "web-bot", "web-ada", json!({"channel": "website"}))
        .await;
    let w = w.ok(201);
    assert_ne!(w["id"], id);
    assert_eq!(w["email"], Value::Null);
    assert_eq!(w["consent"], Value::Null);
    let mut conn = app.db.conn();
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM consent_events WHERE contact_id IN ({id}, {})",
                w["id"]
            )
        ),
        0
    );
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) AS n FROM contact_sessions WHERE contact_id = {id}")
        ),
        1
    );
    for value in [
        "ada@example.com",
        "Lovelace",
        "Ada King",
        "secret plan",
        "web-form",
    ] {
        let rows = rows_holding(&mut conn, value);
        assert!(rows.is_empty(), "{value} came back: {rows:#?}");
    }
    let doc = post(&app, &dpo, ACCESS, json!({"email": "ada@example.com"}))
        .await
        .ok(200);
    assert_eq!(doc["contacts"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Retention

#[actix_web::test]
async fn the_retention_setting_is_read_and_written_with_privacy_manage() {
    let app = spawn().await;
    let m = token(1, MANAGE);
    let r = app.get(RETENTION, &m).await;
    assert_eq!(r.ok(200), json!({"days": null}));
    let put = |body: Value| {
        let m = m.clone();
        let app = &app;
        async move { app.call(Method::PUT, RETENTION, &m, Some(body)).await }
    };
    assert_eq!(put(json!({"days": 30})).await.ok(200), json!({"days": 30}));
    assert_eq!(app.get(RETENTION, &m).await.ok(200), json!({"days": 30}));
    assert_eq!(
        app.get(RETENTION, &token(2, MANAGE)).await.ok(200),
        json!({"days": null}),
        "per account"
    );
    for days in [1, 36500] {
        assert_eq!(
            put(json!({ "days": days })).await.ok(200),
            json!({ "days": days })
        );
    }
    for bad in [0, -1, 36501] {
        names(
            &put(json!({ "days": bad })).await,
            "validation_failed",
            "days",
        );
    }
    for bad in [
        json!({"days": "x"}),
        json!({"days": 1.5}),
        json!({"days": true}),
    ] {
        let r = put(bad.clone()).await;
        assert_eq!(r.status.as_u16(), 422, "{bad}");
    }
    names(
        &put(json!({"days": 30, "hours": 1})).await,
        "unknown_field",
        "hours",
    );
    assert_eq!(
        app.get(RETENTION, &m).await.ok(200),
        json!({"days": 36500}),
        "refused writes change nothing"
    );
    assert_eq!(
        put(json!({"days": null})).await.ok(200),
        json!({"days": null})
    );
    assert_eq!(app.get(RETENTION, &m).await.ok(200), json!({"days": null}));
    let mut conn = app.db.conn();
    assert_eq!(
        texts(
            &mut conn,
            "SELECT concat_ws('|', account_id, coalesce(retention_days::text, 'null')) AS s \
             FROM account_settings"
        ),
        vec!["1|null"]
    );
    for scopes in [RW, "audit:read contacts:delete"] {
        let t = token(1, scopes);
        app.get(RETENTION, &t)
            .await
            .problem(403, "insufficient_scope");
        app.call(Method::PUT, RETENTION, &t, Some(json!({"days": 1})))
            .await
            .problem(403, "insufficient_scope");
    }
    assert_eq!(app.get(RETENTION, &m).await.ok(200), json!({"days": null}));
}

/// Inserts `n` contacts of `account` last seen `age` ago (e.g. `40 days`), with one session each;
/// returns their ids.
fn insert_contacts(
    conn: &mut PgConnection,
    account: i64,
    n: i64,
    age: &str,
    tag: &str,
) -> Vec<i64> {
    let ids = numbers(
        conn,
        &format!(
            "INSERT INTO contacts (account_id, name, email, channel, chatbot_id, session_id, \
                                   sessions_count, created_at, last_seen_at) \
             SELECT {account}, '{tag} ' || g, '{tag}' || g || '@example.com', 'website', 'bot', \
                    '{tag}-' || g, 1, now() - interval '{age}' - interval '1 day', \
                    now() - interval '{age}' \
             FROM generate_series(1, {n}) g RETURNING id AS n"
        ),
    );
    exec(
        conn,
        &format!(
            "INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel, \
                                           first_seen_at, last_seen_at) \
             SELECT account_id, chatbot_id, session_id, id, channel, created_at, last_seen_at \
             FROM contacts WHERE id IN ({})",
            id_list(&ids)
        ),
    );
    ids
}

fn remaining(conn: &mut PgConnection, ids: &[i64]) -> Vec<i64> {
    numbers(
        conn,
        &format!(
            "SELECT id AS n FROM contacts WHERE id IN ({}) ORDER BY id",
            id_list(ids)
        ),
    )
}

/// (rows, sum of details.deleted) of the retention audit rows of `account`.
fn retention_audit(conn: &mut PgConnection, account: i64) -> (i64, i64) {
    let rows = texts(
        conn,
        &format!(
            "SELECT concat_ws('|', actor, coalesce(contact_id::text, '-'), details::text) AS s \
             FROM audit_events WHERE account_id = {account} \
               AND action = 'contacts.retention_deleted' ORDER BY id"
        ),
    );
    let mut sum = 0;
    for row in &rows {
        assert!(row.starts_with("system:retention|-|"), "{row}");
        let details: Value = serde_json::from_str(row.splitn(3, '|').nth(2).unwrap()).unwrap();
        let n = details["deleted"]
            .as_i64()
            .unwrap_or_else(|| panic!("{row}"));
        assert!(
            (1..=contacts_api::repo::retention::BATCH).contains(&n),
            "{row}"
        );
        sum += n;
    }
    (rows.len() as i64, sum)
}

#[test]
fn a_retention_pass_deletes_exactly_the_expired_contacts_of_configured_accounts() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let expired = insert_contacts(&mut conn, 1, 5, "40 days", "old");
    let just_inside = insert_contacts(&mut conn, 1, 3, "29 days 23 hours", "recent");
    let fresh = insert_contacts(&mut conn, 1, 2, "1 minute", "fresh");
    let unconfigured = insert_contacts(&mut conn, 2, 4, "400 days", "acc2");
    let switched_off = insert_contacts(&mut conn, 3, 2, "400 days", "acc3");
    let longer = insert_contacts(&mut conn, 4, 3, "40 days", "acc4");
    // A consent history and a redirect on an expired contact go with it.
    exec(
        &mut conn,
        &format!(
            "INSERT INTO consent_events (account_id, contact_id, status, actor) \
             VALUES (1, {}, 'granted', 'runtime')",
            expired[0]
        ),
    );
    exec(
        &mut conn,
        &format!(
            "INSERT INTO contact_merges (account_id, source_id, target_id) VALUES (1, 999999, {})",
            expired[1]
        ),
    );
    exec(
        &mut conn,
        "INSERT INTO account_settings (account_id, retention_days) \
         VALUES (1, 30), (3, NULL), (4, 365)",
    );

    let n = contacts_api::repo::retention::run_once(&mut conn).expect("retention pass");
    assert_eq!(n, 5);
    assert!(remaining(&mut conn, &expired).is_empty());
    assert_eq!(remaining(&mut conn, &just_inside), just_inside);
    assert_eq!(remaining(&mut conn, &fresh), fresh);
    assert_eq!(remaining(&mut conn, &unconfigured), unconfigured);
    assert_eq!(remaining(&mut conn, &switched_off), switched_off);
    assert_eq!(remaining(&mut conn, &longer), longer);
    let l = id_list(&expired);
    for t in ["contact_sessions", "consent_events"] {
        assert_eq!(
            count(
                &mut conn,
                &format!("SELECT count(*) AS n FROM {t} WHERE contact_id IN ({l})")
            ),
            0,
            "{t}"
        );
    }
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM contact_merges"),
        0
    );
    assert_eq!(retention_audit(&mut conn, 1), (1, 5));
    for account in [2, 3, 4] {
        assert_eq!(
            retention_audit(&mut conn, account),
            (0, 0),
            "account {account}"
        );
    }

    // Nothing more to do: no new audit row.
    assert_eq!(
        contacts_api::repo::retention::run_once(&mut conn).unwrap(),
        0
    );
    assert_eq!(retention_audit(&mut conn, 1), (1, 5));
    // A contact seen again is kept: refreshed before the pass.
    exec(
        &mut conn,
        &format!(
            "UPDATE contacts SET last_seen_at = now() - interval '31 days' WHERE id = {}",
            just_inside[0]
        ),
    );
    exec(
        &mut conn,
        &format!(
            "UPDATE contacts SET last_seen_at = now() WHERE id = {}",
            just_inside[1]
        ),
    );
    assert_eq!(
        contacts_api::repo::retention::run_once(&mut conn).unwrap(),
        1
    );
    assert_eq!(
        remaining(&mut conn, &just_inside),
        just_inside[1..].to_vec()
    );
    assert_eq!(retention_audit(&mut conn, 1), (2, 6));
}

#[test]
fn two_concurrent_retention_passes_delete_each_expired_contact_exactly_once() {
    let db = TestDb::new();
    let mut conn = db.conn();
    exec(
        &mut conn,
        "INSERT INTO contacts (account_id, name, channel, chatbot_id, created_at, last_seen_at) \
         SELECT 1, 'expired ' || g, 'website', 'bot', now() - interval '50 days', \
                now() - interval '40 days' - g * interval '1 second' \
         FROM generate_series(1, 3000) g",
    );
    let fresh = insert_contacts(&mut conn, 1, 20, "10 days", "fresh");
    let other = insert_contacts(&mut conn, 2, 20, "400 days", "acc2");
    exec(
        &mut conn,
        "INSERT INTO account_settings (account_id, retention_days) VALUES (1, 30)",
    );
    let expired = numbers(
        &mut conn,
        "SELECT id AS n FROM contacts WHERE account_id = 1 AND name LIKE 'expired %'",
    );
    assert_eq!(expired.len(), 3000);

    for round in 0..3 {
        if round > 0 {
            // Again, with fresh rows expiring.
            exec(
                &mut conn,
                "INSERT INTO contacts (account_id, name, channel, chatbot_id, last_seen_at) \
                 SELECT 1, 'expired ' || g, 'website', 'bot', now() - interval '31 days' \
                 FROM generate_series(1, 2500) g",
            );
        }
        let expected = count(
            &mut conn,
            "SELECT count(*) AS n FROM contacts WHERE account_id = 1 AND name LIKE 'expired %'",
        );
        let (_, sum_before) = retention_audit(&mut conn, 1);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let passes: Vec<_> = (0..2)
            .map(|_| {
                let mut c = db.conn();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    contacts_api::repo::retention::run_once(&mut c).expect("retention pass")
                })
            })
            .collect();
        let deleted: Vec<i64> = passes.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            deleted.iter().sum::<i64>(),
            expected,
            "round {round}: {deleted:?}"
        );
        assert_eq!(
            count(
                &mut conn,
                "SELECT count(*) AS n FROM contacts WHERE account_id = 1 AND name LIKE 'expired %'"
            ),
            0,
            "round {round}: every expired contact deleted"
        );
        let (_, sum_after) = retention_audit(&mut conn, 1);
        assert_eq!(
            sum_after - sum_before,
            expected,
            "round {round}: audited once each"
        );
        assert_eq!(remaining(&mut conn, &fresh), fresh);
        assert_eq!(remaining(&mut conn, &other), other);
    }
    assert!(remaining(&mut conn, &expired).is_empty());
    assert_eq!(retention_audit(&mut conn, 2), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Two real server processes

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(url: &str, port: u16) -> Server {
    let mut c = Command::new(BIN);
    for var in [
        "DATABASE_URL",
        "BIND_ADDR",
        "JWT_SECRET",
        "JWT_PUBLIC_KEY_FILE",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "DATABASE_POOL_SIZE",
        "RETENTION_INTERVAL_SECONDS",
    ] {
        c.env_remove(var);
    }
    Server(
        c.arg("serve")
            .env("DATABASE_URL", url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", SECRET)
            .env("DATABASE_POOL_SIZE", "4")
            .env("RETENTION_INTERVAL_SECONDS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// GET over TCP with a bearer token: (status, body).
fn http_get(port: u16, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

#[test]
fn two_server_processes_delete_exactly_the_expired_contacts_once() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let (p1, p2) = (free_port(), free_port());
    let _a = start_server(&db.url, p1);
    let _b = start_server(&db.url, p2);
    let started = Instant::now();
    for port in [p1, p2] {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Both servers are running their retention task (a pass a second); the data and then the
    // policy arrive while they run.
    exec(
        &mut conn,
        "INSERT INTO contacts (account_id, name, channel, chatbot_id, created_at, last_seen_at) \
         SELECT 1, 'expired ' || g, 'website', 'bot', now() - interval '50 days', \
                now() - interval '40 days' - g * interval '1 second' \
         FROM generate_series(1, 6000) g",
    );
    let expired_sessions = insert_contacts(&mut conn, 1, 50, "35 days", "old");
    let fresh = insert_contacts(&mut conn, 1, 40, "29 days", "fresh");
    let other = insert_contacts(&mut conn, 2, 30, "400 days", "acc2");
    let expired = count(
        &mut conn,
        "SELECT count(*) AS n FROM contacts WHERE account_id = 1 \
         AND last_seen_at < now() - interval '30 days'",
    );
    assert_eq!(expired, 6050);
    exec(
        &mut conn,
        "INSERT INTO account_settings (account_id, retention_days) VALUES (1, 30)",
    );
    for port in [p1, p2] {
        let (status, body) = http_get(port, RETENTION, &token(1, MANAGE));
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"days": 30})
        );
    }

    let waited = Instant::now();
    loop {
        let left = count(
            &mut conn,
            "SELECT count(*) AS n FROM contacts WHERE account_id = 1 \
             AND last_seen_at < now() - interval '30 days'",
        );
        if left == 0 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "{left} expired contacts still there after 15 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let any pass still in flight finish before counting its audit rows.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(remaining(&mut conn, &expired_sessions).is_empty());
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM contact_sessions WHERE contact_id IN ({})",
                id_list(&expired_sessions)
            )
        ),
        0
    );
    assert_eq!(remaining(&mut conn, &fresh), fresh, "fresh contacts kept");
    assert_eq!(
        remaining(&mut conn, &other),
        other,
        "unconfigured account kept"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM contacts WHERE account_id = 1"
        ),
        fresh.len() as i64
    );
    let (rows, sum) = retention_audit(&mut conn, 1);
    assert_eq!(
        sum, expired,
        "each deletion counted once over {rows} audit rows"
    );
    assert!(rows >= 7, "batches of at most 1000: {rows}");
    assert_eq!(retention_audit(&mut conn, 2), (0, 0));
}
