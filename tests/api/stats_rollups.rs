//! The per-day rollups behind `GET /contacts/stats` stay exact: after every kind of write
//! (create, upsert of new and known sessions, batch, edits that add and remove fields, delete,
//! merge, bulk delete, erasure, a direct SQL change of `created_at`, concurrent upserts), the
//! figures read from the rollups and deltas equal those counted from `contacts`, for several
//! filters and intervals, and accounts stay apart.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use chrono::{DateTime, NaiveDate, Utc};
use contacts_api::repo::list::ContactFilter;
use contacts_api::repo::stats::{self, Interval, Row};
use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

use crate::helpers::*;

const ALL: &str = "contacts:read contacts:write contacts:upsert contacts:delete privacy:manage";

fn midnight(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// A row as comparable text (the rollups never return all-zero groups; neither do counts).
fn key(r: &Row) -> String {
    format!(
        "{} {:?} {:?} {:?} total={} email={} phone={} either={} complete={} returning={} sessions={}",
        r.grouping,
        r.channel,
        r.chatbot_id,
        r.bucket,
        r.total,
        r.with_email,
        r.with_phone,
        r.with_email_or_phone,
        r.complete,
        r.returning,
        r.sessions
    )
}

fn sorted(rows: Vec<Row>) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(key).collect();
    v.sort();
    v
}

/// Compares both routes for `account` under a few filters and every interval.
fn assert_rollups_exact(db: &TestDb, account: i64, what: &str) {
    assert_rollups_exact_now(db, account, what);
    // Folding the deltas into the rollups changes no figure.
    contacts_api::repo::rollups::fold(&mut db.conn()).unwrap();
    assert_eq!(deltas(db), 0, "{what}: every delta folded");
    assert_rollups_exact_now(db, account, &format!("{what}, folded"));
}

fn deltas(db: &TestDb) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT count(*) AS n FROM contact_stats_deltas")
        .get_result::<N>(&mut db.conn())
        .unwrap()
        .n
}

fn assert_rollups_exact_now(db: &TestDb, account: i64, what: &str) {
    let mut conn = db.conn();
    let today = Utc::now().date_naive();
    let tomorrow = (today + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let filters = [
        ContactFilter::default(),
        ContactFilter {
            channels: Some(vec!["whatsapp".into()]),
            ..Default::default()
        },
        ContactFilter {
            chatbots: Some(vec!["sales".into(), "nobody".into()]),
            ..Default::default()
        },
        ContactFilter {
            created_from: Some(midnight(2025, 12, 31)),
            created_to: Some(tomorrow),
            ..Default::default()
        },
    ];
    for filter in &filters {
        for interval in [Interval::Day, Interval::Week, Interval::Month] {
            let from = midnight(2025, 12, 1);
            let rolled = stats::rows_from_rollups(&mut conn, account, filter, interval, from, None)
                .unwrap()
                .expect("the rollups answer these filters");
            // Contacts are created now or (by SQL below) in the past: `to` = tomorrow is the
            // same open window as the rollups' `None`.
            let counted =
                stats::rows(&mut conn, account, filter, interval, from, tomorrow).unwrap();
            let counted: Vec<Row> = counted
                .into_iter()
                .filter(|r| r.total != 0 && !(r.grouping == 6 && r.bucket.is_none()))
                .collect();
            let rolled: Vec<Row> = rolled
                .into_iter()
                .filter(|r| !(r.grouping == 6 && r.bucket.is_none()))
                .collect();
            assert_eq!(
                sorted(rolled),
                sorted(counted),
                "{what}: filter {filter:?}, {interval:?}"
            );
        }
    }
    // A filter the rollups cannot split falls back to counting.
    let inside_a_day = ContactFilter {
        created_from: Some(midnight(2026, 1, 1) + chrono::Duration::hours(3)),
        ..Default::default()
    };
    let by_email = ContactFilter {
        has_email: Some(true),
        ..Default::default()
    };
    for f in [inside_a_day, by_email] {
        assert!(stats::rows_from_rollups(
            &mut conn,
            account,
            &f,
            Interval::Day,
            midnight(2026, 1, 1),
            None
        )
        .unwrap()
        .is_none());
    }
}

async fn post<S, B>(app: &TestApp<S>, t: &str, path: &str, body: Value) -> Resp
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    app.call(Method::POST, path, t, Some(body)).await
}

#[actix_web::test]
async fn the_rollups_equal_the_counted_figures_after_every_kind_of_write() {
    let app = spawn().await;
    let t = token(1, ALL);
    let other = token(2, ALL);
    assert_rollups_exact(&app.db, 1, "empty account");

    // New contacts through each door.
    let ada = app
        .upsert_ok(
            &t,
            "support",
            "s1",
            json!({"channel": "whatsapp", "name": "Ada"}),
        )
        .await;
    let bob = app
        .upsert_ok(
            &t,
            "sales",
            "s2",
            json!({"channel": "website", "email": "bob@example.com", "phone": "+447700900123"}),
        )
        .await;
    post(
        &app,
        &t,
        "/api/v1/contacts",
        json!({"channel": "telegram", "chatbot_id": "sales", "name": "Cy", "email": "cy@example.com", "phone": "+447700900124"}),
    )
    .await
    .ok(201);
    let batch = post(
        &app,
        &t,
        "/api/v1/contacts/batch-upsert",
        json!({"items": [
            {"chatbot_id": "support", "session_id": "b1", "channel": "whatsapp", "email": "d@example.com"},
            {"chatbot_id": "sales", "session_id": "b2", "channel": "website"},
            {"chatbot_id": "sales", "session_id": "b3", "channel": "website", "name": "Eve"},
        ]}),
    )
    .await
    .ok(200);
    let dee = batch["results"][0]["contact"].clone();
    app.upsert_ok(
        &other,
        "support",
        "s1",
        json!({"channel": "whatsapp", "name": "Other"}),
    )
    .await;
    assert_rollups_exact(&app.db, 1, "after creates");

    // A known session again (no figure changes), then a second session of Ada's (returning,
    // sessions + 1, and her latest chatbot/channel move).
    app.upsert_ok(&t, "support", "s1", json!({"channel": "whatsapp"}))
        .await;
    app.upsert_ok(
        &t,
        "sales",
        "s1-again",
        json!({"channel": "website", "email": "ada@example.com"}),
    )
    .await;
    assert_rollups_exact(&app.db, 1, "after returning sessions");

    // Edits that add and remove fields.
    let patch = |id: &Value, body: Value| {
        TestRequest::patch()
            .uri(&format!("/api/v1/contacts/{id}"))
            .insert_header(("authorization", format!("Bearer {t}")))
            .insert_header(("content-type", "application/merge-patch+json"))
            .set_payload(body.to_string())
    };
    app.send(patch(&bob["id"], json!({"email": null, "name": "Bob"})))
        .await
        .ok(200);
    app.send(patch(&ada["id"], json!({"phone": "+447700900125"})))
        .await
        .ok(200);
    // One field at a time, each alone in its edit.
    app.send(patch(&dee["id"], json!({"email": null})))
        .await
        .ok(200);
    assert_rollups_exact(&app.db, 1, "after an email went");
    app.send(patch(&dee["id"], json!({"email": "dee@example.com"})))
        .await
        .ok(200);
    assert_rollups_exact(&app.db, 1, "after an email came and went");
    app.send(patch(&dee["id"], json!({"name": "Dee"})))
        .await
        .ok(200);
    app.send(patch(&bob["id"], json!({"phone": null})))
        .await
        .ok(200);
    assert_rollups_exact(&app.db, 1, "after edits");

    // History written outside the API: contacts created on other days, months and years.
    app.db
        .conn()
        .batch_execute(
            "UPDATE contacts SET created_at = '2025-12-31 23:59:59.999999+00' WHERE account_id = 1 AND name = 'Cy'; \
             UPDATE contacts SET created_at = '2026-01-01 00:00:00+00' WHERE account_id = 1 AND name = 'Eve'; \
             UPDATE contacts SET created_at = '2026-02-28 12:00:00+00' WHERE account_id = 1 AND email = 'dee@example.com'",
        )
        .unwrap();
    assert_rollups_exact(&app.db, 1, "after created_at moves");

    // Merge, delete, bulk delete, erasure.
    let list = app.get("/api/v1/contacts?limit=50", &t).await.ok(200);
    let ids: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 7);
    post(
        &app,
        &t,
        &format!("/api/v1/contacts/{}/merge", ids[0]),
        json!({"source_ids": [ids[1]]}),
    )
    .await
    .ok(200);
    assert_rollups_exact(&app.db, 1, "after merge");
    app.call(
        Method::DELETE,
        &format!("/api/v1/contacts/{}", ids[2]),
        &t,
        None,
    )
    .await;
    assert_rollups_exact(&app.db, 1, "after delete");
    post(
        &app,
        &t,
        "/api/v1/contacts/bulk-delete",
        json!({"ids": [ids[3]]}),
    )
    .await
    .ok(200);
    post(
        &app,
        &t,
        "/api/v1/privacy/erasure",
        json!({"email": "ada@example.com"}),
    )
    .await;
    assert_rollups_exact(&app.db, 1, "after bulk delete and erasure");

    // Many rows per statement: a seed COPY (contacts of every kind over a year), then deleting
    // every contact with a phone in one filtered bulk delete.
    let plan = contacts_api::seed::SeedPlan {
        account_id: 1,
        contacts: 300,
        seed: 11,
    };
    let before = app
        .db
        .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1");
    // Three connections at once, in chunks of 25: the statement triggers count every COPY.
    let seeded = contacts_api::seed::seed(&app.db.url, &plan, 3, &|_| {}).unwrap();
    assert_eq!(seeded, 300);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 1"),
        before + 300
    );
    assert_rollups_exact(&app.db, 1, "after a seed");
    let deleted = post(
        &app,
        &t,
        "/api/v1/contacts/bulk-delete",
        json!({"filter": {"has_phone": true}}),
    )
    .await
    .ok(200);
    assert!(deleted["deleted"].as_i64().unwrap() > 50, "{deleted}");
    assert_rollups_exact(&app.db, 1, "after a bulk delete by filter");
    assert_rollups_exact(&app.db, 2, "the other account");
}

#[actix_web::test]
async fn concurrent_upserts_keep_the_rollups_exact() {
    let app = spawn().await;
    let t = token(1, ALL);
    // Two folders (as two server processes would run) fold all the while.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let folders: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop) = (app.db.url.clone(), stop.clone());
            std::thread::spawn(move || {
                use diesel::Connection;
                let mut conn = diesel::PgConnection::establish(&url).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    contacts_api::repo::rollups::fold(&mut conn).unwrap();
                }
            })
        })
        .collect();
    // 60 upserts at once over 20 sessions of 3 chatbots: creations and returning sessions race.
    let sessions: Vec<String> = (0..60).map(|i| format!("s{}", i % 20)).collect();
    let calls = sessions.iter().enumerate().map(|(i, session)| {
        let bot = ["a", "b", "c"][i % 3];
        let body = if i % 2 == 0 {
            json!({"channel": "whatsapp", "email": format!("p{}@example.com", i % 20)})
        } else {
            json!({"channel": "website", "name": "P"})
        };
        app.upsert(&t, bot, session, body)
    });
    for r in futures::future::join_all(calls).await {
        assert!(r.status.is_success(), "{}", r.status);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // (How much they folded depends on timing; that they never fail nor count twice does not.)
    for folder in folders {
        folder.join().unwrap();
    }
    assert_rollups_exact(&app.db, 1, "after concurrent upserts");
}

/// One batch-upsert item of `session`.
fn item(session: usize, channel: &str, email: bool, name: bool) -> Value {
    json!({
        "chatbot_id": if session.is_multiple_of(2) { "support" } else { "sales" },
        "session_id": format!("big{session}"),
        "channel": channel,
        "email": email.then(|| format!("p{session}@example.com")),
        "phone": session.is_multiple_of(4).then(|| format!("+4477009{:05}", 100 + session)),
        "name": name.then(|| format!("P{session}")),
    })
}

/// A batch upsert that must succeed as a whole; its body.
async fn batch_ok<S, B>(app: &TestApp<S>, t: &str, items: Vec<Value>) -> Value
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    post(
        app,
        t,
        "/api/v1/contacts/batch-upsert",
        json!({ "items": items }),
    )
    .await
    .ok(200)
}

#[actix_web::test]
async fn a_large_batch_counts_its_rows_once_per_statement_and_stays_exact() {
    let app = spawn().await;
    let t = token(1, ALL);
    let n = contacts_api::repo::batch::STATEMENT_STATS_MIN + 8;
    // New contacts in two groups (support/whatsapp, sales/website), some with email and name.
    let items: Vec<Value> = (0..n)
        .map(|s| {
            let channel = if s % 2 == 0 { "whatsapp" } else { "website" };
            item(s, channel, s % 3 == 0, s % 5 == 0)
        })
        .collect();
    batch_ok(&app, &t, items).await;
    assert_eq!(deltas(&app.db), 2, "one delta per group, not one per row");
    assert_rollups_exact(&app.db, 1, "after a large batch of new contacts");

    // The same sessions again: a third move to telegram (their figures leave one group for
    // another), a third gain an email, the rest change nothing; sessions 0-4 come twice (a
    // second round, in the same transaction), and four sessions are new.
    let mut items: Vec<Value> = (0..n + 4)
        .map(|s| {
            let channel = match s % 3 {
                0 => "telegram",
                _ if s % 2 == 0 => "whatsapp",
                _ => "website",
            };
            item(s, channel, s % 3 == 1 || s % 3 == 0, false)
        })
        .collect();
    items.extend((0..5).map(|s| item(s, "instagram", true, true)));
    let r = batch_ok(&app, &t, items).await;
    assert_eq!(r["results"].as_array().unwrap().len(), n + 9);
    // One delta per group that a statement touched: the first round's insert (3 groups) and
    // update (4), the second round's update (6). Row triggers would append one per new contact
    // and two per changed one: over 50.
    assert_eq!(deltas(&app.db), 3 + 4 + 6, "netted per group and statement");
    assert_rollups_exact(&app.db, 1, "after a large batch of changes");

    // Below the threshold the row triggers count, exactly as well.
    let items: Vec<Value> = (0..3).map(|s| item(s, "website", true, true)).collect();
    batch_ok(&app, &t, items).await;
    assert_rollups_exact(&app.db, 1, "after a small batch");
    // A single upsert afterwards, on the same pooled connections: the setting was local to
    // the batch's transaction, so the row triggers count it.
    app.upsert_ok(&t, "support", "big0", json!({"channel": "discord"}))
        .await;
    assert!(deltas(&app.db) >= 2, "the row trigger appended old and new");
    assert_rollups_exact(&app.db, 1, "after a single upsert");
}

/// After a burst of writes and a quiet spell, the deltas table gives its empty pages back (the
/// folds under load leave them, `vacuum_truncate = false`), so stats reads do not go on
/// scanning them; not before the quiet spell, nor by a process that does not hold the fold.
#[test]
fn the_deltas_table_shrinks_back_after_a_burst_and_a_quiet_spell() {
    use contacts_api::repo::rollups::{self, Folder, QUIET_FOLDS};
    let db = TestDb::new();
    let mut conn = db.conn();
    // One delta per new contact (row triggers).
    conn.batch_execute(
        "INSERT INTO contacts (account_id, channel, chatbot_id) \
         SELECT 5, 'web', 'bot' FROM generate_series(1, 20000)",
    )
    .unwrap();
    let burst = rollups::deltas_bytes(&mut conn).unwrap();
    assert!(burst > 64 * 8192, "{burst} bytes of deltas");
    let mut folder = Folder::default();
    // The fold that empties it keeps the pages (writers may be appending meanwhile), and so
    // do the quiet folds until the spell is long enough.
    assert_eq!(folder.pass(&mut conn).unwrap(), 20000);
    for _ in 1..QUIET_FOLDS {
        assert_eq!(folder.pass(&mut conn).unwrap(), 0);
    }
    assert_eq!(rollups::deltas_bytes(&mut conn).unwrap(), burst);
    // A process that does not hold the fold (another one does) leaves the table alone.
    let mut other = db.conn();
    other
        .batch_execute(&format!("SELECT pg_advisory_lock({})", rollups::FOLD_LOCK))
        .unwrap();
    assert_eq!(folder.pass(&mut conn).unwrap(), 0);
    assert_eq!(rollups::deltas_bytes(&mut conn).unwrap(), burst);
    other
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock({})",
            rollups::FOLD_LOCK
        ))
        .unwrap();
    // The quiet spell is long enough: the empty pages go back.
    assert_eq!(folder.pass(&mut conn).unwrap(), 0);
    assert_eq!(rollups::deltas_bytes(&mut conn).unwrap(), 0);
    assert_eq!(deltas(&db), 0);
}
