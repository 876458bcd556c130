//! `POST /contacts/bulk-delete`: by ids and by list filter, dry runs, batches larger than one
//! internal round, tenancy and bad bodies. Expected sets are computed with SQL on the rows.

use std::collections::BTreeSet;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use diesel::sql_types::BigInt;
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::helpers::*;

const PATH: &str = "/api/v1/contacts/bulk-delete";
const DEL: &str = "contacts:delete";

async fn bulk<S, B>(app: &TestApp<S>, tok: &str, body: Value) -> Resp
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    app.call(Method::POST, PATH, tok, Some(body)).await
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The ids a query selects (`SELECT id FROM ...`).
fn ids<S>(app: &TestApp<S>, sql: &str) -> BTreeSet<i64> {
    diesel::sql_query(sql)
        .load::<Id>(&mut app.db.conn())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn all_ids<S>(app: &TestApp<S>) -> BTreeSet<i64> {
    ids(app, "SELECT id FROM contacts")
}

fn exec<S>(app: &TestApp<S>, sql: &str) {
    diesel::sql_query(sql)
        .execute(&mut app.db.conn())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One seeded contact: session, upsert body, then times and session count set with SQL.
struct Seed {
    session: &'static str,
    chatbot: &'static str,
    body: fn() -> Value,
    created: &'static str,
    seen: &'static str,
    sessions: i32,
}

const SEEDS: &[Seed] = &[
    Seed {
        session: "s0",
        chatbot: "bot-a",
        body: || json!({"channel": "telegram", "name": "Ada Lovelace", "email": "ada@example.com"}),
        created: "2026-01-01T00:00:00Z",
        seen: "2026-02-01T00:00:00Z",
        sessions: 1,
    },
    Seed {
        session: "s1",
        chatbot: "bot-a",
        body: || json!({"channel": "whatsapp", "phone": "+447700900123", "country_code": "GB"}),
        created: "2026-01-02T12:00:00Z",
        seen: "2026-01-20T00:00:00Z",
        sessions: 3,
    },
    Seed {
        session: "s2",
        chatbot: "bot-b",
        body: || json!({"channel": "website", "name": "Grace Hopper"}),
        created: "2026-01-03T00:00:00Z",
        seen: "2026-03-01T00:00:00Z",
        sessions: 1,
    },
    Seed {
        session: "s3",
        chatbot: "bot-b",
        body: || json!({"channel": "website", "email": "adam@example.org", "country_code": "US"}),
        created: "2026-01-04T00:00:00Z",
        seen: "2026-01-15T00:00:00Z",
        sessions: 2,
    },
    Seed {
        session: "s4",
        chatbot: "bot-a",
        body: || json!({"channel": "telegram"}),
        created: "2026-01-05T00:00:00Z",
        seen: "2026-02-10T00:00:00Z",
        sessions: 1,
    },
    Seed {
        session: "s5",
        chatbot: "bot-c",
        body: || {
            json!({"channel": "api", "name": "Linus", "email": "linus@example.com",
                        "phone": "+14155550123"})
        },
        created: "2026-01-02T00:00:00Z",
        seen: "2026-02-02T00:00:00Z",
        sessions: 4,
    },
];

/// Seeds `SEEDS` into each of `accounts` (the same data, interleaved ids); returns the ids
/// per account.
async fn seed_into<S, B>(app: &TestApp<S>, accounts: &[i64]) -> Vec<Vec<i64>>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut out = vec![Vec::new(); accounts.len()];
    for sd in SEEDS {
        for (k, &account) in accounts.iter().enumerate() {
            let c = app
                .upsert_ok(
                    &token(account, "contacts:upsert"),
                    sd.chatbot,
                    sd.session,
                    (sd.body)(),
                )
                .await;
            let id = c["id"].as_i64().unwrap();
            exec(
                app,
                &format!(
                    "UPDATE contacts SET created_at = '{}', last_seen_at = '{}', \
                     sessions_count = {} WHERE id = {id}",
                    sd.created, sd.seen, sd.sessions
                ),
            );
            out[k].push(id);
        }
    }
    out
}

/// Seeds `SEEDS` into accounts 1 and 2; returns account 1's ids.
async fn seed<S, B>(app: &TestApp<S>) -> Vec<i64>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    seed_into(app, &[1, 2]).await.swap_remove(0)
}

/// The filter as the list's query string.
fn query(filter: &Value) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in filter.as_object().unwrap() {
        let v = match v {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        q.append_pair(k, &v);
    }
    q.finish()
}

/// Each filter with the SQL condition that selects the same contacts.
fn cases() -> Vec<(Value, &'static str)> {
    vec![
        (json!({"channel": "telegram"}), "channel = 'telegram'"),
        (
            json!({"channel": "telegram,website"}),
            "channel IN ('telegram', 'website')",
        ),
        (
            json!({"q": "ADA"}),
            "(name ILIKE '%ada%' OR email ILIKE '%ada%' OR phone ILIKE '%ada%')",
        ),
        (json!({"q": "+4477"}), "phone LIKE '%+4477%'"),
        (json!({"has_email": true}), "email IS NOT NULL"),
        (json!({"has_email": false}), "email IS NULL"),
        // The query-string formats work too.
        (json!({"has_email": "true"}), "email IS NOT NULL"),
        (json!({"has_phone": "false"}), "phone IS NULL"),
        (json!({"has_phone": true}), "phone IS NOT NULL"),
        (json!({"returning": true}), "sessions_count > 1"),
        (json!({"returning": false}), "sessions_count <= 1"),
        (
            json!({"chatbot_id": "bot-a,bot-c"}),
            "chatbot_id IN ('bot-a', 'bot-c')",
        ),
        (json!({"country_code": "gb"}), "country_code = 'GB'"),
        (
            json!({"created_to": "2026-01-03"}),
            "created_at < '2026-01-03T00:00:00Z'",
        ),
        (
            json!({"created_from": "2026-01-02T12:00:00Z", "created_to": "2026-01-05"}),
            "created_at >= '2026-01-02T12:00:00Z' AND created_at < '2026-01-05T00:00:00Z'",
        ),
        (
            json!({"last_seen_from": "2026-02-01", "last_seen_to": "2026-03-01T00:00:00+00:00"}),
            "last_seen_at >= '2026-02-01T00:00:00Z' AND last_seen_at < '2026-03-01T00:00:00Z'",
        ),
        (
            json!({"channel": "website", "has_email": false}),
            "channel = 'website' AND email IS NULL",
        ),
        (json!({"channel": "facebook"}), "false"),
        (json!({}), "true"),
    ]
}

#[actix_web::test]
async fn delete_by_ids_cascades_skips_unknown_and_foreign_ids_and_dry_runs() {
    let app = spawn().await;
    let mine = seed(&app).await;
    let theirs = ids(&app, "SELECT id FROM contacts WHERE account_id = 2");
    // A second session on the first contact, to see the cascade.
    exec(
        &app,
        &format!(
            "INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel) \
             VALUES (1, 'bot-a', 'extra', {}, 'api')",
            mine[0]
        ),
    );
    let foreign = *theirs.iter().next().unwrap();
    let targets = [mine[0], mine[2], mine[0], 999_999_999, foreign];
    let sessions_of = |set: &[i64]| {
        let list: Vec<String> = set.iter().map(|i| i.to_string()).collect();
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contact_sessions WHERE contact_id IN ({})",
            list.join(",")
        ))
    };
    assert_eq!(sessions_of(&[mine[0], mine[2]]), 3);
    let before = all_ids(&app);

    let r = bulk(
        &app,
        &token(1, DEL),
        json!({"ids": targets, "dry_run": true}),
    )
    .await;
    assert_eq!(r.ok(200), json!({"matched": 2}));
    assert_eq!(all_ids(&app), before, "a dry run deletes nothing");
    let r = bulk(
        &app,
        &token(1, DEL),
        json!({"ids": targets, "dry_run": false}),
    )
    .await;
    assert_eq!(r.ok(200), json!({"deleted": 2}));

    let mut expected = before.clone();
    expected.remove(&mine[0]);
    expected.remove(&mine[2]);
    assert_eq!(all_ids(&app), expected);
    assert_eq!(sessions_of(&[mine[0], mine[2]]), 0, "sessions cascade");
    assert_eq!(
        ids(&app, "SELECT id FROM contacts WHERE account_id = 2"),
        theirs,
        "another account's ids are untouched"
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        (SEEDS.len() * 2 - 2) as i64
    );
    let r = app
        .get(
            &format!("/api/v1/contacts/{}", mine[0]),
            &token(1, "contacts:read"),
        )
        .await;
    r.problem(404, "not_found");

    // Again: nothing left to delete.
    let r = bulk(&app, &token(1, DEL), json!({"ids": targets})).await;
    assert_eq!(r.ok(200), json!({"deleted": 0}));
    // The foreign id from its own account works.
    let r = bulk(&app, &token(2, DEL), json!({"ids": [foreign]})).await;
    assert_eq!(r.ok(200), json!({"deleted": 1}));
}

#[actix_web::test]
async fn dry_runs_match_the_lists_total_for_every_filter() {
    let app = spawn().await;
    seed(&app).await;
    let before = all_ids(&app);
    let read = token(1, "contacts:read");
    for (filter, cond) in cases() {
        let expected = ids(
            &app,
            &format!("SELECT id FROM contacts WHERE account_id = 1 AND ({cond})"),
        );
        let r = bulk(
            &app,
            &token(1, DEL),
            json!({"filter": filter, "dry_run": true}),
        )
        .await;
        assert_eq!(
            r.ok(200),
            json!({"matched": expected.len()}),
            "filter {filter}"
        );
        let list = app
            .get(
                &format!("/api/v1/contacts?include_total=true&{}", query(&filter)),
                &read,
            )
            .await
            .ok(200);
        assert_eq!(
            list["total"],
            json!(expected.len()),
            "list total of {filter}"
        );
    }
    // A number is its text: an integer `q` also matches the id, as in the list.
    let id = *before.iter().next().unwrap();
    let expected = ids(
        &app,
        &format!(
            "SELECT id FROM contacts WHERE account_id = 1 AND (id = {id} OR name LIKE '%{id}%' \
             OR email LIKE '%{id}%' OR phone LIKE '%{id}%')"
        ),
    );
    let r = bulk(
        &app,
        &token(1, DEL),
        json!({"filter": {"q": id}, "dry_run": true}),
    )
    .await;
    assert_eq!(r.ok(200), json!({"matched": expected.len()}));
    assert_eq!(all_ids(&app), before, "dry runs delete nothing");
}

#[actix_web::test]
async fn delete_by_filter_removes_exactly_the_matching_contacts_of_the_account() {
    // One database: case `i` deletes in account `i + 1`; every other account holds the same
    // rows and must keep them.
    let app = spawn().await;
    let cases = cases();
    let accounts: Vec<i64> = (1..=cases.len() as i64 + 1).collect();
    seed_into(&app, &accounts).await;
    for (i, (filter, cond)) in cases.into_iter().enumerate() {
        let account = i as i64 + 1;
        let before = all_ids(&app);
        let expected = ids(
            &app,
            &format!("SELECT id FROM contacts WHERE account_id = {account} AND ({cond})"),
        );
        let r = bulk(&app, &token(account, DEL), json!({"filter": filter})).await;
        assert_eq!(
            r.ok(200),
            json!({"deleted": expected.len()}),
            "filter {filter}"
        );
        let after = all_ids(&app);
        assert_eq!(
            after,
            before.difference(&expected).copied().collect(),
            "filter {filter} deletes exactly its matches, in its account only"
        );
        assert_eq!(
            app.db.count(
                "SELECT count(*) AS n FROM contact_sessions s WHERE NOT EXISTS \
                 (SELECT 1 FROM contacts c WHERE c.account_id = s.account_id AND c.id = s.contact_id)"
            ),
            0
        );
        assert_eq!(
            app.db.count("SELECT count(*) AS n FROM contact_sessions"),
            after.len() as i64,
            "the deleted contacts' sessions are gone, the others' kept"
        );
    }
    let last = accounts.len() as i64;
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contacts WHERE account_id = {last}"
        )),
        SEEDS.len() as i64
    );
}

#[actix_web::test]
async fn a_filter_delete_larger_than_one_batch_deletes_every_match() {
    let app = spawn().await;
    seed(&app).await;
    exec(
        &app,
        "INSERT INTO contacts (account_id, channel, chatbot_id) \
         SELECT 1, 'api', 'bot' FROM generate_series(1, 2500)",
    );
    exec(
        &app,
        "INSERT INTO contacts (account_id, channel, chatbot_id) \
         SELECT 2, 'api', 'bot' FROM generate_series(1, 30)",
    );
    let api1 = app
        .db
        .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1 AND channel = 'api'");
    assert_eq!(api1, 2501);
    let r = bulk(
        &app,
        &token(1, DEL),
        json!({"filter": {"channel": "api"}, "dry_run": true}),
    )
    .await;
    assert_eq!(r.ok(200), json!({"matched": api1}));
    let r = bulk(&app, &token(1, DEL), json!({"filter": {"channel": "api"}})).await;
    assert_eq!(r.ok(200), json!({"deleted": api1}));
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1 AND channel = 'api'"),
        0
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1"),
        (SEEDS.len() - 1) as i64
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 2"),
        (SEEDS.len() + 30) as i64
    );

    // `{}`: every contact of the account, none of the other.
    exec(
        &app,
        "INSERT INTO contacts (account_id, channel, chatbot_id) \
         SELECT 1, 'website', 'bot' FROM generate_series(1, 1500)",
    );
    let left = app
        .db
        .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1");
    let r = bulk(&app, &token(1, DEL), json!({"filter": {}})).await;
    assert_eq!(r.ok(200), json!({"deleted": left}));
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1"),
        0
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contact_sessions WHERE account_id = 1"),
        0
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 2"),
        (SEEDS.len() + 30) as i64
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contact_sessions WHERE account_id = 2"),
        SEEDS.len() as i64
    );
}

#[track_caller]
fn names(p: &Value, field: &str) {
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors in {p}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&field), "expected {field} in {p}");
}

#[actix_web::test]
async fn bad_bodies_and_missing_scope_are_problems_and_delete_nothing() {
    let app = spawn().await;
    let mine = seed(&app).await;
    let before = all_ids(&app);
    let t = token(1, DEL);

    let r = bulk(
        &app,
        &t,
        json!({"ids": [mine[0]], "filter": {"channel": "telegram"}}),
    )
    .await;
    r.problem(422, "validation_failed");
    for body in [json!({}), json!({"dry_run": true}), json!({"ids": null})] {
        let r = bulk(&app, &t, body.clone()).await;
        assert_eq!(r.status.as_u16(), 422, "{body}");
        r.problem(422, "validation_failed");
    }
    let r = bulk(&app, &t, json!({"ids": []})).await;
    names(&r.problem(422, "validation_failed"), "ids");
    let many: Vec<i64> = (0..1001).map(|i| mine[0] + i).collect();
    let r = bulk(&app, &t, json!({"ids": many})).await;
    names(&r.problem(422, "validation_failed"), "ids");
    // 1000 is fine.
    let r = bulk(&app, &t, json!({"ids": many[..1000], "dry_run": true})).await;
    assert!(r.ok(200)["matched"].as_i64().unwrap() > 0);

    let r = bulk(&app, &t, json!({"ids": ["x"]})).await;
    r.problem(422, "invalid_body");
    let r = bulk(&app, &t, json!({"ids": [mine[0]], "force": true})).await;
    names(&r.problem(422, "unknown_field"), "force");
    let r = bulk(&app, &t, json!({"filter": {"nope": 1}})).await;
    names(&r.problem(422, "unknown_field"), "filter.nope");
    let r = bulk(&app, &t, json!({"filter": {"include_total": true}})).await;
    names(&r.problem(422, "unknown_field"), "filter.include_total");
    let r = bulk(&app, &t, json!({"filter": {"channel": "BAD SLUG!"}})).await;
    names(&r.problem(422, "validation_failed"), "filter.channel");
    let r = bulk(&app, &t, json!({"filter": {"created_to": "yesterday"}})).await;
    names(&r.problem(422, "validation_failed"), "filter.created_to");
    let r = bulk(&app, &t, json!({"filter": {"q": ""}})).await;
    names(&r.problem(422, "validation_failed"), "filter.q");
    let r = bulk(&app, &t, json!({"filter": {"has_email": "maybe"}})).await;
    names(&r.problem(422, "validation_failed"), "filter.has_email");
    let r = bulk(&app, &t, json!({"filter": {"channel": ["telegram"]}})).await;
    names(&r.problem(422, "validation_failed"), "filter.channel");
    let r = bulk(&app, &t, json!({"filter": {"returning": {"a": 1}}})).await;
    names(&r.problem(422, "validation_failed"), "filter.returning");
    let r = bulk(&app, &t, json!({"filter": "channel=telegram"})).await;
    assert_eq!(r.status.as_u16(), 422);

    for scopes in [
        "contacts:read contacts:write contacts:upsert contacts:export",
        "",
    ] {
        let r = bulk(&app, &token(1, scopes), json!({"ids": [mine[0]]})).await;
        r.problem(403, "insufficient_scope");
        let r = bulk(&app, &token(1, scopes), json!({"filter": {}})).await;
        r.problem(403, "insufficient_scope");
    }
    assert_eq!(all_ids(&app), before, "nothing was deleted");
}

#[actix_web::test]
async fn a_null_filter_value_is_refused_never_read_as_every_contact() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:delete");
    app.upsert_ok(&t, "bot", "s1", json!({"channel": "web"}))
        .await;
    for filter in [
        json!({"chatbot_id": null}),
        json!({"channel": "web", "q": null}),
    ] {
        let r = app
            .call(
                Method::POST,
                "/api/v1/contacts/bulk-delete",
                &t,
                Some(json!({ "filter": filter })),
            )
            .await;
        let body = r.problem(422, "validation_failed");
        assert!(
            body["errors"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with("filter."),
            "{body}"
        );
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
}

#[actix_web::test]
async fn a_filter_delete_spares_a_contact_that_stopped_matching_while_it_waited() {
    use diesel::connection::SimpleConnection;
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:delete");
    let c = app
        .upsert_ok(&t, "bot", "s1", json!({"channel": "telegram"}))
        .await;
    // Another transaction holds the contact and moves it out of the filter; the delete picks
    // the id without locks, then waits for the row.
    let mut other = app.db.conn();
    other
        .batch_execute(&format!(
            "BEGIN; UPDATE contacts SET channel = 'website' WHERE account_id = 1 AND id = {}",
            c["id"]
        ))
        .unwrap();
    let commit = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        other.batch_execute("COMMIT").unwrap();
    });
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts/bulk-delete",
            &t,
            Some(json!({"filter": {"channel": "telegram"}})),
        )
        .await;
    commit.join().unwrap();
    assert_eq!(r.ok(200)["deleted"], 0);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 1);
}
