//! The audit log: every audited action recorded exactly once, in the transaction of the change,
//! with the token's `sub` as actor and field names (never values); failed changes leave no row;
//! `GET /audit-events` is newest first, cursor-paginated, filterable and tenant-scoped.

use std::collections::{BTreeSet, HashSet};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::test::TestRequest;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text};
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::helpers::*;

const ALL: &str = "contacts:read contacts:write contacts:delete contacts:upsert \
                   contacts:export privacy:manage audit:read";
const AUDIT: &str = "/api/v1/audit-events";

/// One stored audit row.
#[derive(diesel::QueryableByName, Debug, Clone)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    account_id: i64,
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    contact_id: Option<i64>,
    #[diesel(sql_type = Array<Text>)]
    changed_fields: Vec<String>,
    #[diesel(sql_type = Jsonb)]
    details: Value,
}

impl Row {
    fn fields(&self) -> BTreeSet<&str> {
        self.changed_fields.iter().map(String::as_str).collect()
    }
}

/// The account's audit rows with an id above `after`, oldest first.
fn rows_after(db: &TestDb, account: i64, after: i64) -> Vec<Row> {
    diesel::sql_query(format!(
        "SELECT account_id, id, actor, action, contact_id, changed_fields, details \
         FROM audit_events WHERE account_id = {account} AND id > {after} ORDER BY id"
    ))
    .load(&mut db.conn())
    .expect("audit rows")
}

/// Every audit row of the account, oldest first.
fn rows(db: &TestDb, account: i64) -> Vec<Row> {
    rows_after(db, account, 0)
}

/// The highest audit id so far (0 when none).
fn last_id(db: &TestDb) -> i64 {
    db.count("SELECT COALESCE(max(id), 0)::bigint AS n FROM audit_events")
}

/// Audit rows of every account.
fn total(db: &TestDb) -> i64 {
    db.count("SELECT count(*) AS n FROM audit_events")
}

/// Audit rows whose details, fields, actor or action contain `needle` (ignoring case).
fn leaks(db: &TestDb, needle: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) AS n FROM audit_events WHERE strpos(lower(details::text || ' ' || \
         array_to_string(changed_fields, ',') || ' ' || actor || ' ' || action), \
         lower('{needle}')) > 0"
    ))
}

/// Asserts exactly one new row: `(actor, action, contact_id)` and the set of changed fields.
#[track_caller]
fn one(new: &[Row], actor: &str, action: &str, contact: Option<i64>, fields: &[&str]) -> Row {
    assert_eq!(new.len(), 1, "expected one new audit row, got {new:#?}");
    let r = &new[0];
    assert_eq!(r.actor, actor, "{r:?}");
    assert_eq!(r.action, action, "{r:?}");
    assert_eq!(r.contact_id, contact, "{r:?}");
    assert_eq!(
        r.fields(),
        fields.iter().copied().collect::<BTreeSet<_>>(),
        "{r:?}"
    );
    assert_eq!(
        r.changed_fields.len(),
        fields.len(),
        "no field named twice: {r:?}"
    );
    r.clone()
}

fn exec(db: &TestDb, sql: &str) {
    diesel::sql_query(sql)
        .execute(&mut db.conn())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn patch_req(id: i64, token: &str, body: Value) -> TestRequest {
    TestRequest::patch()
        .uri(&format!("/api/v1/contacts/{id}"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("content-type", "application/merge-patch+json"))
        .set_payload(body.to_string())
}

fn id_of(contact: &Value) -> i64 {
    contact["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {contact}"))
}

/// Every event of a listing, following `next_cursor` with `limit`; checks each page's size.
async fn walk<S, B>(app: &TestApp<S>, tok: &str, filters: &str, limit: usize) -> Vec<Value>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut q = format!("{AUDIT}?limit={limit}");
        if !filters.is_empty() {
            q.push('&');
            q.push_str(filters);
        }
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let page = app.get(&q, tok).await.ok(200);
        let data = page["data"].as_array().expect("data").clone();
        assert!(data.len() <= limit, "page over the limit: {page}");
        let next = page["next_cursor"].as_str().map(str::to_string);
        if next.is_some() {
            assert_eq!(data.len(), limit, "a page with a next page is full: {page}");
        }
        out.extend(data);
        match next {
            None => return out,
            Some(c) => cursor = Some(c),
        }
    }
    panic!("pagination does not end");
}

fn ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Every audited action appears exactly once, with the right actor and field names.
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn session_upserts_audit_creation_and_changed_fields_only() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);

    let c = app
        .upsert_ok(
            &rt,
            "bot",
            "s1",
            json!({"channel": "website", "name": "Ada", "email": "ada@example.com",
                   "payload": {"plan": "free"}}),
        )
        .await;
    let id = id_of(&c);
    one(
        &rows(&app.db, 1),
        "runtime",
        "contact.created",
        Some(id),
        &[],
    );

    // The same fields again: an interaction, not a change.
    let mark = last_id(&app.db);
    let again = app
        .upsert_ok(
            &rt,
            "bot",
            "s1",
            json!({"channel": "website", "name": "Ada", "email": "ada@example.com",
                   "payload": {"plan": "free"}}),
        )
        .await;
    assert_eq!(id_of(&again), id);
    assert_eq!(rows_after(&app.db, 1, mark).len(), 0, "no row for a no-op");
    // Only the channel (of the interaction) differs: still not audited.
    app.upsert_ok(&rt, "bot", "s1", json!({"channel": "whatsapp"}))
        .await;
    assert_eq!(rows_after(&app.db, 1, mark).len(), 0, "no row for a no-op");

    // Name and email change: one row naming exactly those two.
    let mark = last_id(&app.db);
    app.upsert_ok(
        &rt,
        "bot",
        "s1",
        json!({"channel": "website", "name": "Ada King", "email": "ada.king@example.com",
               "payload": {"plan": "free"}}),
    )
    .await;
    one(
        &rows_after(&app.db, 1, mark),
        "runtime",
        "contact.updated",
        Some(id),
        &["email", "name"],
    );

    // A payload key and the phone: those two.
    let mark = last_id(&app.db);
    app.upsert_ok(
        &rt,
        "bot",
        "s1",
        json!({"channel": "website", "phone": "+447700900123", "payload": {"plan": "pro"}}),
    )
    .await;
    one(
        &rows_after(&app.db, 1, mark),
        "runtime",
        "contact.updated",
        Some(id),
        &["payload", "phone"],
    );

    // Another actor creating another session's contact.
    let other = token_for(1, "dashboard-user", "contacts:write", None);
    let mark = last_id(&app.db);
    let c2 = app
        .upsert_ok(&other, "bot", "s2", json!({"channel": "api"}))
        .await;
    one(
        &rows_after(&app.db, 1, mark),
        "dashboard-user",
        "contact.created",
        Some(id_of(&c2)),
        &[],
    );
    assert_eq!(rows(&app.db, 1).len(), 4);
    assert_eq!(total(&app.db), 4);
}

#[actix_web::test]
async fn create_patch_and_delete_are_audited_with_their_actor() {
    let app = spawn().await;
    let alice = token_for(1, "alice", "contacts:write", None);
    let bob = token_for(1, "bob", "contacts:write contacts:read", None);
    let carol = token_for(1, "carol", "contacts:delete", None);

    let c = app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &alice,
            Some(
                json!({"chatbot_id": "bot", "channel": "api", "session_id": "s1",
                        "name": "Grace", "email": "grace@example.com", "payload": {"a": 1}}),
            ),
        )
        .await
        .ok(201);
    let id = id_of(&c);
    one(&rows(&app.db, 1), "alice", "contact.created", Some(id), &[]);

    // Without a session too.
    let mark = last_id(&app.db);
    let bare = app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &alice,
            Some(json!({"chatbot_id": "bot", "channel": "api"})),
        )
        .await
        .ok(201);
    one(
        &rows_after(&app.db, 1, mark),
        "alice",
        "contact.created",
        Some(id_of(&bare)),
        &[],
    );

    let mark = last_id(&app.db);
    let r = app
        .send(patch_req(
            id,
            &bob,
            json!({"email": "grace.hopper@example.com", "payload": {"b": 2}}),
        ))
        .await;
    r.ok(200);
    one(
        &rows_after(&app.db, 1, mark),
        "bob",
        "contact.updated",
        Some(id),
        &["email", "payload"],
    );

    // Patches that change nothing: no row.
    let mark = last_id(&app.db);
    for body in [
        json!({"email": "grace.hopper@example.com", "payload": {"b": 2}}),
        json!({}),
        json!({"payload": {"missing": null}}),
        json!({"name": "  Grace  "}),
    ] {
        let r = app.send(patch_req(id, &bob, body.clone())).await;
        assert_eq!(r.ok(200)["version"], 2, "{body}");
    }
    assert_eq!(rows_after(&app.db, 1, mark).len(), 0);

    // Clearing a field is a change of that field.
    let mark = last_id(&app.db);
    app.send(patch_req(id, &bob, json!({"name": null})))
        .await
        .ok(200);
    one(
        &rows_after(&app.db, 1, mark),
        "bob",
        "contact.updated",
        Some(id),
        &["name"],
    );

    let mark = last_id(&app.db);
    app.call(
        Method::DELETE,
        &format!("/api/v1/contacts/{id}"),
        &carol,
        None,
    )
    .await
    .ok(204);
    one(
        &rows_after(&app.db, 1, mark),
        "carol",
        "contact.deleted",
        Some(id),
        &[],
    );
    assert_eq!(total(&app.db), 5);
}

#[actix_web::test]
async fn a_merge_is_one_event_on_the_target_naming_the_sources() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let alice = token_for(1, "alice", "contacts:write", None);
    let t = id_of(
        &app.upsert_ok(&rt, "bot", "t", json!({"channel": "api"}))
            .await,
    );
    let s1 = id_of(
        &app.upsert_ok(&rt, "bot", "a", json!({"channel": "api", "name": "Ada"}))
            .await,
    );
    let s2 = id_of(
        &app.upsert_ok(
            &rt,
            "bot",
            "b",
            json!({"channel": "api", "email": "ada@example.com"}),
        )
        .await,
    );
    let mark = last_id(&app.db);
    app.call(
        Method::POST,
        &format!("/api/v1/contacts/{t}/merge"),
        &alice,
        Some(json!({"source_ids": [s2, s1]})),
    )
    .await
    .ok(200);
    let r = one(
        &rows_after(&app.db, 1, mark),
        "alice",
        "contact.merged",
        Some(t),
        &[],
    );
    assert_eq!(r.details["source_ids"], json!([s2, s1]), "{r:?}");
    assert_eq!(r.account_id, 1);

    // A later upsert of a source's session is audited on the target.
    let mark = last_id(&app.db);
    app.upsert_ok(&rt, "bot", "a", json!({"channel": "api", "name": "Ada L"}))
        .await;
    one(
        &rows_after(&app.db, 1, mark),
        "runtime",
        "contact.updated",
        Some(t),
        &["name"],
    );
}

#[actix_web::test]
async fn bulk_deletes_are_audited_per_transaction_with_counts() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let dana = token_for(1, "dana", "contacts:delete", None);
    let mut made = Vec::new();
    for s in ["s1", "s2", "s3", "s4"] {
        made.push(id_of(
            &app.upsert_ok(&rt, "bot", s, json!({"channel": "api"}))
                .await,
        ));
    }
    let bulk = |body: Value| {
        let tok = dana.clone();
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/contacts/bulk-delete",
                &tok,
                Some(body),
            )
            .await
        }
    };

    // A dry run changes nothing and records nothing.
    let mark = last_id(&app.db);
    let r = bulk(json!({"ids": [made[0], made[1]], "dry_run": true})).await;
    assert_eq!(r.ok(200), json!({"matched": 2}));
    let r = bulk(json!({"filter": {}, "dry_run": true})).await;
    assert_eq!(r.ok(200), json!({"matched": 4}));
    assert_eq!(rows_after(&app.db, 1, mark).len(), 0);

    // By ids (one unknown): one row with the count actually deleted.
    let r = bulk(json!({"ids": [made[0], made[1], made[2], 987_654_321]})).await;
    assert_eq!(r.ok(200), json!({"deleted": 3}));
    let row = one(
        &rows_after(&app.db, 1, mark),
        "dana",
        "contacts.bulk_deleted",
        None,
        &[],
    );
    assert_eq!(row.details["deleted"], 3, "{row:?}");

    // By filter, 2500 contacts plus the one left: batches of 1000, counts summing to 2501.
    exec(
        &app.db,
        "INSERT INTO contacts (account_id, channel, chatbot_id) \
         SELECT 1, 'api', 'bot' FROM generate_series(1, 2500)",
    );
    exec(
        &app.db,
        "INSERT INTO contacts (account_id, channel, chatbot_id) \
         SELECT 2, 'api', 'bot' FROM generate_series(1, 5)",
    );
    let mark = last_id(&app.db);
    let r = bulk(json!({"filter": {"channel": "api"}})).await;
    assert_eq!(r.ok(200), json!({"deleted": 2501}));
    let new = rows_after(&app.db, 1, mark);
    assert_eq!(new.len(), 3, "one row per batch of 1000: {new:?}");
    let mut counts: Vec<i64> = new
        .iter()
        .map(|r| {
            assert_eq!(r.actor, "dana");
            assert_eq!(r.action, "contacts.bulk_deleted");
            assert_eq!(r.contact_id, None);
            assert!(r.changed_fields.is_empty());
            r.details["deleted"].as_i64().expect("deleted count")
        })
        .collect();
    counts.sort();
    assert_eq!(counts, vec![501, 1000, 1000]);
    assert_eq!(counts.iter().sum::<i64>(), 2501);
    assert_eq!(rows(&app.db, 2).len(), 0, "nothing recorded in account 2");

    // Nothing left to delete: no change, no row.
    let mark = last_id(&app.db);
    let r = bulk(json!({"filter": {"channel": "api"}})).await;
    assert_eq!(r.ok(200), json!({"deleted": 0}));
    let r = bulk(json!({"ids": [made[0], 987_654_321]})).await;
    assert_eq!(r.ok(200), json!({"deleted": 0}));
    assert_eq!(rows_after(&app.db, 1, mark).len(), 0);
}

#[actix_web::test]
async fn an_export_records_its_format_and_filter_names_only() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let eve = token_for(1, "eve", "contacts:export", None);
    app.upsert_ok(
        &rt,
        "bot",
        "s1",
        json!({"channel": "web", "name": "Ada Lovelace"}),
    )
    .await;
    let mark = last_id(&app.db);
    let r = app
        .get("/api/v1/contacts/export?format=ndjson&q=Ada", &eve)
        .await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Ada Lovelace"));
    let row = one(
        &rows_after(&app.db, 1, mark),
        "eve",
        "contacts.exported",
        None,
        &[],
    );
    assert_eq!(row.details["format"], "ndjson", "{row:?}");
    assert_eq!(row.details["filters"], json!(["q"]), "{row:?}");
    assert!(!row.details.to_string().contains("Ada"), "{row:?}");
    assert_eq!(leaks(&app.db, "Ada"), 0);

    let mark = last_id(&app.db);
    let r = app
        .get("/api/v1/contacts/export?channel=web&has_email=false", &eve)
        .await;
    assert_eq!(r.status.as_u16(), 200);
    let row = one(
        &rows_after(&app.db, 1, mark),
        "eve",
        "contacts.exported",
        None,
        &[],
    );
    assert_eq!(row.details["format"], "csv", "{row:?}");
    let names: BTreeSet<&str> = row.details["filters"]
        .as_array()
        .expect("filters")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["channel", "has_email"]), "{row:?}");
    assert!(!row.details.to_string().contains("web"), "{row:?}");
}

#[actix_web::test]
async fn a_batch_upsert_audits_each_item_once() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let path = "/api/v1/contacts/batch-upsert";
    let r = app
        .call(
            Method::POST,
            path,
            &rt,
            Some(json!({"items": [
                {"chatbot_id": "bot", "session_id": "b1", "channel": "api", "name": "One"},
                {"chatbot_id": "bot", "session_id": "b2", "channel": "api"},
                {"chatbot_id": "bot", "session_id": "b3", "channel": "api",
                 "email": "three@example.com"},
            ]})),
        )
        .await;
    let body = r.ok(200);
    let made: BTreeSet<i64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            assert_eq!(x["status"], 201);
            id_of(&x["contact"])
        })
        .collect();
    assert_eq!(made.len(), 3);
    let all = rows(&app.db, 1);
    assert_eq!(all.len(), 3, "{all:?}");
    for r in &all {
        assert_eq!(r.actor, "runtime");
        assert_eq!(r.action, "contact.created");
        assert!(r.changed_fields.is_empty());
    }
    let audited: BTreeSet<i64> = all.iter().map(|r| r.contact_id.unwrap()).collect();
    assert_eq!(audited, made);

    // Updates: a changed name, an unchanged repeat, and two items of one session in order.
    let mark = last_id(&app.db);
    let r = app
        .call(
            Method::POST,
            path,
            &token_for(1, "runtime-2", "contacts:upsert", None),
            Some(json!({"items": [
                {"chatbot_id": "bot", "session_id": "b1", "channel": "api", "name": "Uno"},
                {"chatbot_id": "bot", "session_id": "b2", "channel": "api"},
                {"chatbot_id": "bot", "session_id": "b3", "channel": "api",
                 "phone": "+447700900123"},
                {"chatbot_id": "bot", "session_id": "b3", "channel": "api",
                 "email": "tres@example.com"},
            ]})),
        )
        .await;
    let body = r.ok(200);
    let res = body["results"].as_array().unwrap();
    let (b1, b3) = (id_of(&res[0]["contact"]), id_of(&res[2]["contact"]));
    let new = rows_after(&app.db, 1, mark);
    assert_eq!(new.len(), 3, "{new:?}");
    let b1_rows: Vec<Row> = new
        .iter()
        .filter(|r| r.contact_id == Some(b1))
        .cloned()
        .collect();
    one(
        &b1_rows,
        "runtime-2",
        "contact.updated",
        Some(b1),
        &["name"],
    );
    let b3_rows: Vec<Row> = new
        .iter()
        .filter(|r| r.contact_id == Some(b3))
        .cloned()
        .collect();
    assert_eq!(b3_rows.len(), 2, "{new:?}");
    one(
        &b3_rows[..1],
        "runtime-2",
        "contact.updated",
        Some(b3),
        &["phone"],
    );
    one(
        &b3_rows[1..],
        "runtime-2",
        "contact.updated",
        Some(b3),
        &["email"],
    );
}

#[actix_web::test]
async fn a_consent_change_is_an_update_of_consent() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let id = id_of(
        &app.upsert_ok(&rt, "bot", "s1", json!({"channel": "api"}))
            .await,
    );

    let granted = json!({"status": "granted", "source": "optin-form", "text_version": "v1"});
    let mark = last_id(&app.db);
    app.upsert_ok(
        &rt,
        "bot",
        "s1",
        json!({"channel": "api", "consent": granted}),
    )
    .await;
    one(
        &rows_after(&app.db, 1, mark),
        "runtime",
        "contact.updated",
        Some(id),
        &["consent"],
    );

    // The same statement again: no change.
    let mark = last_id(&app.db);
    app.upsert_ok(
        &rt,
        "bot",
        "s1",
        json!({"channel": "api", "consent": granted}),
    )
    .await;
    assert_eq!(rows_after(&app.db, 1, mark).len(), 0);

    // Withdrawn by another principal, with a profile change in the same call.
    let mark = last_id(&app.db);
    let other = token_for(1, "support-agent", "contacts:write", None);
    app.upsert_ok(
        &other,
        "bot",
        "s1",
        json!({"channel": "api", "name": "Ada",
               "consent": {"status": "withdrawn", "source": "zq-agent-src"}}),
    )
    .await;
    // Each changed field is named once, by that principal (in one row or two).
    let new = rows_after(&app.db, 1, mark);
    assert!(!new.is_empty() && new.len() <= 2, "{new:?}");
    let mut named: Vec<&str> = Vec::new();
    for r in &new {
        assert_eq!(
            (r.actor.as_str(), r.action.as_str(), r.contact_id),
            ("support-agent", "contact.updated", Some(id)),
            "{r:?}"
        );
        named.extend(r.changed_fields.iter().map(String::as_str));
    }
    named.sort();
    assert_eq!(named, vec!["consent", "name"], "{new:?}");
    assert_eq!(leaks(&app.db, "optin-form"), 0);
    assert_eq!(leaks(&app.db, "zq-agent-src"), 0);
}

#[actix_web::test]
async fn privacy_access_and_erasure_are_audited_without_the_selector_value() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let dpo = token_for(1, "dpo", "privacy:manage", None);
    for s in ["s1", "s2"] {
        app.upsert_ok(
            &rt,
            "bot",
            s,
            json!({"channel": "api", "email": "zq-person@example.com", "phone": "+447700900555"}),
        )
        .await;
    }
    app.upsert_ok(
        &rt,
        "other-bot",
        "s1",
        json!({"channel": "api", "email": "x@example.com"}),
    )
    .await;

    let mark = last_id(&app.db);
    app.call(
        Method::POST,
        "/api/v1/privacy/access",
        &dpo,
        Some(json!({"email": "ZQ-Person@Example.com"})),
    )
    .await
    .ok(200);
    let row = one(
        &rows_after(&app.db, 1, mark),
        "dpo",
        "privacy.accessed",
        None,
        &[],
    );
    assert_eq!(row.details["contacts"], 2, "{row:?}");

    let mark = last_id(&app.db);
    app.call(
        Method::POST,
        "/api/v1/privacy/access",
        &dpo,
        Some(json!({"phone": "07700 900555", "country_code": "GB"})),
    )
    .await
    .ok(200);
    one(
        &rows_after(&app.db, 1, mark),
        "dpo",
        "privacy.accessed",
        None,
        &[],
    );

    let mark = last_id(&app.db);
    let r = app
        .call(
            Method::POST,
            "/api/v1/privacy/erasure",
            &dpo,
            Some(json!({"email": "zq-person@example.com"})),
        )
        .await;
    assert_eq!(r.ok(200), json!({"erased": 2}));
    let row = one(
        &rows_after(&app.db, 1, mark),
        "dpo",
        "privacy.erased",
        None,
        &[],
    );
    assert_eq!(row.details["erased"], 2, "{row:?}");
    for needle in ["zq-person", "900555", "7700 900", "+4477"] {
        assert_eq!(leaks(&app.db, needle), 0, "{needle} in the audit log");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Values never appear.
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn no_personal_value_ever_reaches_the_audit_log() {
    let app = spawn().await;
    let t = token_for(1, "alice", ALL, None);
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s1",
            json!({"channel": "api", "name": "Zqname Secretson",
                   "email": "zq-secret@example.com", "phone": "+447700900777",
                   "ip_address": "203.0.113.77", "avatar_url": "https://zq-avatar.example.com/a.png",
                   "payload": {"zqkey": "zq-payload-value"},
                   "consent": {"status": "granted", "source": "zq-source", "text_version": "zq-v1"}}),
        )
        .await;
    let id = id_of(&c);
    app.upsert_ok(
        &t,
        "bot",
        "s1",
        json!({"channel": "api", "email": "zq-secret-upsert@example.com",
               "payload": {"zqkey": "zq-payload-value-2"}}),
    )
    .await;
    app.send(patch_req(
        id,
        &t,
        json!({"email": "zq-secret-patch@example.com", "name": "Zqname Patched",
               "payload": {"zqpatch": "zq-patch-value"}}),
    ))
    .await
    .ok(200);
    app.call(
        Method::POST,
        "/api/v1/contacts",
        &t,
        Some(
            json!({"chatbot_id": "bot", "channel": "api", "session_id": "s2",
                    "email": "zq-secret-create@example.com", "name": "Zqname Created"}),
        ),
    )
    .await
    .ok(201);
    app.call(
        Method::POST,
        "/api/v1/contacts/batch-upsert",
        &t,
        Some(
            json!({"items": [{"chatbot_id": "bot", "session_id": "s3", "channel": "api",
                               "email": "zq-secret-batch@example.com"}]}),
        ),
    )
    .await
    .ok(200);
    let r = app
        .get("/api/v1/contacts/export?q=zq-secret&format=csv", &t)
        .await;
    assert_eq!(r.status.as_u16(), 200);
    app.call(
        Method::POST,
        "/api/v1/privacy/access",
        &t,
        Some(json!({"email": "zq-secret-patch@example.com"})),
    )
    .await
    .ok(200);
    app.call(
        Method::POST,
        "/api/v1/contacts/bulk-delete",
        &t,
        Some(json!({"filter": {"q": "zq-secret-batch"}})),
    )
    .await
    .ok(200);
    app.call(
        Method::POST,
        "/api/v1/privacy/erasure",
        &t,
        Some(json!({"email": "zq-secret-create@example.com"})),
    )
    .await
    .ok(200);

    let all = rows(&app.db, 1);
    let actions: BTreeSet<&str> = all.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "contact.created",
            "contact.updated",
            "contacts.exported",
            "privacy.accessed",
            "contacts.bulk_deleted",
            "privacy.erased",
        ]),
        "every kind of write ran: {all:#?}"
    );
    for needle in [
        "zq-secret",
        "Zqname",
        "Secretson",
        "900777",
        "203.0.113.77",
        "zq-avatar",
        "zqkey",
        "zq-payload",
        "zqpatch",
        "zq-patch",
        "zq-source",
        "zq-v1",
    ] {
        assert_eq!(leaks(&app.db, needle), 0, "{needle} reached the audit log");
    }
    // Field names are names of the contact's fields, nothing else.
    let known = [
        "name",
        "email",
        "phone",
        "avatar_url",
        "country_code",
        "ip_address",
        "payload",
        "consent",
    ];
    for r in &all {
        for f in &r.changed_fields {
            assert!(known.contains(&f.as_str()), "{f} in {r:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A failing change leaves no audit row.
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn failed_changes_leave_no_audit_row() {
    let app = spawn().await;
    let t = token_for(1, "alice", ALL, None);
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s1",
            json!({"channel": "api", "name": "Ada", "payload": {"a": "a".repeat(8_000)}}),
        )
        .await;
    let id = id_of(&c);
    app.upsert_ok(
        &t,
        "bot",
        "s1",
        json!({"channel": "api", "payload": {"b": "b".repeat(8_000)}}),
    )
    .await;
    let other = id_of(
        &app.upsert_ok(&t, "bot", "s2", json!({"channel": "api"}))
            .await,
    );
    let before = total(&app.db);
    assert_eq!(before, 3);
    let unchanged = |what: &str| {
        assert_eq!(total(&app.db), before, "{what} left an audit row");
    };

    // PATCH: invalid value, stale If-Match, unknown field, unknown id, merged payload too big.
    app.send(patch_req(
        id,
        &t,
        json!({"email": "not-an-email", "name": "Bea"}),
    ))
    .await
    .problem(422, "validation_failed");
    unchanged("an invalid patch");
    app.send(patch_req(id, &t, json!({"name": "Bea"})).insert_header(("if-match", "\"99\"")))
        .await
        .problem(412, "precondition_failed");
    unchanged("a stale patch");
    app.send(patch_req(id, &t, json!({"name": "Bea", "id": 5})))
        .await
        .problem(422, "unknown_field");
    unchanged("a patch with an unknown field");
    app.send(patch_req(987_654_321, &t, json!({"name": "Bea"})))
        .await
        .problem(404, "not_found");
    unchanged("a patch of an unknown id");
    app.send(patch_req(
        id,
        &t,
        json!({"payload": {"c": "c".repeat(10_000)}}),
    ))
    .await
    .problem(422, "validation_failed");
    unchanged("a patch over the payload limit");

    // DELETE: unknown id, stale If-Match.
    app.call(Method::DELETE, "/api/v1/contacts/987654321", &t, None)
        .await
        .problem(404, "not_found");
    unchanged("a delete of an unknown id");
    let del = TestRequest::delete()
        .uri(&format!("/api/v1/contacts/{id}"))
        .insert_header(("authorization", format!("Bearer {t}")))
        .insert_header(("if-match", "\"99\""));
    app.send(del).await.problem(412, "precondition_failed");
    unchanged("a stale delete");

    // Merge refused: unknown source, into itself, unknown target.
    let merge = |target: i64, sources: Value| {
        let t = t.clone();
        let app = &app;
        async move {
            app.call(
                Method::POST,
                &format!("/api/v1/contacts/{target}/merge"),
                &t,
                Some(json!({ "source_ids": sources })),
            )
            .await
        }
    };
    merge(id, json!([other, 987_654_321]))
        .await
        .problem(422, "validation_failed");
    unchanged("a merge with an unknown source");
    merge(id, json!([id]))
        .await
        .problem(422, "validation_failed");
    unchanged("a merge into itself");
    merge(987_654_321, json!([other]))
        .await
        .problem(404, "not_found");
    unchanged("a merge into an unknown target");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 2);

    // Upsert: invalid data, on an existing and on a new session.
    app.upsert(
        &t,
        "bot",
        "s1",
        json!({"channel": "api", "email": "nope", "name": "Bea"}),
    )
    .await
    .problem(422, "validation_failed");
    app.upsert(&t, "bot", "s9", json!({"channel": "api", "phone": "12"}))
        .await
        .problem(422, "validation_failed");
    app.upsert(
        &t,
        "bot",
        "s1",
        json!({"channel": "api", "name": "Bea",
                                        "consent": {"status": "maybe"}}),
    )
    .await
    .problem(422, "validation_failed");
    // The merged payload over the stored limit: refused by the database after validation.
    app.upsert(
        &t,
        "bot",
        "s1",
        json!({"channel": "api", "name": "Bea",
                                        "payload": {"c": "c".repeat(5_000)}}),
    )
    .await
    .problem(422, "validation_failed");
    unchanged("an invalid upsert");

    // Create: invalid, and a session already linked.
    app.call(
        Method::POST,
        "/api/v1/contacts",
        &t,
        Some(json!({"chatbot_id": "bot", "channel": "api", "email": "nope"})),
    )
    .await
    .problem(422, "validation_failed");
    app.call(
        Method::POST,
        "/api/v1/contacts",
        &t,
        Some(json!({"chatbot_id": "bot", "channel": "api", "session_id": "s1"})),
    )
    .await
    .problem(409, "session_conflict");
    unchanged("a refused create");

    // Batch: the invalid items and the one the database refuses have no row; the valid one has.
    let mark = last_id(&app.db);
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts/batch-upsert",
            &t,
            Some(json!({"items": [
                {"chatbot_id": "bot", "session_id": "s1", "channel": "api", "name": "Too Big",
                 "payload": {"c": "c".repeat(5_000)}},
                {"chatbot_id": "bot", "session_id": "s2", "channel": "api", "email": "nope"},
                {"chatbot_id": "bot", "session_id": "s8", "channel": "api", "phone": "12"},
                {"chatbot_id": "bot", "session_id": "s7", "channel": "api"},
            ]})),
        )
        .await;
    let body = r.ok(207);
    let res = body["results"].as_array().unwrap();
    let statuses: Vec<i64> = res.iter().map(|x| x["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![422, 422, 422, 201], "{body}");
    let new = rows_after(&app.db, 1, mark);
    one(
        &new,
        "alice",
        "contact.created",
        Some(id_of(&res[3]["contact"])),
        &[],
    );
    assert_eq!(total(&app.db), before + 1, "only the valid item is audited");
    let before = before + 1;
    let unchanged = |what: &str| {
        assert_eq!(total(&app.db), before, "{what} left an audit row");
    };

    // Bulk delete: both selectors, too many ids, a bad filter.
    let bulk = |body: Value| {
        let t = t.clone();
        let app = &app;
        async move {
            app.call(Method::POST, "/api/v1/contacts/bulk-delete", &t, Some(body))
                .await
        }
    };
    bulk(json!({"ids": [id], "filter": {"channel": "api"}}))
        .await
        .problem(422, "validation_failed");
    bulk(json!({"ids": (1..=1001).collect::<Vec<i64>>()}))
        .await
        .problem(422, "validation_failed");
    bulk(json!({"filter": {"nope": "x"}}))
        .await
        .problem(422, "unknown_field");
    unchanged("a refused bulk delete");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 3);

    // Export with a bad parameter: refused before anything is read.
    let r = app.get("/api/v1/contacts/export?format=xlsx", &t).await;
    r.problem(400, "invalid_parameter");
    let r = app
        .get("/api/v1/contacts/export?created_from=yesterday", &t)
        .await;
    r.problem(400, "invalid_parameter");
    unchanged("a refused export");

    // Privacy: both selectors, or neither.
    for path in ["/api/v1/privacy/access", "/api/v1/privacy/erasure"] {
        app.call(
            Method::POST,
            path,
            &t,
            Some(json!({"email": "a@example.com", "phone": "+447700900123"})),
        )
        .await
        .problem(422, "validation_failed");
        app.call(Method::POST, path, &t, Some(json!({})))
            .await
            .problem(422, "validation_failed");
    }
    unchanged("a refused privacy request");

    // Without the scope: 403, nothing recorded.
    let weak = token_for(1, "mallory", "contacts:read", None);
    app.send(patch_req(id, &weak, json!({"name": "Bea"})))
        .await
        .problem(403, "insufficient_scope");
    app.call(
        Method::DELETE,
        &format!("/api/v1/contacts/{id}"),
        &weak,
        None,
    )
    .await
    .problem(403, "insufficient_scope");
    app.get("/api/v1/contacts/export", &weak)
        .await
        .problem(403, "insufficient_scope");
    unchanged("a forbidden request");
    assert_eq!(leaks(&app.db, "mallory"), 0);

    // The stored contact is as before every failure.
    let stored = app.get(&format!("/api/v1/contacts/{id}"), &t).await.ok(200);
    assert_eq!(stored["name"], "Ada");
    assert_eq!(stored["version"], 2);
}

// ---------------------------------------------------------------------------------------------
// 4. GET /audit-events.
// ---------------------------------------------------------------------------------------------

/// Seeds events of several actors, actions and contacts in accounts 1 and 2; returns the ids
/// of account 1's contacts `c1`, `c2` and account 2's contact.
async fn seed<S, B>(app: &TestApp<S>) -> (i64, i64, i64)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let rt = token_for(1, "runtime", ALL, None);
    let alice = token_for(1, "alice", ALL, None);
    let bob = token_for(1, "bob", ALL, None);
    let c1 = id_of(
        &app.upsert_ok(&rt, "bot", "s1", json!({"channel": "api"}))
            .await,
    );
    let c2 = id_of(
        &app.upsert_ok(&rt, "bot", "s2", json!({"channel": "api"}))
            .await,
    );
    let c3 = id_of(
        &app.upsert_ok(&rt, "bot", "s3", json!({"channel": "api"}))
            .await,
    );
    app.send(patch_req(c1, &alice, json!({"name": "One"})))
        .await
        .ok(200);
    app.send(patch_req(c2, &alice, json!({"email": "two@example.com"})))
        .await
        .ok(200);
    app.call(
        Method::DELETE,
        &format!("/api/v1/contacts/{c3}"),
        &bob,
        None,
    )
    .await
    .ok(204);
    assert_eq!(
        app.get("/api/v1/contacts/export", &bob)
            .await
            .status
            .as_u16(),
        200
    );
    app.upsert_ok(&rt, "bot", "s1", json!({"channel": "api", "name": "Uno"}))
        .await;
    app.send(patch_req(c1, &bob, json!({"payload": {"k": 1}})))
        .await
        .ok(200);

    let rt2 = token_for(2, "runtime", ALL, None);
    let alice2 = token_for(2, "alice", ALL, None);
    let d1 = id_of(
        &app.upsert_ok(&rt2, "bot", "s1", json!({"channel": "api"}))
            .await,
    );
    app.send(patch_req(d1, &alice2, json!({"name": "Other"})))
        .await
        .ok(200);
    (c1, c2, d1)
}

#[actix_web::test]
async fn the_audit_log_needs_a_token_and_the_audit_scope() {
    let app = spawn().await;
    seed(&app).await;
    let r = app.send(TestRequest::get().uri(AUDIT)).await;
    r.problem(401, "invalid_token");
    assert!(r.header("www-authenticate").is_some());
    let r = app
        .send(
            TestRequest::get()
                .uri(AUDIT)
                .insert_header(("authorization", "Bearer not-a-token")),
        )
        .await;
    r.problem(401, "invalid_token");
    let everything_else = "contacts:read contacts:write contacts:delete contacts:upsert \
                           contacts:export privacy:manage";
    app.get(AUDIT, &token_for(1, "alice", everything_else, None))
        .await
        .problem(403, "insufficient_scope");
    let page = app
        .get(AUDIT, &token_for(1, "auditor", "audit:read", None))
        .await
        .ok(200);
    assert_eq!(page["data"].as_array().unwrap().len(), 9);
}

#[actix_web::test]
async fn events_are_listed_newest_first_with_their_fields() {
    let app = spawn().await;
    let (c1, _, _) = seed(&app).await;
    let tok = token_for(1, "auditor", "audit:read", None);
    let r = app.get(AUDIT, &tok).await;
    let page = r.ok(200);
    assert_eq!(page["next_cursor"], Value::Null);
    let data = page["data"].as_array().unwrap();
    let expected: Vec<i64> = rows(&app.db, 1).iter().rev().map(|r| r.id).collect();
    assert_eq!(
        ids(data),
        expected,
        "every event of the account, ids descending"
    );
    let mut last: Option<chrono::DateTime<chrono::Utc>> = None;
    for e in data {
        let at = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        if let Some(prev) = last {
            assert!(at <= prev, "newest first: {data:?}");
        }
        last = Some(at);
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "id",
                "at",
                "actor",
                "action",
                "contact_id",
                "changed_fields",
                "details"
            ]),
            "{e}"
        );
        assert!(
            e["changed_fields"].is_array() && e["details"].is_object(),
            "{e}"
        );
    }
    // The newest: bob's payload patch of c1.
    assert_eq!(data[0]["action"], "contact.updated");
    assert_eq!(data[0]["actor"], "bob");
    assert_eq!(data[0]["contact_id"], c1);
    assert_eq!(data[0]["changed_fields"], json!(["payload"]));
    // The export has no contact.
    let export: Vec<&Value> = data
        .iter()
        .filter(|e| e["action"] == "contacts.exported")
        .collect();
    assert_eq!(export.len(), 1);
    assert_eq!(export[0]["contact_id"], Value::Null);
    assert_eq!(export[0]["actor"], "bob");
}

#[actix_web::test]
async fn a_cursor_walk_returns_every_event_exactly_once() {
    let app = spawn().await;
    seed(&app).await;
    let tok = token_for(1, "auditor", "audit:read", None);
    let expected: Vec<i64> = rows(&app.db, 1).iter().rev().map(|r| r.id).collect();
    assert_eq!(expected.len(), 9);
    for limit in [1, 2, 3, 9, 10] {
        let got = ids(&walk(&app, &tok, "", limit).await);
        assert_eq!(got, expected, "limit {limit}");
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    }
    // With a filter, pages hold only matching events.
    let updated: Vec<i64> = rows(&app.db, 1)
        .iter()
        .rev()
        .filter(|r| r.action == "contact.updated")
        .map(|r| r.id)
        .collect();
    assert_eq!(updated.len(), 4);
    let got = walk(&app, &tok, "action=contact.updated", 2).await;
    assert_eq!(ids(&got), updated);

    // An event recorded during the walk is not seen on later pages (they go back in time).
    let first = app.get(&format!("{AUDIT}?limit=2"), &tok).await.ok(200);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    app.upsert_ok(
        &token_for(1, "runtime", ALL, None),
        "bot",
        "late",
        json!({"channel": "api"}),
    )
    .await;
    let second = app
        .get(&format!("{AUDIT}?limit=2&cursor={cursor}"), &tok)
        .await
        .ok(200);
    assert_eq!(
        ids(second["data"].as_array().unwrap()),
        expected[2..4].to_vec()
    );
}

#[actix_web::test]
async fn filters_return_exactly_the_matching_events() {
    let app = spawn().await;
    let (c1, c2, d1) = seed(&app).await;
    let tok = token_for(1, "auditor", "audit:read", None);
    let all = rows(&app.db, 1);
    type Pred = Box<dyn Fn(&Row) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        (
            format!("contact_id={c1}"),
            Box::new(move |r: &Row| r.contact_id == Some(c1)),
        ),
        (
            format!("contact_id={c2}"),
            Box::new(move |r: &Row| r.contact_id == Some(c2)),
        ),
        (
            "action=contact.updated".into(),
            Box::new(|r: &Row| r.action == "contact.updated"),
        ),
        (
            "action=contact.created".into(),
            Box::new(|r: &Row| r.action == "contact.created"),
        ),
        (
            "action=contacts.exported".into(),
            Box::new(|r: &Row| r.action == "contacts.exported"),
        ),
        ("actor=alice".into(), Box::new(|r: &Row| r.actor == "alice")),
        (
            "actor=runtime".into(),
            Box::new(|r: &Row| r.actor == "runtime"),
        ),
        (
            format!("contact_id={c1}&action=contact.updated"),
            Box::new(move |r: &Row| r.contact_id == Some(c1) && r.action == "contact.updated"),
        ),
        (
            "action=contact.updated&actor=alice".into(),
            Box::new(|r: &Row| r.action == "contact.updated" && r.actor == "alice"),
        ),
        (
            format!("contact_id={c1}&actor=bob"),
            Box::new(move |r: &Row| r.contact_id == Some(c1) && r.actor == "bob"),
        ),
        (
            format!("contact_id={c1}&action=contact.updated&actor=runtime"),
            Box::new(move |r: &Row| {
                r.contact_id == Some(c1) && r.action == "contact.updated" && r.actor == "runtime"
            }),
        ),
    ];
    for (query, pred) in &cases {
        let expected: Vec<i64> = all.iter().rev().filter(|r| pred(r)).map(|r| r.id).collect();
        assert!(!expected.is_empty(), "{query} matches something");
        assert!(expected.len() < all.len(), "{query} filters something out");
        let page = app
            .get(&format!("{AUDIT}?limit=200&{query}"), &tok)
            .await
            .ok(200);
        let data = page["data"].as_array().unwrap();
        assert_eq!(ids(data), expected, "{query}");
        assert_eq!(page["next_cursor"], Value::Null);
    }
    // The combined filter picks one exact event.
    let page = app
        .get(
            &format!("{AUDIT}?contact_id={c1}&action=contact.updated&actor=runtime"),
            &tok,
        )
        .await
        .ok(200);
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{page}");
    assert_eq!(data[0]["changed_fields"], json!(["name"]));

    // Nothing matches: an empty page, not an error.
    for query in [
        "actor=nobody".to_string(),
        "action=contact.merged".to_string(),
        "actor=ALICE".to_string(),
        format!("contact_id={d1}"),
        "contact_id=987654321".to_string(),
        format!("contact_id={c2}&actor=bob"),
    ] {
        let page = app.get(&format!("{AUDIT}?{query}"), &tok).await.ok(200);
        assert_eq!(page["data"], json!([]), "{query}");
        assert_eq!(page["next_cursor"], Value::Null, "{query}");
    }
}

#[actix_web::test]
async fn bad_queries_are_400s() {
    let app = spawn().await;
    seed(&app).await;
    let tok = token_for(1, "auditor", "audit:read", None);
    for query in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=abc",
        "limit=",
        "contact_id=abc",
        "foo=1",
        "cursor=%%%",
        "cursor=bm90LWEtY3Vyc29y",
        "sort=id",
    ] {
        let r = app.get(&format!("{AUDIT}?{query}"), &tok).await;
        r.problem(400, "invalid_parameter");
    }
    for limit in [1, 200] {
        app.get(&format!("{AUDIT}?limit={limit}"), &tok)
            .await
            .ok(200);
    }

    // A cursor is bound to its filters.
    let page = app
        .get(&format!("{AUDIT}?limit=1&action=contact.updated"), &tok)
        .await
        .ok(200);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let ok = app
        .get(
            &format!("{AUDIT}?limit=1&action=contact.updated&cursor={cursor}"),
            &tok,
        )
        .await
        .ok(200);
    assert_eq!(ok["data"][0]["action"], "contact.updated");
    for other in [
        "",
        "&action=contact.created",
        "&action=contact.updated&actor=alice",
        "&actor=alice",
        "&contact_id=1",
    ] {
        let r = app
            .get(&format!("{AUDIT}?limit=1&cursor={cursor}{other}"), &tok)
            .await;
        let p = r.problem(400, "invalid_parameter");
        assert!(p.to_string().contains("cursor"), "{p}");
    }
    // A cursor of another listing is refused too.
    let list = app
        .get(
            "/api/v1/contacts?limit=1",
            &token_for(1, "alice", "contacts:read", None),
        )
        .await
        .ok(200);
    let foreign = list["next_cursor"].as_str().unwrap();
    app.get(&format!("{AUDIT}?cursor={foreign}"), &tok)
        .await
        .problem(400, "invalid_parameter");
}

#[actix_web::test]
async fn an_account_sees_only_its_own_events() {
    let app = spawn().await;
    let (c1, _, d1) = seed(&app).await;
    let one_tok = token_for(1, "auditor", "audit:read", None);
    let two_tok = token_for(2, "auditor", "audit:read", None);
    let three_tok = token_for(3, "auditor", "audit:read", None);

    let mine1: Vec<i64> = rows(&app.db, 1).iter().rev().map(|r| r.id).collect();
    let mine2: Vec<i64> = rows(&app.db, 2).iter().rev().map(|r| r.id).collect();
    assert_eq!(mine2.len(), 2);
    assert_eq!(
        total(&app.db),
        (mine1.len() + mine2.len()) as i64,
        "every row belongs to account 1 or 2"
    );
    assert_eq!(ids(&walk(&app, &one_tok, "", 3).await), mine1);
    let got2 = walk(&app, &two_tok, "", 1).await;
    assert_eq!(ids(&got2), mine2);
    assert_eq!(got2[0]["contact_id"], d1);
    assert_eq!(got2[0]["actor"], "alice");
    assert_eq!(got2[1]["action"], "contact.created");
    assert_eq!(ids(&walk(&app, &three_tok, "", 2).await), Vec::<i64>::new());

    // Filters never reach across: the other account's contact, actor or action.
    for (tok, query) in [
        (&two_tok, format!("contact_id={c1}")),
        (&one_tok, format!("contact_id={d1}")),
        (&three_tok, "actor=alice".to_string()),
        (&three_tok, "action=contact.created".to_string()),
    ] {
        let page = app.get(&format!("{AUDIT}?{query}"), tok).await.ok(200);
        assert_eq!(page["data"], json!([]), "{query}");
    }
    let alice2 = walk(&app, &two_tok, "actor=alice", 1).await;
    assert_eq!(ids(&alice2), mine2[..1].to_vec());

    // A cursor of account 1 used by account 2 only pages account 2's events.
    let page = app.get(&format!("{AUDIT}?limit=1"), &one_tok).await.ok(200);
    let cursor = page["next_cursor"].as_str().unwrap();
    let cross = app
        .get(&format!("{AUDIT}?limit=200&cursor={cursor}"), &two_tok)
        .await
        .ok(200);
    for e in cross["data"].as_array().unwrap() {
        assert!(mine2.contains(&e["id"].as_i64().unwrap()), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency: an upsert names only the fields that it changed.
// ---------------------------------------------------------------------------------------------

/// In another transaction, runs `sql` (which locks a contact), waits until a query of this
/// database is blocked on a lock, then commits. Returns whether a blocked query was seen.
fn hold_then_commit(
    url: String,
    sql: String,
) -> (std::sync::mpsc::Receiver<()>, std::thread::JoinHandle<bool>) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).expect("connect");
        conn.batch_execute(&format!("BEGIN; {sql}"))
            .expect("hold the lock");
        tx.send(()).unwrap();
        let mut watcher = diesel::PgConnection::establish(&url).expect("connect");
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut seen = false;
        for _ in 0..400 {
            let waiting = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result::<N>(&mut watcher)
            .expect("pg_stat_activity")
            .n;
            if waiting > 0 {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        conn.batch_execute("COMMIT").expect("commit");
        seen
    });
    (rx, handle)
}

#[actix_web::test]
async fn an_upsert_racing_another_change_names_only_its_own_fields() {
    let app = spawn().await;
    let rt = token_for(1, "runtime", "contacts:upsert", None);
    let id = id_of(
        &app.upsert_ok(
            &rt,
            "bot",
            "s1",
            json!({"channel": "api", "name": "Ada", "email": "ada@example.com"}),
        )
        .await,
    );
    // A dashboard edit of the name is in flight while the runtime's upsert changes the email.
    let (locked, done) = hold_then_commit(
        app.db.url.clone(),
        format!(
            "UPDATE contacts SET name = 'Eve', version = version + 1 WHERE id = {id}; \
             INSERT INTO audit_events (account_id, actor, action, contact_id, changed_fields) \
             VALUES (1, 'alice', 'contact.updated', {id}, '{{name}}')"
        ),
    );
    locked.recv().unwrap();
    let mark = last_id(&app.db);
    let c = app
        .upsert_ok(
            &rt,
            "bot",
            "s1",
            json!({"channel": "api", "email": "ada.new@example.com"}),
        )
        .await;
    assert!(
        done.join().unwrap(),
        "the upsert waited for the other change"
    );
    assert_eq!(c["name"], "Eve");
    assert_eq!(c["email"], "ada.new@example.com");
    let mine: Vec<Row> = rows_after(&app.db, 1, mark)
        .into_iter()
        .filter(|r| r.actor == "runtime")
        .collect();
    one(&mine, "runtime", "contact.updated", Some(id), &["email"]);

    // The same in a batch.
    let (locked, done) = hold_then_commit(
        app.db.url.clone(),
        format!("UPDATE contacts SET name = 'Ida', version = version + 1 WHERE id = {id}"),
    );
    locked.recv().unwrap();
    let mark = last_id(&app.db);
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts/batch-upsert",
            &rt,
            Some(json!({"items": [
                {"chatbot_id": "bot", "session_id": "s1", "channel": "api",
                 "phone": "+447700900123"},
            ]})),
        )
        .await;
    assert!(
        done.join().unwrap(),
        "the batch waited for the other change"
    );
    let body = r.ok(200);
    assert_eq!(body["results"][0]["contact"]["name"], "Ida");
    one(
        &rows_after(&app.db, 1, mark),
        "runtime",
        "contact.updated",
        Some(id),
        &["phone"],
    );
}
