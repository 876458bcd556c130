//! `POST /contacts/{id}/merge`: sessions move, fields fill, counts and dates combine; merged-away
//! ids answer 410 with a canonical link; later upserts follow; refusals change nothing; merges
//! racing with upserts never lose a session.

use std::collections::HashSet;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::test::TestRequest;
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::helpers::*;

const RW: &str = "contacts:read contacts:write contacts:delete contacts:upsert";

/// Runs SQL on the test database.
fn exec(db: &TestDb, sql: &str) {
    diesel::sql_query(sql)
        .execute(&mut db.conn())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every row of the three tables the merge writes, as text: equal before and after means
/// nothing changed.
fn state(db: &TestDb) -> String {
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Text)]
        s: String,
    }
    diesel::sql_query(
        "SELECT concat_ws(E'\\n--\\n', \
           (SELECT string_agg(c::text, E'\\n' ORDER BY c.account_id, c.id) FROM contacts c), \
           (SELECT string_agg(s::text, E'\\n' ORDER BY s.account_id, s.chatbot_id, s.session_id) \
              FROM contact_sessions s), \
           (SELECT string_agg(m::text, E'\\n' ORDER BY m.account_id, m.source_id) \
              FROM contact_merges m)) AS s",
    )
    .get_result::<S>(&mut db.conn())
    .expect("state")
    .s
}

/// Sets the first and latest interaction of a contact.
fn times(db: &TestDb, id: i64, created: &str, seen: &str) {
    exec(
        db,
        &format!(
            "UPDATE contacts SET created_at = timestamptz '{created}', \
             last_seen_at = timestamptz '{seen}' WHERE id = {id}"
        ),
    );
}

fn link(target: i64) -> String {
    format!("</api/v1/contacts/{target}>; rel=\"canonical\"")
}

async fn merge<S, B>(app: &TestApp<S>, tok: &str, target: i64, sources: &[i64]) -> Resp
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
}

/// The contact of a new session of account `account`; returns its id.
async fn contact<S, B>(app: &TestApp<S>, account: i64, bot: &str, session: &str, body: Value) -> i64
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let c = app.upsert_ok(&token(account, RW), bot, session, body).await;
    c["id"].as_i64().unwrap()
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap()
}

/// The `(chatbot_id, session_id)` of the sessions of `contact`, sorted.
fn sessions_of(db: &TestDb, contact: i64) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Text)]
        s: String,
    }
    let mut v: Vec<String> = diesel::sql_query(format!(
        "SELECT chatbot_id || '/' || session_id AS s FROM contact_sessions WHERE contact_id = {contact}"
    ))
    .load::<S>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|s| s.s)
    .collect();
    v.sort();
    v
}

#[actix_web::test]
async fn merge_moves_sessions_fills_fields_and_combines_payload_counts_and_dates() {
    let app = spawn().await;
    let t = token(1, RW);
    let a = contact(
        &app,
        1,
        "bot",
        "a1",
        json!({"channel": "website", "name": "Ada", "country_code": "GB",
               "ip_address": "203.0.113.1", "payload": {"plan": "pro", "a": 1}}),
    )
    .await;
    // B has two sessions (b1, b2): B2 merged into it first.
    let b = contact(
        &app,
        1,
        "bot",
        "b1",
        json!({"channel": "facebook", "name": "Bea", "email": "bea@example.com",
               "phone": "+447700900001", "avatar_url": "https://cdn.example.com/b.png",
               "ip_address": "198.51.100.2",
               "payload": {"plan": "free", "b": "old", "shared": "B"}}),
    )
    .await;
    let b2 = contact(&app, 1, "bot", "b2", json!({"channel": "facebook"})).await;
    merge(&app, &t, b, &[b2]).await.ok(200);
    let c = contact(
        &app,
        1,
        "bot2",
        "c1",
        json!({"channel": "telegram", "name": "Cy", "email": "cy@example.com",
               "country_code": "FR", "payload": {"shared": "C", "c": true}}),
    )
    .await;
    // D: created by hand, no session at all.
    let d = id(&app
        .call(
            Method::POST,
            "/api/v1/contacts",
            &t,
            Some(json!({"chatbot_id": "bot", "channel": "api", "name": "Dee",
                        "email": "dee@example.com", "payload": {"shared": "D", "d": 4}})),
        )
        .await
        .ok(201));
    // B is the oldest (and created first), C the newest; A and D in between.
    times(&app.db, a, "2026-03-01T00:00:00Z", "2026-03-05T00:00:00Z");
    times(&app.db, b, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
    times(&app.db, c, "2026-02-15T00:00:00Z", "2026-04-01T00:00:00Z");
    times(&app.db, d, "2026-03-02T00:00:00Z", "2026-03-10T00:00:00Z");
    let before = app.get(&format!("/api/v1/contacts/{a}"), &t).await.ok(200);

    let r = merge(&app, &t, a, &[b, c, d]).await;
    let m = r.ok(200);
    assert_eq!(m["id"], a);
    // The target's non-empty fields stay; its empty ones come from the newest source that has
    // one: email from C (newest) rather than D or B, phone and avatar from B (the only one).
    assert_eq!(m["name"], "Ada");
    assert_eq!(m["country_code"], "GB");
    assert_eq!(m["ip_address"], "203.0.113.1");
    assert_eq!(m["email"], "cy@example.com");
    assert_eq!(m["phone"], "+447700900001");
    assert_eq!(m["avatar_url"], "https://cdn.example.com/b.png");
    // Payload at the top level: the target wins, then the newer source (C, then D, then B).
    assert_eq!(
        m["payload"],
        json!({"plan": "pro", "a": 1, "b": "old", "shared": "C", "c": true, "d": 4})
    );
    assert_eq!(m["sessions_count"], 4, "1 (A) + 2 (B) + 1 (C) + 0 (D)");
    assert_eq!(m["created_at"], "2026-01-01T00:00:00Z", "earliest: B's");
    assert_eq!(m["last_seen_at"], "2026-04-01T00:00:00Z", "latest: C's");
    assert_eq!(m["channel"], "telegram", "with C's channel");
    assert_eq!(m["chatbot_id"], "bot2");
    assert_eq!(m["session_id"], "c1");
    // Past the target's and every source's version (a source's ETag never matches the target).
    assert!(m["version"].as_i64().unwrap() > before["version"].as_i64().unwrap());
    assert_eq!(r.header("etag"), Some(format!("\"{}\"", m["version"])));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert!(m["updated_at"].as_str().unwrap() > before["updated_at"].as_str().unwrap());

    // Stored as answered.
    assert_eq!(
        app.get(&format!("/api/v1/contacts/{a}"), &t).await.ok(200),
        m
    );
    // Every session is the target's now; the sources are gone, with a redirect each.
    assert_eq!(
        sessions_of(&app.db, a),
        ["bot/a1", "bot/b1", "bot/b2", "bot2/c1"]
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        4
    );
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contact_merges WHERE target_id = {a} \
             AND source_id IN ({b}, {b2}, {c}, {d})"
        )),
        4
    );
    let s = app
        .get(&format!("/api/v1/contacts/{a}/sessions"), &t)
        .await
        .ok(200);
    let mut listed: Vec<String> = s["data"]
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
    listed.sort();
    assert_eq!(listed, ["bot/a1", "bot/b1", "bot/b2", "bot2/c1"]);
    // The session rows keep their own channel and ip.
    let b1 = s["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == "b1")
        .unwrap();
    assert_eq!(b1["channel"], "facebook");
    assert_eq!(b1["ip_address"], "198.51.100.2");
}

#[actix_web::test]
async fn the_target_keeps_its_channel_when_it_is_the_latest_and_a_full_target_keeps_every_field() {
    let app = spawn().await;
    let t = token(1, RW);
    let a = contact(
        &app,
        1,
        "bot",
        "a1",
        json!({"channel": "whatsapp", "name": "Ada", "email": "ada@example.com",
               "phone": "+447700900123", "avatar_url": "https://cdn.example.com/a.png",
               "country_code": "GB", "ip_address": "203.0.113.1", "payload": {"k": "a"}}),
    )
    .await;
    let b = contact(
        &app,
        1,
        "bot2",
        "b1",
        json!({"channel": "telegram", "name": "Bea", "email": "bea@example.com",
               "phone": "+33612345678", "avatar_url": "https://cdn.example.com/b.png",
               "country_code": "FR", "ip_address": "198.51.100.2", "payload": {"k": "b"}}),
    )
    .await;
    times(&app.db, a, "2026-02-01T00:00:00Z", "2026-05-01T00:00:00Z");
    times(&app.db, b, "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
    let m = merge(&app, &t, a, &[b]).await.ok(200);
    assert_eq!(m["name"], "Ada");
    assert_eq!(m["email"], "ada@example.com");
    assert_eq!(m["phone"], "+447700900123");
    assert_eq!(m["avatar_url"], "https://cdn.example.com/a.png");
    assert_eq!(m["country_code"], "GB");
    assert_eq!(m["ip_address"], "203.0.113.1");
    assert_eq!(m["payload"], json!({"k": "a"}));
    assert_eq!(m["channel"], "whatsapp");
    assert_eq!(m["chatbot_id"], "bot");
    assert_eq!(m["session_id"], "a1");
    assert_eq!(m["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(m["last_seen_at"], "2026-05-01T00:00:00Z");
    assert_eq!(m["sessions_count"], 2);
}

#[actix_web::test]
async fn a_merged_away_id_answers_410_with_a_canonical_link_on_get_patch_delete_and_sessions() {
    let app = spawn().await;
    let t = token(1, RW);
    let a = contact(&app, 1, "bot", "a1", json!({"channel": "website"})).await;
    let b = contact(
        &app,
        1,
        "bot",
        "b1",
        json!({"channel": "website", "name": "B"}),
    )
    .await;
    merge(&app, &t, a, &[b]).await.ok(200);

    let r = app.get(&format!("/api/v1/contacts/{b}"), &t).await;
    r.problem(410, "contact_merged");
    assert_eq!(r.header("link"), Some(link(a)));

    let r = app
        .send(
            TestRequest::patch()
                .uri(&format!("/api/v1/contacts/{b}"))
                .insert_header(("authorization", format!("Bearer {t}")))
                .insert_header(("content-type", "application/merge-patch+json"))
                .set_payload(json!({"name": "X"}).to_string()),
        )
        .await;
    r.problem(410, "contact_merged");
    assert_eq!(r.header("link"), Some(link(a)));

    let r = app
        .call(Method::DELETE, &format!("/api/v1/contacts/{b}"), &t, None)
        .await;
    r.problem(410, "contact_merged");
    assert_eq!(r.header("link"), Some(link(a)));

    let r = app.get(&format!("/api/v1/contacts/{b}/sessions"), &t).await;
    r.problem(410, "contact_merged");
    assert_eq!(r.header("link"), Some(link(a)));

    // Nothing happened to the target.
    let c = app.get(&format!("/api/v1/contacts/{a}"), &t).await.ok(200);
    assert_eq!(c["name"], "B");
    assert_eq!(c["sessions_count"], 2);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        2
    );

    // Another account sees a plain 404 for the same id, with no link.
    let r = app
        .get(&format!("/api/v1/contacts/{b}"), &token(2, RW))
        .await;
    r.problem(404, "not_found");
    assert_eq!(r.header("link"), None);
}

#[actix_web::test]
async fn a_later_upsert_of_a_source_session_updates_the_target() {
    let app = spawn().await;
    let t = token(1, RW);
    let a = contact(&app, 1, "bot", "a1", json!({"channel": "website"})).await;
    let b = contact(
        &app,
        1,
        "bot",
        "b1",
        json!({"channel": "website", "payload": {"x": 1}}),
    )
    .await;
    let merged = merge(&app, &t, a, &[b]).await.ok(200);

    let r = app
        .upsert(
            &token(1, "contacts:upsert"),
            "bot",
            "b1",
            json!({"channel": "whatsapp", "name": "Later", "payload": {"y": 2}}),
        )
        .await;
    let c = r.ok(200);
    assert_eq!(r.header("location"), None);
    assert_eq!(c["id"], a, "the source's session belongs to the target");
    assert_eq!(c["name"], "Later");
    assert_eq!(c["payload"], json!({"x": 1, "y": 2}));
    assert_eq!(c["channel"], "whatsapp");
    assert_eq!(c["session_id"], "b1");
    assert_eq!(c["sessions_count"], 2);
    assert_eq!(c["version"], merged["version"].as_i64().unwrap() + 1);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        2
    );
    // The source still redirects.
    app.get(&format!("/api/v1/contacts/{b}"), &t)
        .await
        .problem(410, "contact_merged");
}

#[actix_web::test]
async fn merge_chains_redirect_to_the_final_target_and_deleting_it_removes_the_redirects() {
    let app = spawn().await;
    let t = token(1, RW);
    let a = contact(&app, 1, "bot", "a1", json!({"channel": "website"})).await;
    let b = contact(&app, 1, "bot", "b1", json!({"channel": "website"})).await;
    let c = contact(&app, 1, "bot", "c1", json!({"channel": "website"})).await;
    let other = contact(&app, 1, "bot", "o1", json!({"channel": "website"})).await;

    merge(&app, &t, a, &[b]).await.ok(200);
    let m = merge(&app, &t, c, &[a]).await.ok(200);
    assert_eq!(m["sessions_count"], 3);
    assert_eq!(sessions_of(&app.db, c), ["bot/a1", "bot/b1", "bot/c1"]);

    for gone in [a, b] {
        let r = app.get(&format!("/api/v1/contacts/{gone}"), &t).await;
        r.problem(410, "contact_merged");
        assert_eq!(r.header("link"), Some(link(c)), "{gone} leads to C, not A");
    }
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contact_merges WHERE target_id = {c}"
        )),
        2
    );
    // Merging into a merged-away id is refused with its canonical link.
    let r = merge(&app, &t, b, &[other]).await;
    r.problem(410, "contact_merged");
    assert_eq!(r.header("link"), Some(link(c)));
    // The chained source's session also leads to C.
    let u = app
        .upsert_ok(&t, "bot", "b1", json!({"channel": "website"}))
        .await;
    assert_eq!(u["id"], c);

    app.call(Method::DELETE, &format!("/api/v1/contacts/{c}"), &t, None)
        .await
        .ok(204);
    for gone in [a, b, c] {
        let r = app.get(&format!("/api/v1/contacts/{gone}"), &t).await;
        r.problem(404, "not_found");
        assert_eq!(r.header("link"), None);
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contact_merges"), 0);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        1,
        "only the other contact's session is left"
    );
    // A merge into the other contact naming a deleted source: 422.
    let r = merge(&app, &t, other, &[b]).await;
    r.problem(422, "validation_failed");
}

#[actix_web::test]
async fn refused_merges_answer_a_clear_4xx_and_change_nothing() {
    let app = spawn().await;
    let t = token(1, RW);
    let a = contact(
        &app,
        1,
        "bot",
        "a1",
        json!({"channel": "website", "name": "A"}),
    )
    .await;
    let b = contact(
        &app,
        1,
        "bot",
        "b1",
        json!({"channel": "website", "name": "B"}),
    )
    .await;
    let c = contact(&app, 1, "bot", "c1", json!({"channel": "website"})).await;
    let gone = contact(&app, 1, "bot", "g1", json!({"channel": "website"})).await;
    merge(&app, &t, a, &[gone]).await.ok(200);
    let x = contact(
        &app,
        2,
        "bot",
        "x1",
        json!({"channel": "website", "name": "X"}),
    )
    .await;
    let before = state(&app.db);

    let field = |r: &Resp, code: &str, fields: &[&str]| {
        let body = r.problem(422, code);
        let got: Vec<&str> = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("errors: {body}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, fields, "{body}");
    };

    // Unknown target, another account's target.
    merge(&app, &t, 987_654_321, &[b])
        .await
        .problem(404, "not_found");
    merge(&app, &t, x, &[b]).await.problem(404, "not_found");
    // A target merged away: 410 pointing to where it went.
    let r = merge(&app, &t, gone, &[b]).await;
    r.problem(410, "contact_merged");
    assert_eq!(r.header("link"), Some(link(a)));
    // A source of another account, an unknown source, a merged-away source.
    field(
        &merge(&app, &t, a, &[b, x]).await,
        "validation_failed",
        &["source_ids[1]"],
    );
    field(
        &merge(&app, &t, a, &[987_654_321, b, 987_654_322]).await,
        "validation_failed",
        &["source_ids[0]", "source_ids[2]"],
    );
    field(
        &merge(&app, &t, b, &[gone]).await,
        "validation_failed",
        &["source_ids[0]"],
    );
    // And from account 2: account 1's contacts are unknown there.
    field(
        &merge(&app, &token(2, RW), x, &[a]).await,
        "validation_failed",
        &["source_ids[0]"],
    );
    merge(&app, &token(2, RW), a, &[x])
        .await
        .problem(404, "not_found");
    // The target among the sources, duplicate sources.
    field(
        &merge(&app, &t, a, &[b, a]).await,
        "validation_failed",
        &["source_ids[1]"],
    );
    field(
        &merge(&app, &t, a, &[b, c, b]).await,
        "validation_failed",
        &["source_ids[2]"],
    );
    // Empty list and more than 100 ids.
    field(
        &merge(&app, &t, a, &[]).await,
        "validation_failed",
        &["source_ids"],
    );
    let many: Vec<i64> = (0..101).map(|i| b + 1_000_000 + i).collect();
    let r = merge(&app, &t, a, &many).await;
    let body = r.problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "source_ids", "{body}");
    // Unknown body field, missing list, wrong type.
    let path = format!("/api/v1/contacts/{a}/merge");
    let call = |body: Value| app.call(Method::POST, &path, &t, Some(body));
    call(json!({"source_ids": [b], "force": true}))
        .await
        .problem(422, "unknown_field");
    assert_eq!(call(json!({})).await.status.as_u16(), 422);
    assert_eq!(call(json!({"source_ids": "b"})).await.status.as_u16(), 422);
    // Scopes: read-only and upsert-only tokens may not merge.
    for scopes in ["contacts:read", "contacts:upsert contacts:delete"] {
        merge(&app, &token(1, scopes), a, &[b])
            .await
            .problem(403, "insufficient_scope");
    }

    assert_eq!(state(&app.db), before, "no refused merge changed anything");
    // And the same merge with everything right still works.
    let m = merge(&app, &t, a, &[b, c]).await.ok(200);
    assert_eq!(m["sessions_count"], 4);
}

/// Contacts of account 1 with `per` sessions each (`{prefix}{i}-{k}`), built by merging;
/// returns their ids and every session id.
async fn contacts_with_sessions<S, B>(
    app: &TestApp<S>,
    prefix: &str,
    n: usize,
    per: usize,
) -> (Vec<i64>, Vec<String>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let t = token(1, RW);
    let mut ids = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..n {
        let mut group = Vec::new();
        for k in 0..per {
            let sid = format!("{prefix}{i}-{k}");
            group.push(contact(app, 1, "bot", &sid, json!({"channel": "website"})).await);
            sessions.push(sid);
        }
        if per > 1 {
            merge(app, &t, group[0], &group[1..]).await.ok(200);
        }
        ids.push(group[0]);
    }
    (ids, sessions)
}

#[actix_web::test]
async fn concurrent_merges_and_upserts_never_lose_a_session_nor_fail() {
    let app = spawn().await;
    let t = token(1, RW);
    let mut all_sessions: HashSet<String> = HashSet::new();
    for round in 0..4 {
        let (ids, sessions) = contacts_with_sessions(&app, &format!("r{round}s"), 6, 3).await;
        all_sessions.extend(sessions.iter().cloned());
        let pairs = [(0, 1), (2, 3), (0, 2), (4, 5)];
        // Upserts of existing sessions of every contact, and of new sessions.
        let upserts: Vec<String> = (0..20)
            .map(|i| {
                if i % 5 == 4 {
                    format!("r{round}new{i}")
                } else {
                    sessions[(i * 7 + round) % sessions.len()].clone()
                }
            })
            .collect();
        all_sessions.extend(upserts.iter().cloned());

        enum Call {
            Merge(usize),
            Upsert(usize),
        }
        let mut plan = Vec::new();
        for i in 0..upserts.len() {
            if i % 5 == 1 {
                plan.push(Call::Merge(i / 5));
            }
            plan.push(Call::Upsert(i));
        }
        let futs = plan.iter().map(|call| {
            let (t, ids, upserts) = (&t, &ids, &upserts);
            let app = &app;
            async move {
                match call {
                    Call::Merge(k) => {
                        let (target, source) = pairs[*k];
                        let r = merge(app, t, ids[target], &[ids[source]]).await;
                        (format!("merge {} <- {}", ids[target], ids[source]), r)
                    }
                    Call::Upsert(i) => {
                        let r = app
                            .upsert(
                                t,
                                "bot",
                                &upserts[*i],
                                json!({"channel": "telegram", "payload": {format!("u{i}"): i}}),
                            )
                            .await;
                        (format!("upsert {}", upserts[*i]), r)
                    }
                }
            }
        });
        let results = futures::future::join_all(futs).await;
        for (what, r) in &results {
            let s = r.status.as_u16();
            let ok = if what.starts_with("merge") {
                // A merge whose target or source was merged away first is a clean refusal.
                s == 200 || s == 410 || s == 422
            } else {
                s == 200 || s == 201
            };
            assert!(
                ok,
                "round {round}: {what}: {s} {}",
                String::from_utf8_lossy(&r.body)
            );
        }
        // 1 into 0 and 5 into 4 always succeed, and so does 2 into 0 or 3 into 2 (or both).
        let merged = results
            .iter()
            .filter(|(w, r)| w.starts_with("merge") && r.status.as_u16() == 200)
            .count();
        assert!(merged >= 3, "round {round}: {merged} merges succeeded");

        // Every session ever created is there, once, on a live contact, and the counts agree.
        assert_eq!(
            app.db.count("SELECT count(*) AS n FROM contact_sessions") as usize,
            all_sessions.len(),
            "round {round}"
        );
        assert_eq!(
            app.db.count(
                "SELECT count(*) AS n FROM contact_sessions s WHERE NOT EXISTS \
                 (SELECT 1 FROM contacts c WHERE c.account_id = s.account_id AND c.id = s.contact_id)"
            ),
            0
        );
        assert_eq!(
            app.db
                .count("SELECT coalesce(sum(sessions_count), 0)::bigint AS n FROM contacts"),
            app.db.count("SELECT count(*) AS n FROM contact_sessions"),
            "round {round}"
        );
        assert_eq!(
            app.db.count(
                "SELECT count(*) AS n FROM contacts c WHERE sessions_count <> \
                 (SELECT count(*) FROM contact_sessions s \
                  WHERE s.account_id = c.account_id AND s.contact_id = c.id)"
            ),
            0,
            "round {round}: each contact counts its own sessions"
        );
        // Every merged-away id of the round redirects to a live contact, every upsert payload
        // key landed on the contact that holds the session.
        for &i in &ids {
            let r = app.get(&format!("/api/v1/contacts/{i}"), &t).await;
            match r.status.as_u16() {
                200 => {}
                410 => {
                    let target: i64 = r
                        .header("link")
                        .unwrap()
                        .trim_start_matches("</api/v1/contacts/")
                        .split('>')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    app.get(&format!("/api/v1/contacts/{target}"), &t)
                        .await
                        .ok(200);
                }
                s => panic!("round {round}: GET {i}: {s}"),
            }
        }
        let list = ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            app.db.count(&format!(
                "SELECT count(*) AS n FROM unnest(ARRAY[{list}]::bigint[]) AS u(id) \
                 WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = u.id) \
                 AND NOT EXISTS (SELECT 1 FROM contact_merges m WHERE m.source_id = u.id)"
            )),
            0,
            "round {round}: a contact is either live or redirected"
        );
        for (i, s) in upserts.iter().enumerate() {
            assert_eq!(
                app.db.count(&format!(
                    "SELECT count(*) AS n FROM contact_sessions s JOIN contacts c \
                     ON c.account_id = s.account_id AND c.id = s.contact_id \
                     WHERE s.session_id = '{s}' AND c.payload ? 'u{i}'"
                )),
                1,
                "round {round}: the upsert of {s} is on the session's contact"
            );
        }
    }
}

#[actix_web::test]
async fn a_merge_whose_payload_would_exceed_the_size_limit_is_refused_and_changes_nothing() {
    let app = spawn().await;
    let t = token(1, RW);
    let mut ids = Vec::new();
    for k in ["a", "b", "c"] {
        let body = json!({"channel": "website", "payload": {k: "x".repeat(6_000)}});
        ids.push(contact(&app, 1, "bot", k, body).await);
    }
    let before = state(&app.db);
    let body = merge(&app, &t, ids[0], &ids[1..])
        .await
        .problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "payload", "{body}");
    assert_eq!(state(&app.db), before);
    // Two of them fit.
    let m = merge(&app, &t, ids[0], &ids[1..2]).await.ok(200);
    assert_eq!(m["payload"].as_object().unwrap().len(), 2);
}

#[actix_web::test]
async fn a_retried_merge_is_answered_as_done_and_changes_nothing() {
    let app = spawn().await;
    let t = token(1, RW);
    let a = contact(&app, 1, "bot", "a", json!({"channel": "web"})).await;
    let b = contact(&app, 1, "bot", "b", json!({"channel": "web"})).await;
    let c = contact(&app, 1, "bot", "c", json!({"channel": "web"})).await;
    let first = merge(&app, &t, a, &[b]).await.ok(200);
    let before = state(&app.db);
    // The same request again (its first answer lost on the way): done, nothing changes.
    let again = merge(&app, &t, a, &[b]).await.ok(200);
    assert_eq!(again["version"], first["version"]);
    assert_eq!(state(&app.db), before);
    // Merged already and one more: only the new one is merged.
    let m = merge(&app, &t, a, &[b, c]).await.ok(200);
    assert_eq!(m["sessions_count"], 3);
    // Merged into another target: still a 422.
    let d = contact(&app, 1, "bot", "d", json!({"channel": "web"})).await;
    let r = merge(&app, &t, d, &[b]).await;
    r.problem(422, "validation_failed");
}
