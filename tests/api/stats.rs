//! `GET /contacts/stats`: every figure, the growth series and the list filters, each compared
//! with plain arithmetic over the rows the test seeded itself (kept in a `Vec<C>`), never with
//! the service's own code. Bucket edges at month and year ends, ISO weeks, tenancy, an empty
//! account, bad parameters and the scope.

use std::collections::BTreeMap;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use chrono::{DateTime, Datelike, Days, Duration, Months, NaiveDate, SecondsFormat, Utc};
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::helpers::*;

const READ: &str = "contacts:read";

/// One seeded contact, exactly as inserted.
#[derive(Debug, Clone)]
struct C {
    account: i64,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    country: Option<&'static str>,
    channel: &'static str,
    chatbot: &'static str,
    sessions: i32,
    created: DateTime<Utc>,
    seen: DateTime<Utc>,
}

/// Parses an RFC 3339 time.
fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// Midnight UTC of a `YYYY-MM-DD` date.
fn d(s: &str) -> DateTime<Utc> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// A bare contact of account 1 created at `created`.
fn at(created: &str) -> C {
    let created = t(created);
    C {
        account: 1,
        name: None,
        email: None,
        phone: None,
        country: None,
        channel: "website",
        chatbot: "bot",
        sessions: 1,
        created,
        seen: created,
    }
}

fn lit(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "NULL".into(),
    }
}

fn ts(t: DateTime<Utc>) -> String {
    format!("'{}'", t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// Inserts `rows` with one SQL statement.
fn insert<S>(app: &TestApp<S>, rows: &[C]) {
    if rows.is_empty() {
        return;
    }
    let values: Vec<String> = rows
        .iter()
        .map(|c| {
            format!(
                "({}, {}, {}, {}, {}, '{}', '{}', {}, {}, {})",
                c.account,
                lit(&c.name),
                lit(&c.email),
                lit(&c.phone),
                lit(&c.country.map(str::to_string)),
                c.channel,
                c.chatbot,
                c.sessions,
                ts(c.created),
                ts(c.seen),
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO contacts (account_id, name, email, phone, country_code, channel, chatbot_id, \
         sessions_count, created_at, last_seen_at) VALUES {}",
        values.join(", ")
    );
    diesel::sql_query(&sql)
        .execute(&mut app.db.conn())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Counts per key, sorted by count descending then key.
fn counts(keys: impl Iterator<Item = &'static str>) -> Vec<(String, i64)> {
    let mut m: BTreeMap<&str, i64> = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    let mut v: Vec<(String, i64)> = m.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Every figure but the growth series, computed over `rows`.
fn figures(rows: &[&C]) -> Value {
    let n = |p: &dyn Fn(&C) -> bool| rows.iter().filter(|c| p(c)).count() as i64;
    let total = rows.len() as i64;
    let with_email = n(&|c| c.email.is_some());
    let with_phone = n(&|c| c.phone.is_some());
    let with_either = n(&|c| c.email.is_some() || c.phone.is_some());
    let complete = n(&|c| c.name.is_some() && c.email.is_some() && c.phone.is_some());
    let returning = n(&|c| c.sessions > 1);
    let sessions: i64 = rows.iter().map(|c| i64::from(c.sessions)).sum();
    let share = |part: i64| {
        if total == 0 {
            0.0
        } else {
            part as f64 / total as f64
        }
    };
    let by_channel: Vec<Value> = counts(rows.iter().map(|c| c.channel))
        .into_iter()
        .map(|(k, n)| json!({"channel": k, "count": n}))
        .collect();
    let by_chatbot: Vec<Value> = counts(rows.iter().map(|c| c.chatbot))
        .into_iter()
        .map(|(k, n)| json!({"chatbot_id": k, "count": n}))
        .collect();
    json!({
        "total": total,
        "with_email": with_email,
        "with_phone": with_phone,
        "with_email_or_phone": with_either,
        "complete": complete,
        "returning": returning,
        "avg_sessions_per_contact": share(sessions),
        "rates": {
            "email": share(with_email),
            "phone": share(with_phone),
            "email_or_phone": share(with_either),
            "complete": share(complete),
            "returning": share(returning),
        },
        "by_channel": by_channel,
        "by_chatbot": by_chatbot,
    })
}

/// Structural equality, numbers compared as floats within 1e-12 (integers must stay integers).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-12
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Asserts every figure of `body` (all but `growth`) against `rows`.
#[track_caller]
fn assert_figures(body: &Value, rows: &[&C], what: &str) {
    let mut got = body.clone();
    let obj = got.as_object_mut().expect("object");
    assert!(
        obj.remove("growth").is_some(),
        "{what}: no growth in {body}"
    );
    let want = figures(rows);
    assert!(same(&got, &want), "{what}:\n got  {got}\n want {want}");
}

/// Start of the bucket holding `t`, computed here: the day, the ISO week from Monday, or the
/// calendar month, all in UTC.
fn bucket_of(interval: &str, t: DateTime<Utc>) -> DateTime<Utc> {
    let day = t.date_naive();
    let start = match interval {
        "day" => day,
        "week" => day - Days::new(u64::from(day.weekday().number_from_monday() - 1)),
        "month" => NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap(),
        other => panic!("interval {other}"),
    };
    start.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn after(interval: &str, start: DateTime<Utc>) -> DateTime<Utc> {
    match interval {
        "day" => start + Days::new(1),
        "week" => start + Days::new(7),
        "month" => start + Months::new(1),
        other => panic!("interval {other}"),
    }
}

/// The expected series: buckets from the one holding `from` while they start before `to`, each
/// counting the rows created in it and before `to`.
fn series(
    rows: &[&C],
    interval: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, i64)> {
    let mut out = Vec::new();
    let mut start = bucket_of(interval, from);
    while start < to {
        let end = after(interval, start);
        let n = rows
            .iter()
            .filter(|c| c.created >= start && c.created < end && c.created < to)
            .count() as i64;
        out.push((start, n));
        start = end;
    }
    out
}

/// The growth series of a response, as (start, count).
fn buckets(body: &Value) -> Vec<(DateTime<Utc>, i64)> {
    body["growth"]["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("no buckets: {body}"))
        .iter()
        .map(|b| {
            (
                t(b["start"].as_str().unwrap()),
                b["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[track_caller]
fn assert_series(body: &Value, want: &[(DateTime<Utc>, i64)], what: &str) {
    let got = buckets(body);
    assert_eq!(got, want, "{what}: {}", body["growth"]);
    assert_eq!(
        t(body["growth"]["from"].as_str().unwrap()),
        want[0].0,
        "{what}"
    );
}

/// Asserts a 400 problem naming `field`.
#[track_caller]
fn bad(r: &Resp, field: &str) {
    let p = r.problem(400, "invalid_parameter");
    assert_eq!(p["errors"][0]["field"], field, "{p}");
}

async fn stats<S, B>(app: &TestApp<S>, account: i64, query: &str) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let path = format!("/api/v1/contacts/stats?{query}");
    let r = app.get(&path, &token(account, READ)).await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

const CHANNELS: [(&str, usize); 7] = [
    ("whatsapp", 10),
    ("website", 10),
    ("telegram", 7),
    ("api", 5),
    ("facebook", 5),
    ("instagram", 2),
    ("sms", 1),
];

const CHATBOTS: [(&str, usize); 5] = [
    ("sales-bot", 14),
    ("support-bot", 14),
    ("ops-bot", 8),
    ("alpha", 3),
    ("zeta", 1),
];

/// Creation times: month, year and ISO-week edges, sub-second values.
const CREATED: [&str; 10] = [
    "2025-12-31T23:59:59Z",
    "2026-01-01T00:00:00Z",
    "2026-02-28T23:59:59.999999Z",
    "2026-03-01T00:00:00Z",
    "2026-01-04T23:59:59.999999Z",
    "2026-01-05T00:00:00Z",
    "2025-11-15T08:30:00Z",
    "2026-03-10T17:45:12.5Z",
    "2025-06-01T00:00:00Z",
    "2026-01-20T09:00:00Z",
];

fn expand(table: &[(&'static str, usize)]) -> Vec<&'static str> {
    table
        .iter()
        .flat_map(|(k, n)| std::iter::repeat_n(*k, *n))
        .collect()
}

/// 40 contacts of `account` with varied fields; channel and chatbot counts with ties.
fn forty(account: i64) -> Vec<C> {
    let channels = expand(&CHANNELS);
    let chatbots = expand(&CHATBOTS);
    assert_eq!((channels.len(), chatbots.len()), (40, 40));
    // Index 0 is never used: every fifth contact has no name.
    let names = ["", "Alice", "bob", "ALICE", "Carol"];
    let countries = [
        Some("GB"),
        Some("FR"),
        None,
        Some("US"),
        Some("DE"),
        Some("GB"),
    ];
    let sessions = [0, 1, 1, 2, 5, 1, 3];
    (0..40usize)
        .map(|i| {
            let created = t(CREATED[i % 10]) + Duration::days([0, 0, 1, 45][i / 10]);
            C {
                account,
                name: (i % 5 != 0).then(|| format!("{} {i}", names[i % 5])),
                email: (i % 3 != 0).then(|| {
                    if i % 2 == 0 {
                        format!("user{i}@example.com")
                    } else {
                        format!("User{i}@Test.org")
                    }
                }),
                phone: (i % 4 < 2).then(|| {
                    if i % 3 == 1 {
                        format!("+447700900{i:03}")
                    } else {
                        format!("+1415555{i:04}")
                    }
                }),
                country: countries[i % 6],
                channel: channels[i],
                chatbot: chatbots[(i * 7) % 40],
                sessions: sessions[i % 7],
                created,
                seen: created + Duration::hours((i % 6) as i64 * 20),
            }
        })
        .collect()
}

/// What `q` matches: a case-insensitive substring of name, email or phone (no id terms here).
fn q_matches(c: &C, q: &str) -> bool {
    let q = q.to_lowercase();
    [&c.name, &c.email, &c.phone]
        .iter()
        .any(|f| f.as_ref().is_some_and(|v| v.to_lowercase().contains(&q)))
}

type Pred = Box<dyn Fn(&C) -> bool>;

/// Filter query strings and the same filter as a predicate over the seeded rows.
fn filter_cases() -> Vec<(&'static str, Pred)> {
    vec![
        ("", Box::new(|_| true)),
        (
            "channel=whatsapp,telegram",
            Box::new(|c| c.channel == "whatsapp" || c.channel == "telegram"),
        ),
        ("channel=sms", Box::new(|c| c.channel == "sms")),
        ("channel=nowhere", Box::new(|_| false)),
        (
            "chatbot_id=sales-bot,zeta",
            Box::new(|c| c.chatbot == "sales-bot" || c.chatbot == "zeta"),
        ),
        ("has_email=true", Box::new(|c| c.email.is_some())),
        ("has_email=false", Box::new(|c| c.email.is_none())),
        ("has_phone=true", Box::new(|c| c.phone.is_some())),
        ("has_phone=false", Box::new(|c| c.phone.is_none())),
        ("returning=true", Box::new(|c| c.sessions > 1)),
        ("returning=false", Box::new(|c| c.sessions <= 1)),
        (
            "created_from=2026-01-01T00:00:00Z&created_to=2026-03-01",
            Box::new(|c| c.created >= t("2026-01-01T00:00:00Z") && c.created < d("2026-03-01")),
        ),
        (
            "created_from=2026-01-01T01:00:00%2B02:00",
            Box::new(|c| c.created >= t("2025-12-31T23:00:00Z")),
        ),
        (
            "last_seen_from=2026-01-05&last_seen_to=2026-03-02T12:00:00Z",
            Box::new(|c| c.seen >= d("2026-01-05") && c.seen < t("2026-03-02T12:00:00Z")),
        ),
        ("q=example.com", Box::new(|c| q_matches(c, "example.com"))),
        ("q=ALICE", Box::new(|c| q_matches(c, "alice"))),
        ("q=%2B44", Box::new(|c| q_matches(c, "+44"))),
        ("q=test.ORG", Box::new(|c| q_matches(c, "test.org"))),
        (
            "country_code=gb,FR",
            Box::new(|c| matches!(c.country, Some("GB") | Some("FR"))),
        ),
        ("country_code=US", Box::new(|c| c.country == Some("US"))),
        (
            "channel=website,whatsapp&has_email=true&returning=false",
            Box::new(|c| {
                (c.channel == "website" || c.channel == "whatsapp")
                    && c.email.is_some()
                    && c.sessions <= 1
            }),
        ),
        (
            "q=alice&country_code=GB&has_phone=true&created_to=2026-02-01",
            Box::new(|c| {
                q_matches(c, "alice")
                    && c.country == Some("GB")
                    && c.phone.is_some()
                    && c.created < d("2026-02-01")
            }),
        ),
    ]
}

/// Growth windows checked with every filter: `from` mid-bucket, `to` mid-bucket.
const WINDOWS: [(&str, &str, &str); 3] = [
    ("day", "2025-12-25T15:00:00Z", "2026-03-15T00:00:00Z"),
    ("week", "2025-11-01", "2026-04-01"),
    ("month", "2025-05-17T10:00:00Z", "2026-04-15T12:00:00Z"),
];

fn window_query(interval: &str, from: &str, to: &str) -> String {
    format!("interval={interval}&from={from}&to={to}")
}

fn window_times(from: &str, to: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let p = |s: &str| {
        if s.len() == 10 {
            d(s)
        } else {
            t(s)
        }
    };
    (p(from), p(to))
}

#[actix_web::test]
async fn every_figure_matches_arithmetic_over_the_seeded_contacts() {
    let app = spawn().await;
    let rows = forty(1);
    insert(&app, &rows);
    let all: Vec<&C> = rows.iter().collect();

    // The fixture is meaningful: every figure lies strictly between 0 and total, and the
    // channel and chatbot counts have ties, so the name tie-break is exercised.
    let f = figures(&all);
    for k in [
        "with_email",
        "with_phone",
        "with_email_or_phone",
        "complete",
        "returning",
    ] {
        let n = f[k].as_i64().unwrap();
        assert!(0 < n && n < 40, "{k} = {n}");
    }
    assert!(
        f["with_email_or_phone"] != f["with_email"] && f["with_email_or_phone"] != f["with_phone"]
    );
    assert_eq!(
        f["by_channel"][0],
        json!({"channel": "website", "count": 10})
    );
    assert_eq!(
        f["by_channel"][1],
        json!({"channel": "whatsapp", "count": 10})
    );
    assert_eq!(f["by_channel"][3], json!({"channel": "api", "count": 5}));
    assert_eq!(
        f["by_channel"][4],
        json!({"channel": "facebook", "count": 5})
    );
    assert_eq!(
        f["by_chatbot"][0],
        json!({"chatbot_id": "sales-bot", "count": 14})
    );
    assert_eq!(
        f["by_chatbot"][1],
        json!({"chatbot_id": "support-bot", "count": 14})
    );
    assert!(rows.iter().any(|c| c.sessions == 0));

    let body = stats(&app, 1, "").await;
    assert_figures(&body, &all, "no filter");
    assert_eq!(body["total"], 40);
    assert!(body["avg_sessions_per_contact"].is_f64());
    assert!(body["rates"]["email"].is_f64());

    // Every figure again with every window: the growth window never restricts the figures.
    for (interval, from, to) in WINDOWS {
        let body = stats(&app, 1, &window_query(interval, from, to)).await;
        assert_figures(&body, &all, interval);
        let (f, t_) = window_times(from, to);
        assert_series(&body, &series(&all, interval, f, t_), interval);
        assert_eq!(body["growth"]["interval"], interval);
        assert_eq!(t(body["growth"]["to"].as_str().unwrap()), t_);
    }
}

#[actix_web::test]
async fn every_filter_restricts_every_figure_and_the_growth() {
    let app = spawn().await;
    let rows = forty(1);
    insert(&app, &rows);

    for (query, pred) in filter_cases() {
        let selected: Vec<&C> = rows.iter().filter(|c| pred(c)).collect();
        if !query.is_empty() && query != "channel=nowhere" {
            assert!(
                !selected.is_empty() && selected.len() < rows.len(),
                "{query}: the filter should select some but not all ({})",
                selected.len()
            );
        }
        for (interval, from, to) in WINDOWS {
            let q = format!("{query}&{}", window_query(interval, from, to));
            let body = stats(&app, 1, &q).await;
            assert_figures(&body, &selected, &q);
            let (f, t_) = window_times(from, to);
            assert_series(&body, &series(&selected, interval, f, t_), &q);
        }
    }
}

#[actix_web::test]
async fn day_buckets_split_at_midnight_utc_across_the_year_end() {
    let app = spawn().await;
    let rows = vec![
        at("2025-12-29T23:59:59.999999Z"), // before the window
        at("2025-12-30T00:00:00Z"),
        at("2025-12-31T23:59:59Z"),
        at("2026-01-01T00:00:00Z"),
        at("2026-01-01T12:00:00Z"),
        at("2026-01-01T00:30:00Z"),
        at("2026-01-02T23:59:59.999999Z"),
        at("2026-01-03T00:00:00Z"), // at `to`: outside
        at("2026-01-03T10:00:00Z"),
    ];
    insert(&app, &rows);
    let body = stats(&app, 1, "interval=day&from=2025-12-30&to=2026-01-03").await;
    let want = vec![
        (d("2025-12-30"), 1),
        (d("2025-12-31"), 1),
        (d("2026-01-01"), 3),
        (d("2026-01-02"), 1),
    ];
    assert_series(&body, &want, "day");
    assert_eq!(t(body["growth"]["to"].as_str().unwrap()), d("2026-01-03"));
    assert_eq!(body["total"], rows.len() as i64);

    // An offset is converted to UTC before rounding: 01:00+02:00 is 23:00 the day before.
    let body = stats(
        &app,
        1,
        "interval=day&from=2026-01-01T01:00:00%2B02:00&to=2026-01-02",
    )
    .await;
    assert_series(
        &body,
        &[(d("2025-12-31"), 1), (d("2026-01-01"), 3)],
        "offset",
    );
    // An unencoded `+` arrives as a space and still means an offset.
    let body = stats(
        &app,
        1,
        "interval=day&from=2026-01-01T01:00:00+02:00&to=2026-01-02",
    )
    .await;
    assert_series(
        &body,
        &[(d("2025-12-31"), 1), (d("2026-01-01"), 3)],
        "raw +",
    );
}

#[actix_web::test]
async fn month_buckets_split_at_month_and_year_ends() {
    let app = spawn().await;
    let rows = vec![
        at("2025-10-31T23:59:59.999999Z"), // before the first bucket
        at("2025-11-01T00:00:00Z"),        // before `from`, but in its bucket
        at("2025-12-31T23:59:59Z"),
        at("2026-01-01T00:00:00Z"),
        at("2026-02-28T23:59:59.999999Z"),
        at("2026-03-01T00:00:00Z"),
        at("2026-03-31T23:59:59.999999Z"),
        at("2026-04-01T00:00:00Z"), // at `to`
    ];
    insert(&app, &rows);
    let body = stats(
        &app,
        1,
        "interval=month&from=2025-11-15T08:00:00Z&to=2026-04-01",
    )
    .await;
    let want = vec![
        (d("2025-11-01"), 1),
        (d("2025-12-01"), 1),
        (d("2026-01-01"), 1),
        (d("2026-02-01"), 1),
        (d("2026-03-01"), 2),
    ];
    assert_series(&body, &want, "month");
    assert_eq!(body["growth"]["interval"], "month");

    // The same contacts by day around the end of February (2026 is not a leap year).
    let body = stats(&app, 1, "interval=day&from=2026-02-27&to=2026-03-02").await;
    let want = vec![
        (d("2026-02-27"), 0),
        (d("2026-02-28"), 1),
        (d("2026-03-01"), 1),
    ];
    assert_series(&body, &want, "february");

    // And a leap year: 2028-02-29 is its own day, in February.
    let leap = vec![at("2028-02-29T12:00:00Z"), at("2028-03-01T00:00:00Z")];
    insert(&app, &leap);
    let body = stats(&app, 1, "interval=month&from=2028-02-10&to=2028-04-01").await;
    assert_series(
        &body,
        &[(d("2028-02-01"), 1), (d("2028-03-01"), 1)],
        "leap month",
    );
    let body = stats(&app, 1, "interval=day&from=2028-02-28&to=2028-03-02").await;
    let want = vec![
        (d("2028-02-28"), 0),
        (d("2028-02-29"), 1),
        (d("2028-03-01"), 1),
    ];
    assert_series(&body, &want, "leap day");
}

#[actix_web::test]
async fn weeks_start_on_monday_and_span_the_year_end() {
    let app = spawn().await;
    let rows = vec![
        at("2025-12-28T23:59:59Z"), // Sunday: the week of 2025-12-22, outside
        at("2025-12-29T00:00:00Z"), // Monday
        at("2026-01-01T00:00:00Z"), // Thursday, same ISO week across the year end
        at("2026-01-04T23:59:59.999999Z"), // Sunday
        at("2026-01-05T00:00:00Z"), // Monday: the next week
        at("2026-01-18T23:59:59Z"),
        at("2026-01-19T00:00:00Z"), // at `to`
    ];
    insert(&app, &rows);
    // `from` is a Wednesday: rounded down to Monday 2025-12-29.
    let body = stats(&app, 1, "interval=week&from=2025-12-31&to=2026-01-19").await;
    let want = vec![
        (d("2025-12-29"), 3),
        (d("2026-01-05"), 1),
        (d("2026-01-12"), 1),
    ];
    assert_series(&body, &want, "week");
    // From the Sunday itself: its week starts on the Monday before.
    let body = stats(
        &app,
        1,
        "interval=week&from=2026-01-04T23:00:00Z&to=2026-01-06",
    )
    .await;
    assert_series(
        &body,
        &[(d("2025-12-29"), 3), (d("2026-01-05"), 1)],
        "sunday",
    );
    // From a Monday: no rounding.
    let body = stats(&app, 1, "interval=week&from=2026-01-05&to=2026-01-06").await;
    assert_series(&body, &[(d("2026-01-05"), 1)], "monday");
}

#[actix_web::test]
async fn the_series_ends_at_to_even_inside_a_bucket() {
    let app = spawn().await;
    let rows = vec![
        at("2026-01-01T08:00:00Z"),
        at("2026-01-02T11:59:59.999999Z"),
        at("2026-01-02T12:00:00Z"), // at `to`: not part of the series
        at("2026-01-02T18:00:00Z"),
        at("2026-01-20T00:00:00Z"),
    ];
    insert(&app, &rows);
    let body = stats(
        &app,
        1,
        "interval=day&from=2026-01-01&to=2026-01-02T12:00:00Z",
    )
    .await;
    assert_series(&body, &[(d("2026-01-01"), 1), (d("2026-01-02"), 1)], "day");
    let body = stats(
        &app,
        1,
        "interval=month&from=2026-01-01&to=2026-01-02T12:00:00Z",
    )
    .await;
    assert_series(&body, &[(d("2026-01-01"), 2)], "month");
    let body = stats(
        &app,
        1,
        "interval=week&from=2025-12-29&to=2026-01-02T12:00:00Z",
    )
    .await;
    assert_series(&body, &[(d("2025-12-29"), 2)], "week");
    // A window of a few minutes still has its one bucket.
    let body = stats(
        &app,
        1,
        "interval=day&from=2026-01-02T11:59:00Z&to=2026-01-02T12:00:00Z",
    )
    .await;
    assert_series(&body, &[(d("2026-01-02"), 1)], "minutes");
}

#[actix_web::test]
async fn the_default_range_is_the_last_30_days_12_weeks_or_12_months() {
    let app = spawn().await;
    let now = Utc::now();
    let ago = |days: i64| {
        let mut c = at("2026-01-01T00:00:00Z");
        c.created = now - Duration::days(days) - Duration::minutes(1);
        c
    };
    let rows: Vec<C> = [
        0, 1, 2, 6, 7, 15, 28, 29, 30, 31, 60, 77, 84, 85, 200, 340, 370, 400,
    ]
    .into_iter()
    .map(ago)
    .collect();
    insert(&app, &rows);
    let all: Vec<&C> = rows.iter().collect();

    for (query, interval, n) in [
        ("", "day", 30),
        ("interval=day", "day", 30),
        ("interval=week", "week", 12),
        ("interval=month", "month", 12),
    ] {
        let before = Utc::now();
        let body = stats(&app, 1, query).await;
        let after_ = Utc::now();
        assert_eq!(body["growth"]["interval"], interval);
        let to = t(body["growth"]["to"].as_str().unwrap());
        assert!(
            before <= to && to <= after_,
            "{query}: to = {to}, now = {before}"
        );
        let got = buckets(&body);
        assert_eq!(got.len(), n, "{query}: {}", body["growth"]);
        // Consecutive buckets, the last one holding `to` (today, this week, this month).
        assert_eq!(got.last().unwrap().0, bucket_of(interval, to), "{query}");
        for w in got.windows(2) {
            assert_eq!(w[1].0, after(interval, w[0].0), "{query}");
        }
        let want = series(&all, interval, got[0].0, to);
        assert_series(&body, &want, query);
        assert!(want.iter().map(|b| b.1).sum::<i64>() > 0);
        // The figures cover every contact, not just the window.
        assert_figures(&body, &all, query);
    }
}

#[actix_web::test]
async fn other_accounts_never_move_the_figures() {
    let app = spawn().await;
    let mine = forty(1);
    insert(&app, &mine);
    let all: Vec<&C> = mine.iter().collect();
    let queries = [
        String::new(),
        "channel=whatsapp&has_email=true".to_string(),
        "q=alice".to_string(),
        window_query("week", "2025-11-01", "2026-04-01"),
        window_query("month", "2025-05-17T10:00:00Z", "2026-04-15T12:00:00Z"),
    ];
    let mut before = Vec::new();
    for q in &queries {
        let mut body = stats(&app, 1, q).await;
        if !q.contains("to=") {
            // The default range ends now: compare it apart from `to`.
            body["growth"]["to"] = Value::Null;
        }
        before.push(body);
    }

    // Account 2: the same contacts and more, at the same times, channels and chatbots.
    let mut theirs = forty(2);
    for (i, created) in CREATED.iter().enumerate() {
        let mut c = at(created);
        c.account = 2;
        c.channel = ["whatsapp", "website", "sms"][i % 3];
        c.chatbot = "zeta";
        c.email = Some(format!("alice{i}@example.com"));
        c.name = Some("Alice".into());
        c.sessions = 9;
        theirs.push(c);
    }
    // Account 3 has only others' contacts: one each, at every creation time.
    for created in CREATED {
        let mut c = at(created);
        c.account = 3;
        theirs.push(c);
    }
    insert(&app, &theirs);

    for (q, was) in queries.iter().zip(&before) {
        let mut body = stats(&app, 1, q).await;
        if !q.contains("to=") {
            body["growth"]["to"] = Value::Null;
        }
        assert_eq!(&body, was, "{q}: account 1 moved with account 2's contacts");
    }
    assert_figures(&before[0], &all, "account 1");
    let (f, t_) = window_times("2025-11-01", "2026-04-01");
    assert_series(&before[3], &series(&all, "week", f, t_), "account 1 weeks");

    // And account 2 sees exactly its own.
    let two: Vec<&C> = theirs.iter().filter(|c| c.account == 2).collect();
    let body = stats(&app, 2, &window_query("week", "2025-11-01", "2026-04-01")).await;
    assert_figures(&body, &two, "account 2");
    assert_series(&body, &series(&two, "week", f, t_), "account 2 weeks");
    let body = stats(&app, 2, "q=alice").await;
    let alice: Vec<&C> = two
        .iter()
        .copied()
        .filter(|c| q_matches(c, "alice"))
        .collect();
    assert_figures(&body, &alice, "account 2 q=alice");
}

#[actix_web::test]
async fn an_empty_account_answers_zeros() {
    let app = spawn().await;
    insert(&app, &forty(1));
    for query in [
        "",
        "interval=week&from=2025-12-31&to=2026-02-01",
        "interval=month&from=2025-01-01&to=2026-04-01&channel=whatsapp",
        "has_email=true&q=alice",
    ] {
        let body = stats(&app, 9, query).await;
        assert_figures(&body, &[], query);
        assert_eq!(body["total"], 0);
        assert_eq!(body["avg_sessions_per_contact"].as_f64(), Some(0.0));
        for k in ["email", "phone", "email_or_phone", "complete", "returning"] {
            assert_eq!(body["rates"][k].as_f64(), Some(0.0), "{query}: {k}");
        }
        assert_eq!(body["by_channel"], json!([]));
        assert_eq!(body["by_chatbot"], json!([]));
        let b = buckets(&body);
        assert!(!b.is_empty(), "{query}");
        assert!(b.iter().all(|(_, n)| *n == 0), "{query}: {b:?}");
    }
    let body = stats(&app, 9, "interval=week&from=2025-12-31&to=2026-02-01").await;
    let want: Vec<_> = [
        "2025-12-29",
        "2026-01-05",
        "2026-01-12",
        "2026-01-19",
        "2026-01-26",
    ]
    .iter()
    .map(|s| (d(s), 0))
    .collect();
    assert_series(&body, &want, "empty weeks");
    // A filter selecting nothing in a full account is the same.
    let body = stats(
        &app,
        1,
        "channel=nowhere&interval=month&from=2026-01-01&to=2026-03-01",
    )
    .await;
    assert_figures(&body, &[], "nothing selected");
    assert_series(
        &body,
        &[(d("2026-01-01"), 0), (d("2026-02-01"), 0)],
        "nothing selected",
    );
}

#[actix_web::test]
async fn contacts_created_through_the_api_are_counted() {
    let app = spawn().await;
    let up = token(1, "contacts:upsert");
    app.upsert_ok(&up, "sales-bot", "s1", json!({"channel": "whatsapp", "name": "Ann", "email": "ann@example.com", "phone": "+447700900123"})).await;
    app.upsert_ok(
        &up,
        "sales-bot",
        "s2",
        json!({"channel": "website", "email": "bo@example.com"}),
    )
    .await;
    app.upsert_ok(&up, "support-bot", "s3", json!({"channel": "whatsapp"}))
        .await;
    app.upsert_ok(
        &up,
        "support-bot",
        "s3",
        json!({"channel": "whatsapp", "name": "Cy"}),
    )
    .await;
    // Account 2's upserts are someone else's.
    app.upsert_ok(
        &token(2, "contacts:upsert"),
        "sales-bot",
        "s1",
        json!({"channel": "sms"}),
    )
    .await;

    #[derive(diesel::QueryableByName)]
    struct R {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        name: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        email: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        phone: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        channel: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        chatbot_id: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        sessions_count: i32,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        created_at: DateTime<Utc>,
    }
    let stored: Vec<R> = diesel::sql_query(
        "SELECT name, email, phone, channel, chatbot_id, sessions_count, created_at \
         FROM contacts WHERE account_id = 1",
    )
    .load(&mut app.db.conn())
    .unwrap();
    assert_eq!(stored.len(), 3);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let rows: Vec<C> = stored
        .into_iter()
        .map(|r| C {
            account: 1,
            name: r.name,
            email: r.email,
            phone: r.phone,
            country: None,
            channel: leak(r.channel),
            chatbot: leak(r.chatbot_id),
            sessions: r.sessions_count,
            created: r.created_at,
            seen: r.created_at,
        })
        .collect();
    let all: Vec<&C> = rows.iter().collect();
    let body = stats(&app, 1, "").await;
    assert_figures(&body, &all, "api");
    assert_eq!(body["total"], 3);
    assert_eq!(body["complete"], 1);
    let to = t(body["growth"]["to"].as_str().unwrap());
    let from = buckets(&body)[0].0;
    assert_series(&body, &series(&all, "day", from, to), "api growth");
    assert_eq!(buckets(&body).last().unwrap().1, 3, "created today");
}

#[actix_web::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = spawn().await;
    insert(&app, &forty(1));
    let tok = token(1, READ);
    let day = |n: u64| (NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Days::new(n)).to_string();
    let max_days = format!("interval=day&from=2026-01-01&to={}", day(1000));
    let over_days = format!("interval=day&from=2026-01-01&to={}", day(1001));
    let over_days_mid = format!("interval=day&from=2026-01-01&to={}T00:00:01Z", day(1000));
    for (query, field) in [
        ("interval=year", "interval"),
        ("interval=", "interval"),
        ("interval=Day", "interval"),
        ("interval=day&from=2026-02-01&to=2026-01-01", "from"),
        ("interval=day&from=2026-01-01&to=2026-01-01", "from"),
        ("interval=month&from=2026-01-15&to=2026-01-01", "from"),
        ("from=garbage", "from"),
        ("from=2026-13-01", "from"),
        ("from=", "from"),
        ("to=garbage", "to"),
        ("to=2026-01-01T25:00:00Z", "to"),
        ("interval=day&from=2000-01-01", "from"),
        (over_days.as_str(), "from"),
        (over_days_mid.as_str(), "from"),
        ("interval=month&from=1900-01-01&to=2026-01-01", "from"),
        ("interval=week&from=1990-01-01&to=2026-01-01", "from"),
        ("bogus=1", "bogus"),
        ("limit=10", "limit"),
        ("sort=name", "sort"),
        ("interval=day&Interval=day", "Interval"),
        ("channel=Not%20A%20Channel!", "channel"),
        ("channel=", "channel"),
        ("chatbot_id=a/b", "chatbot_id"),
        ("country_code=XX", "country_code"),
        ("has_email=maybe", "has_email"),
        ("has_phone=1x", "has_phone"),
        ("returning=yes", "returning"),
        ("created_from=yesterday", "created_from"),
        ("created_to=2026-02-30", "created_to"),
        ("last_seen_from=soon", "last_seen_from"),
        ("last_seen_to=x", "last_seen_to"),
        ("q=", "q"),
        ("q=%20%20", "q"),
    ] {
        let r = app
            .get(&format!("/api/v1/contacts/stats?{query}"), &tok)
            .await;
        bad(&r, field);
    }
    // Exactly 1000 buckets is the most accepted.
    let body = stats(&app, 1, &max_days).await;
    assert_eq!(buckets(&body).len(), 1000);
    assert_eq!(buckets(&body).last().unwrap().0, d(&day(999)));

    // The scope.
    for scopes in [
        "contacts:upsert",
        "contacts:write contacts:export",
        "contacts:readx",
    ] {
        let r = app.get("/api/v1/contacts/stats", &token(1, scopes)).await;
        r.problem(403, "insufficient_scope");
    }
    let r = app
        .send(actix_web::test::TestRequest::get().uri("/api/v1/contacts/stats"))
        .await;
    assert_eq!(r.status.as_u16(), 401);
    app.get(
        "/api/v1/contacts/stats",
        &token(1, "contacts:read contacts:write"),
    )
    .await
    .ok(200);
}
