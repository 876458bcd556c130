//! `GET /contacts`: every sort pages through every contact exactly once in order (ties
//! included), every filter alone and combined, `q`, totals, bad parameters and tenancy. The
//! expected results are computed here from the rows read with SQL, never by the service.

use std::collections::HashSet;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::helpers::*;

/// Every scope the list and export tests need.
pub const ALL: &str = "contacts:read contacts:upsert contacts:write contacts:export";

/// Every accepted sort.
pub const SORTS: [&str; 8] = [
    "-id",
    "id",
    "created_at",
    "-created_at",
    "last_seen_at",
    "-last_seen_at",
    "name",
    "-name",
];

/// One seeded contact.
pub struct Seed {
    pub name: Option<&'static str>,
    pub email: Option<&'static str>,
    pub phone: Option<&'static str>,
    pub country: Option<&'static str>,
    pub channel: &'static str,
    pub chatbot: &'static str,
    pub created: &'static str,
    pub seen: &'static str,
    pub sessions: i32,
}

#[allow(clippy::too_many_arguments)]
const fn s(
    name: Option<&'static str>,
    email: Option<&'static str>,
    phone: Option<&'static str>,
    country: Option<&'static str>,
    channel: &'static str,
    chatbot: &'static str,
    created: &'static str,
    seen: &'static str,
    sessions: i32,
) -> Seed {
    Seed {
        name,
        email,
        phone,
        country,
        channel,
        chatbot,
        created,
        seen,
        sessions,
    }
}

// Creation times, with ties and sub-second values (the cursor must keep microseconds).
const A: &str = "2026-01-01T00:00:00Z";
const B: &str = "2026-01-02T12:00:00.123456Z";
const C: &str = "2026-01-03T00:00:00Z";
const D: &str = "2026-01-04T23:59:59.999999Z";
const E: &str = "2026-01-05T00:00:00Z";
// Last-seen times.
const L1: &str = "2026-02-01T00:00:00Z";
const L2: &str = "2026-01-20T06:30:00.5Z";
const L3: &str = "2026-01-15T08:00:00Z";
const L4: &str = "2026-03-01T00:00:00Z";

/// Index of the contact that has nothing but a session (no name, email or phone).
pub const BARE: usize = 3;

/// The contacts of one account: ties on every sort key, names differing only in case, contacts
/// without a name, LIKE wildcards in names, formula-looking names.
#[rustfmt::skip]
pub const SEEDS: [Seed; 28] = [
    s(Some("alice"), Some("alice@example.com"), Some("+447700900001"), Some("GB"), "whatsapp", "support-bot", A, L1, 1),
    s(Some("Alice"), None, None, None, "website", "sales-bot", A, L1, 2),
    s(Some("ALICE"), Some("ALICE.B@Example.org"), None, Some("FR"), "telegram", "support-bot", B, L1, 1),
    s(None, None, None, None, "api", "support-bot", A, L3, 0),
    s(Some("bob"), Some("bob@example.com"), Some("+14155550100"), Some("US"), "whatsapp", "sales-bot", C, L1, 3),
    s(Some("Bob"), None, Some("+33612345678"), Some("FR"), "facebook", "support-bot", B, L2, 1),
    s(None, Some("anon@example.net"), None, None, "website", "sales-bot", C, L2, 1),
    s(Some("100% real"), Some("pct@example.com"), None, Some("DE"), "website", "support-bot", D, L3, 1),
    s(Some("a_b"), None, Some("+447700900002"), Some("GB"), "telegram", "sales-bot", D, L4, 5),
    s(Some("back\\slash"), None, None, None, "api", "ops-bot", E, L4, 1),
    s(Some("Zed"), Some("zed@example.com"), None, Some("US"), "whatsapp", "ops-bot", A, L2, 2),
    s(Some("zed"), None, None, None, "whatsapp", "support-bot", B, L2, 1),
    s(None, None, Some("+4915112345678"), Some("DE"), "telegram", "ops-bot", C, L1, 1),
    s(Some("émile"), Some("emile@example.fr"), None, Some("FR"), "website", "support-bot", E, L3, 1),
    s(Some("~tilde"), None, None, None, "slack", "sales-bot", A, L4, 1),
    s(Some("Carol"), Some("carol@example.com"), Some("+447700900003"), Some("GB"), "whatsapp", "support-bot", C, L3, 2),
    s(Some("carol"), Some("CAROL@EXAMPLE.COM"), None, None, "discord", "support-bot", C, L3, 1),
    s(None, None, None, None, "whatsapp", "sales-bot", D, L1, 1),
    s(Some("Dave 7"), Some("dave@example.com"), None, Some("US"), "ios", "ops-bot", B, L4, 1),
    s(Some("dave 7"), None, Some("+14155550199"), Some("US"), "android", "ops-bot", B, L4, 1),
    s(None, None, None, Some("GB"), "website", "support-bot", E, L2, 1),
    s(Some("=HYPERLINK(\"http://evil.test\",\"x\")"), Some("eve@example.com"), None, None, "website", "support-bot", A, L1, 1),
    s(Some("@SUM(1)"), None, None, None, "api", "sales-bot", C, L2, 1),
    s(Some("-2+3"), None, Some("+447700900004"), Some("GB"), "whatsapp", "ops-bot", D, L3, 2),
    s(Some("+1"), None, None, None, "pwa", "support-bot", E, L4, 1),
    s(Some("Grace \"G\" O'Hara, PhD"), Some("grace@example.com"), None, Some("IE"), "website", "sales-bot", B, L1, 1),
    s(None, Some("nobody@example.com"), None, None, "twitter", "support-bot", A, L3, 1),
    s(Some("Eve"), Some("EVE@example.com"), Some("+447700900005"), Some("GB"), "instagram", "sales-bot", E, L1, 1),
];

/// A contact row as stored, read with SQL.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Row {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub phone: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub country_code: Option<String>,
    #[diesel(sql_type = Text)]
    pub channel: String,
    #[diesel(sql_type = Text)]
    pub chatbot_id: String,
    #[diesel(sql_type = Integer)]
    pub sessions_count: i32,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub last_seen_at: DateTime<Utc>,
}

/// Every contact of `account`, as stored.
pub fn rows<S>(app: &TestApp<S>, account: i64) -> Vec<Row> {
    diesel::sql_query(format!(
        "SELECT id, name, email, phone, country_code, channel, chatbot_id, sessions_count, \
         created_at, last_seen_at FROM contacts WHERE account_id = {account}"
    ))
    .load(&mut app.db.conn())
    .expect("read contacts")
}

/// Runs SQL on the test database.
pub fn exec<S>(app: &TestApp<S>, sql: &str) {
    diesel::sql_query(sql)
        .execute(&mut app.db.conn())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Parses an RFC 3339 time.
pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Seeds `SEEDS` into accounts 1 and 2 alternately (identical data, interleaved ids), then sets
/// the exact times and session counts with SQL. Returns the ids of account 1, in `SEEDS` order.
pub async fn seed<S, B>(app: &TestApp<S>) -> Vec<i64>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut mine = Vec::new();
    for (i, sd) in SEEDS.iter().enumerate() {
        for account in [1, 2] {
            let mut body = json!({"channel": sd.channel});
            for (k, v) in [
                ("name", sd.name),
                ("email", sd.email),
                ("phone", sd.phone),
                ("country_code", sd.country),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let c = app
                .upsert_ok(&token(account, ALL), sd.chatbot, &format!("s{i}"), body)
                .await;
            let id = c["id"].as_i64().unwrap();
            // Account 2 is shifted by a day, so a leaked row would also disturb the order.
            exec(
                app,
                &format!(
                    "UPDATE contacts SET created_at = timestamptz '{}' + interval '{} hours', \
                     last_seen_at = timestamptz '{}', sessions_count = {} WHERE id = {id}",
                    sd.created,
                    (account - 1) * 24,
                    sd.seen,
                    sd.sessions
                ),
            );
            if account == 1 {
                mine.push(id);
            }
        }
    }
    mine
}

fn name_key(r: &Row) -> (bool, String) {
    match &r.name {
        Some(n) => (false, n.to_lowercase()),
        None => (true, String::new()),
    }
}

/// The ids of `rows` in `sort` order, computed here: ties broken by id in the sort's
/// direction, names case-insensitive in code-point order with no name last, and every
/// descending order the exact reverse of its ascending order.
pub fn order(rows: &[&Row], sort: &str) -> Vec<i64> {
    let mut v: Vec<&Row> = rows.to_vec();
    let desc = sort.starts_with('-');
    let key = sort.trim_start_matches('-').to_string();
    v.sort_by(|a, b| {
        let o = match key.as_str() {
            "id" => a.id.cmp(&b.id),
            "created_at" => (a.created_at, a.id).cmp(&(b.created_at, b.id)),
            "last_seen_at" => (a.last_seen_at, a.id).cmp(&(b.last_seen_at, b.id)),
            "name" => (name_key(a), a.id).cmp(&(name_key(b), b.id)),
            other => panic!("unknown sort {other}"),
        };
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    v.iter().map(|r| r.id).collect()
}

/// Every page of `path` (which may carry a query) with `limit`, following `next_cursor`;
/// returns the page bodies. Checks the paging invariants on the way.
pub async fn pages<S, B>(app: &TestApp<S>, tok: &str, path: &str, limit: usize) -> Vec<Value>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = app.get(&url, tok).await;
        let body = r.ok(200);
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        let n = body["data"].as_array().expect("data").len();
        assert!(n <= limit, "{url}: {n} rows for limit {limit}");
        cursor = match &body["next_cursor"] {
            Value::Null => None,
            Value::String(c) => {
                assert_eq!(n, limit, "{url}: a page with a next_cursor is full");
                Some(c.clone())
            }
            other => panic!("{url}: next_cursor {other}"),
        };
        if !out.is_empty() {
            assert!(n > 0, "{url}: a page after a next_cursor is never empty");
        }
        out.push(body);
        assert!(out.len() < 10_000, "{path}: paging does not end");
        if cursor.is_none() {
            return out;
        }
    }
}

/// The contacts of every page, in order.
pub async fn all<S, B>(app: &TestApp<S>, tok: &str, path: &str, limit: usize) -> Vec<Value>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    pages(app, tok, path, limit)
        .await
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .collect()
}

/// The ids of `items`.
pub fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|c| c["id"].as_i64().unwrap()).collect()
}

fn assert_unique(ids: &[i64], what: &str) {
    let set: HashSet<_> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "{what}: an id appears twice: {ids:?}");
}

/// Asserts a 400 problem naming `field`.
#[track_caller]
pub fn bad_param(r: &Resp, field: &str) {
    let p = r.problem(400, "invalid_parameter");
    assert_eq!(p["errors"][0]["field"], field, "{p}");
}

#[actix_web::test]
async fn every_sort_pages_through_every_contact_exactly_once_in_order() {
    let app = spawn().await;
    let seeded = seed(&app).await;
    let tok = token(1, "contacts:read");
    let rows = rows(&app, 1);
    assert_eq!(rows.len(), SEEDS.len());
    let all_rows: Vec<&Row> = rows.iter().collect();

    // The fixture really has ties on every key (else the tie-breaks are untested).
    let distinct = |f: &dyn Fn(&Row) -> String| rows.iter().map(f).collect::<HashSet<_>>().len();
    assert!(distinct(&|r| r.created_at.to_rfc3339()) < rows.len() / 2);
    assert!(distinct(&|r| r.last_seen_at.to_rfc3339()) < rows.len() / 2);
    assert!(distinct(&|r| format!("{:?}", name_key(r))) < rows.len() - 8);

    for sort in SORTS {
        let expected = order(&all_rows, sort);
        for limit in [3, 1, 7] {
            let got = ids(&all(&app, &tok, &format!("/api/v1/contacts?sort={sort}"), limit).await);
            assert_unique(&got, sort);
            assert_eq!(got, expected, "sort={sort} limit={limit}");
        }
        // One page holding everything agrees too.
        let one = app
            .get(&format!("/api/v1/contacts?sort={sort}&limit=200"), &tok)
            .await
            .ok(200);
        assert_eq!(
            ids(one["data"].as_array().unwrap()),
            expected,
            "sort={sort}"
        );
        assert_eq!(one["next_cursor"], Value::Null);
    }

    // The default is -id.
    let default = ids(&all(&app, &tok, "/api/v1/contacts", 4).await);
    let mut by_id = seeded.clone();
    by_id.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(default, by_id);

    // Spot checks of the name order, written out by hand.
    let name_order = order(&all_rows, "name");
    let idx = |id: i64| seeded.iter().position(|x| *x == id).unwrap();
    let firsts: Vec<usize> = name_order.iter().take(4).map(|id| idx(*id)).collect();
    // "+1", "-2+3", "100% real", "=HYPERLINK..." (code-point order of the lower-cased names).
    assert_eq!(firsts, vec![24, 23, 7, 21]);
    let alices: Vec<usize> = name_order
        .iter()
        .map(|id| idx(*id))
        .filter(|i| [0, 1, 2].contains(i))
        .collect();
    assert_eq!(
        alices,
        vec![0, 1, 2],
        "alice, Alice, ALICE tie and go by id"
    );
    let unnamed = SEEDS.iter().filter(|s| s.name.is_none()).count();
    assert!(name_order[name_order.len() - unnamed..]
        .iter()
        .all(|id| SEEDS[idx(*id)].name.is_none()));
    let rev = order(&all_rows, "-name");
    assert!(rev[..unnamed]
        .iter()
        .all(|id| SEEDS[idx(*id)].name.is_none()));
}

#[actix_web::test]
async fn every_sort_pages_through_a_filtered_list() {
    let app = spawn().await;
    seed(&app).await;
    let tok = token(1, "contacts:read");
    let rows = rows(&app, 1);
    let matching: Vec<&Row> = rows
        .iter()
        .filter(|r| ["whatsapp", "website", "telegram"].contains(&r.channel.as_str()))
        .filter(|r| r.created_at >= t(B))
        .collect();
    assert!(matching.len() > 8 && matching.len() < rows.len());
    for sort in SORTS {
        let path = format!(
            "/api/v1/contacts?channel=whatsapp,website,telegram&created_from={B}&sort={sort}"
        );
        let got = ids(&all(&app, &tok, &path, 2).await);
        assert_unique(&got, &path);
        assert_eq!(got, order(&matching, sort), "{path}");
    }
}

type Pred = Box<dyn Fn(&Row) -> bool>;

fn has(v: &Option<String>, needle: &str) -> bool {
    v.as_deref()
        .is_some_and(|v| v.to_lowercase().contains(&needle.to_lowercase()))
}

/// `q` as specified: case-insensitive substring of name, email or phone; an integer also
/// matches the id.
fn q_pred(q: &str) -> Pred {
    let q = q.to_string();
    Box::new(move |r: &Row| {
        has(&r.name, &q)
            || has(&r.email, &q)
            || has(&r.phone, &q)
            || q.parse::<i64>().is_ok_and(|id| id == r.id)
    })
}

#[actix_web::test]
async fn every_filter_alone_and_combined_with_paging_and_totals() {
    let app = spawn().await;
    let seeded = seed(&app).await;
    let tok = token(1, "contacts:read");
    let rows = rows(&app, 1);

    let in_list =
        |v: &Option<String>, list: &[&str]| v.as_deref().is_some_and(|v| list.contains(&v));
    let cases: Vec<(&str, Pred)> = vec![
        (
            "channel=whatsapp",
            Box::new(|r: &Row| r.channel == "whatsapp"),
        ),
        (
            "channel=whatsapp,telegram",
            Box::new(|r: &Row| r.channel == "whatsapp" || r.channel == "telegram"),
        ),
        (
            "chatbot_id=ops-bot",
            Box::new(|r: &Row| r.chatbot_id == "ops-bot"),
        ),
        (
            "chatbot_id=support-bot,sales-bot",
            Box::new(|r: &Row| r.chatbot_id != "ops-bot"),
        ),
        (
            "country_code=gb,fr",
            Box::new(move |r: &Row| in_list(&r.country_code, &["GB", "FR"])),
        ),
        (
            "country_code=US",
            Box::new(move |r: &Row| in_list(&r.country_code, &["US"])),
        ),
        // Dates are midnight UTC; from inclusive, to exclusive (C is exactly midnight).
        (
            "created_from=2026-01-03",
            Box::new(|r: &Row| r.created_at >= t(C)),
        ),
        (
            "created_to=2026-01-03",
            Box::new(|r: &Row| r.created_at < t(C)),
        ),
        (
            "created_from=2026-01-02T12:00:00.123456Z",
            Box::new(|r: &Row| r.created_at >= t(B)),
        ),
        (
            "created_to=2026-01-02T12:00:00.123456Z",
            Box::new(|r: &Row| r.created_at < t(B)),
        ),
        // Offsets: encoded `+`, a raw `+` (arrives as a space) and a negative offset.
        (
            "created_from=2026-01-03T02:00:00%2B02:00",
            Box::new(|r: &Row| r.created_at >= t(C)),
        ),
        (
            "created_from=2026-01-03T02:00:00+02:00",
            Box::new(|r: &Row| r.created_at >= t(C)),
        ),
        (
            "created_to=2026-01-02T19:00:00-05:00",
            Box::new(|r: &Row| r.created_at < t(C)),
        ),
        (
            "created_from=2026-01-02&created_to=2026-01-05",
            Box::new(|r: &Row| r.created_at >= t("2026-01-02T00:00:00Z") && r.created_at < t(E)),
        ),
        (
            "last_seen_from=2026-01-20T06:30:00.5Z&last_seen_to=2026-02-01",
            Box::new(|r: &Row| r.last_seen_at >= t(L2) && r.last_seen_at < t(L1)),
        ),
        (
            "last_seen_from=2026-02-01",
            Box::new(|r: &Row| r.last_seen_at >= t(L1)),
        ),
        (
            "last_seen_to=2026-01-20T06:30:00.5Z",
            Box::new(|r: &Row| r.last_seen_at < t(L2)),
        ),
        ("has_email=true", Box::new(|r: &Row| r.email.is_some())),
        ("has_email=false", Box::new(|r: &Row| r.email.is_none())),
        ("has_phone=true", Box::new(|r: &Row| r.phone.is_some())),
        ("has_phone=false", Box::new(|r: &Row| r.phone.is_none())),
        ("returning=true", Box::new(|r: &Row| r.sessions_count > 1)),
        ("returning=false", Box::new(|r: &Row| r.sessions_count <= 1)),
        // q: case-insensitive over name, email, phone; wildcards are literal.
        ("q=alice", q_pred("alice")),
        ("q=ALICE", q_pred("alice")),
        ("q=EXAMPLE.COM", q_pred("example.com")),
        ("q=%2B4477009000", q_pred("+4477009000")),
        ("q=4155550", q_pred("4155550")),
        ("q=%25", q_pred("%")),
        ("q=_", q_pred("_")),
        ("q=a_b", q_pred("a_b")),
        ("q=%5C", q_pred("\\")),
        ("q=%22G%22%20O'Hara", q_pred("\"G\" O'Hara")),
        ("q=%C3%A9mile", q_pred("émile")),
        ("q=nothing-matches-this", q_pred("nothing-matches-this")),
        // Combined.
        (
            "channel=whatsapp,website&has_email=true&created_from=2026-01-02",
            Box::new(|r: &Row| {
                ["whatsapp", "website"].contains(&r.channel.as_str())
                    && r.email.is_some()
                    && r.created_at >= t("2026-01-02T00:00:00Z")
            }),
        ),
        (
            "q=example&country_code=GB,US&returning=false",
            Box::new({
                let example = q_pred("example");
                move |r: &Row| {
                    example(r) && in_list(&r.country_code, &["GB", "US"]) && r.sessions_count <= 1
                }
            }),
        ),
        (
            "chatbot_id=support-bot&has_phone=false&has_email=false&last_seen_to=2026-02-01",
            Box::new(|r: &Row| {
                r.chatbot_id == "support-bot"
                    && r.phone.is_none()
                    && r.email.is_none()
                    && r.last_seen_at < t(L1)
            }),
        ),
    ];

    // The fixture makes the wildcard cases meaningful: `%` and `_` match one contact each.
    let one = |q: &str| rows.iter().filter(|r| has(&r.name, q)).count();
    assert_eq!((one("%"), one("_")), (1, 1));

    for (i, (query, pred)) in cases.iter().enumerate() {
        let matching: Vec<&Row> = rows.iter().filter(|r| pred(r)).collect();
        if !query.contains("nothing") {
            assert!(!matching.is_empty(), "{query}: the fixture has matches");
        }
        if !query.starts_with("q=") || query.contains('&') {
            assert!(
                matching.len() < rows.len(),
                "{query}: the filter excludes something"
            );
        }
        // Each case under a different sort, paged two at a time.
        let sort = SORTS[i % SORTS.len()];
        let path = format!("/api/v1/contacts?{query}&sort={sort}");
        let got = ids(&all(&app, &tok, &path, 2).await);
        assert_unique(&got, &path);
        assert_eq!(got, order(&matching, sort), "{path}");

        // include_total: the number of matches, on every page; absent without it.
        let with_total = pages(&app, &tok, &format!("{path}&include_total=true"), 3).await;
        for p in &with_total {
            assert_eq!(p["total"], json!(matching.len()), "{path}");
        }
        let without = app.get(&path, &tok).await.ok(200);
        assert!(without.get("total").is_none(), "{path}: {without}");
    }

    // An integer q also matches the id: the bare contact has no text at all.
    let bare = seeded[BARE];
    let body = app
        .get(
            &format!("/api/v1/contacts?q={bare}&include_total=true"),
            &tok,
        )
        .await
        .ok(200);
    let got = ids(body["data"].as_array().unwrap());
    assert!(
        got.contains(&bare),
        "q={bare} finds contact {bare}: {got:?}"
    );
    let by_id = q_pred(&bare.to_string());
    let matching: Vec<&Row> = rows.iter().filter(|r| by_id(r)).collect();
    assert_eq!(got, order(&matching, "-id"));
    assert_eq!(body["total"], json!(matching.len()));

    // Without filters, include_total counts the account.
    let body = app
        .get("/api/v1/contacts?include_total=true&limit=1", &tok)
        .await
        .ok(200);
    assert_eq!(body["total"], json!(SEEDS.len()));
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn a_contact_without_anything_is_listed_like_any_other() {
    let app = spawn().await;
    let seeded = seed(&app).await;
    let tok = token(1, "contacts:read");
    let bare = seeded[BARE];
    let got = ids(&all(
        &app,
        &tok,
        "/api/v1/contacts?has_email=false&has_phone=false",
        50,
    )
    .await);
    assert!(got.contains(&bare));
    let c = app
        .get(&format!("/api/v1/contacts/{bare}"), &tok)
        .await
        .ok(200);
    let listed = all(&app, &tok, "/api/v1/contacts?sort=name", 5).await;
    let item = listed.iter().find(|x| x["id"] == bare).unwrap();
    assert_eq!(
        item, &c,
        "the list shows the same contact as GET /contacts/{{id}}"
    );
    assert_eq!(item["name"], Value::Null);
}

#[actix_web::test]
async fn a_page_can_end_on_a_contact_with_the_longest_name() {
    let app = spawn().await;
    let tok = token(1, ALL);
    // 200 four-byte characters: the longest valid name, as UTF-8 bytes.
    let longest = "😀".repeat(200);
    let mut names = vec![longest.clone(), format!("{}a", "😀".repeat(199))];
    names.push("\"\\".repeat(100));
    for (i, n) in names.iter().enumerate() {
        app.upsert_ok(
            &tok,
            "bot",
            &format!("l{i}"),
            json!({"channel": "api", "name": n}),
        )
        .await;
    }
    let rows = rows(&app, 1);
    for sort in ["name", "-name"] {
        let got = ids(&all(&app, &tok, &format!("/api/v1/contacts?sort={sort}"), 1).await);
        assert_eq!(
            got,
            order(&rows.iter().collect::<Vec<_>>(), sort),
            "sort={sort}"
        );
    }
}

#[actix_web::test]
async fn bad_parameters_are_problems_naming_the_parameter() {
    let app = spawn().await;
    seed(&app).await;
    let tok = token(1, "contacts:read");
    let q201 = "a".repeat(201);
    let huge_cursor = "A".repeat(5000);
    let cases: Vec<(String, &str)> = vec![
        ("limit=0".into(), "limit"),
        ("limit=201".into(), "limit"),
        ("limit=abc".into(), "limit"),
        ("sort=bogus".into(), "sort"),
        ("sort=".into(), "sort"),
        ("sort=NAME".into(), "sort"),
        ("cursor=garbage".into(), "cursor"),
        ("cursor=".into(), "cursor"),
        ("channel=BAD%20SLUG!".into(), "channel"),
        ("channel=whatsapp,".into(), "channel"),
        ("chatbot_id=a/b".into(), "chatbot_id"),
        ("country_code=XX".into(), "country_code"),
        ("country_code=gb,XX".into(), "country_code"),
        ("country_code=GBR".into(), "country_code"),
        ("created_from=yesterday".into(), "created_from"),
        ("created_to=2026-13-01".into(), "created_to"),
        (
            "last_seen_from=2026-01-01T25:00:00Z".into(),
            "last_seen_from",
        ),
        ("last_seen_to=1735689600".into(), "last_seen_to"),
        ("has_email=maybe".into(), "has_email"),
        ("has_phone=1".into(), "has_phone"),
        ("returning=yes".into(), "returning"),
        ("include_total=yes".into(), "include_total"),
        ("unknown=1".into(), "unknown"),
        ("format=csv".into(), "format"),
        ("account_id=2".into(), "account_id"),
        (format!("q={q201}"), "q"),
        (format!("cursor={huge_cursor}"), "cursor"),
        ("q=".into(), "q"),
        ("q=%20%20".into(), "q"),
        ("q=a%0Ab".into(), "q"),
    ];
    for (query, field) in &cases {
        let r = app.get(&format!("/api/v1/contacts?{query}"), &tok).await;
        bad_param(&r, field);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SELECT"),
            "no SQL in problems"
        );
    }
    let q200 = "a".repeat(200);
    for ok in [
        "limit=1",
        "limit=200",
        "country_code=gb",
        &format!("q={q200}"),
    ] {
        app.get(&format!("/api/v1/contacts?{ok}"), &tok)
            .await
            .ok(200);
    }

    // A cursor is valid only with the sort and filters it was issued for.
    let cursor_of = |body: Value| body["next_cursor"].as_str().unwrap().to_string();
    let by_created = cursor_of(
        app.get("/api/v1/contacts?sort=created_at&limit=2", &tok)
            .await
            .ok(200),
    );
    for other in [
        "-created_at",
        "last_seen_at",
        "-last_seen_at",
        "name",
        "id",
        "-id",
    ] {
        let r = app
            .get(
                &format!("/api/v1/contacts?sort={other}&cursor={by_created}"),
                &tok,
            )
            .await;
        bad_param(&r, "cursor");
    }
    let r = app
        .get(&format!("/api/v1/contacts?cursor={by_created}"), &tok)
        .await;
    bad_param(&r, "cursor");
    let r = app
        .get(
            &format!("/api/v1/contacts?sort=created_at&has_email=true&cursor={by_created}"),
            &tok,
        )
        .await;
    bad_param(&r, "cursor");
    app.get(
        &format!("/api/v1/contacts?sort=created_at&limit=5&cursor={by_created}"),
        &tok,
    )
    .await
    .ok(200);

    let default = cursor_of(app.get("/api/v1/contacts?limit=2", &tok).await.ok(200));
    let r = app
        .get(&format!("/api/v1/contacts?sort=id&cursor={default}"), &tok)
        .await;
    bad_param(&r, "cursor");
    app.get(&format!("/api/v1/contacts?sort=-id&cursor={default}"), &tok)
        .await
        .ok(200);

    let with_q = cursor_of(
        app.get("/api/v1/contacts?q=example&limit=2", &tok)
            .await
            .ok(200),
    );
    for other in [
        "q=exampl",
        "q=EXAMPLE.",
        "",
        "q=example&channel=website",
        "q=example&sort=name",
    ] {
        let r = app
            .get(&format!("/api/v1/contacts?{other}&cursor={with_q}"), &tok)
            .await;
        bad_param(&r, "cursor");
    }
    app.get(&format!("/api/v1/contacts?q=example&cursor={with_q}"), &tok)
        .await
        .ok(200);

    let channels = cursor_of(
        app.get("/api/v1/contacts?channel=whatsapp,website&limit=1", &tok)
            .await
            .ok(200),
    );
    let r = app
        .get(
            &format!("/api/v1/contacts?channel=whatsapp&cursor={channels}"),
            &tok,
        )
        .await;
    bad_param(&r, "cursor");
}

#[actix_web::test]
async fn another_accounts_contacts_never_appear_in_list_total_or_export() {
    let app = spawn().await;
    seed(&app).await;
    let mine: HashSet<i64> = rows(&app, 1).iter().map(|r| r.id).collect();
    let theirs: HashSet<i64> = rows(&app, 2).iter().map(|r| r.id).collect();
    assert_eq!(mine.len(), SEEDS.len());
    assert_eq!(theirs.len(), SEEDS.len());
    let tok = token(1, ALL);

    for query in [
        "",
        "q=alice",
        "q=example",
        "channel=whatsapp",
        "chatbot_id=support-bot",
        "has_email=true",
        "created_from=2026-01-01",
        "sort=name",
        "sort=-last_seen_at",
    ] {
        let path = format!("/api/v1/contacts?{query}&include_total=true");
        let p = pages(&app, &tok, &path, 4).await;
        let got: Vec<i64> = p
            .iter()
            .flat_map(|b| ids(b["data"].as_array().unwrap()))
            .collect();
        assert!(got.iter().all(|id| mine.contains(id)), "{path}: {got:?}");
        assert_eq!(p[0]["total"], json!(got.len()), "{path}");

        let export = app
            .get(
                &format!("/api/v1/contacts/export?format=ndjson&{query}"),
                &tok,
            )
            .await;
        assert_eq!(export.status.as_u16(), 200);
        let exported: Vec<i64> = String::from_utf8(export.body.to_vec())
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            exported.iter().copied().collect::<HashSet<_>>(),
            got.iter().copied().collect(),
            "{query}"
        );
    }
    // An id of the other account as `q` finds nothing.
    let theirs_bare = *theirs.iter().min().unwrap();
    let q = format!("/api/v1/contacts?q={theirs_bare}&include_total=true");
    let body = app.get(&q, &tok).await.ok(200);
    assert!(ids(body["data"].as_array().unwrap())
        .iter()
        .all(|id| mine.contains(id)));
    // Everything of account 1 is exactly its rows; account 2 sees its own.
    let got: HashSet<i64> = ids(&all(&app, &tok, "/api/v1/contacts", 200).await)
        .into_iter()
        .collect();
    assert_eq!(got, mine);
    let got: HashSet<i64> =
        ids(&all(&app, &token(2, "contacts:read"), "/api/v1/contacts", 200).await)
            .into_iter()
            .collect();
    assert_eq!(got, theirs);
    // An account without contacts sees nothing at all.
    let body = app
        .get(
            "/api/v1/contacts?include_total=true",
            &token(3, "contacts:read"),
        )
        .await
        .ok(200);
    assert_eq!(body, json!({"data": [], "next_cursor": null, "total": 0}));
}
