//! `contacts-api bench-plan`: the benchmark's operations, each as the HTTP request the service
//! answers and the exact SQL the service issues for it (diesel's own query with its binds), so
//! `scripts/bench` can measure the API and pgbench on the same work (in the protocol the
//! service uses for each statement: prepared, or unnamed and planned with its values).

use std::fmt::Write as _;

use diesel::pg::PgConnection;

use crate::repo::list::{self, ContactFilter, Sort};
use crate::routes::filters::fingerprint;
use crate::routes::list::ListCursor;

/// One benchmark operation.
pub struct Op {
    /// Short name printed in the table.
    pub name: String,
    /// Path and query of the API request.
    pub url: String,
    /// The SQL with `:pN` variables, for a pgbench script.
    pub sql: String,
    /// `pN=value` definitions for `pgbench -D`.
    pub defs: Vec<String>,
    /// Whether the service keeps the statement prepared (pgbench `-M prepared`) or sends it
    /// unnamed, planned with its values every time (`-M extended`).
    pub prepared: bool,
}

/// Splits the top-level items of diesel's `-- binds: [...]` debug list.
fn split_binds(list: &str) -> Vec<String> {
    // Exactly one pair of brackets: the last bind may itself be an array (`[.., ["a"]]`).
    let list = list.trim();
    let inner = list
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(list);
    let (mut items, mut cur, mut depth, mut in_str, mut esc) =
        (Vec::new(), String::new(), 0, false, false);
    for ch in inner.chars() {
        if in_str {
            cur.push(ch);
            if esc {
                esc = false;
            } else if ch == '\\' {
                esc = true;
            } else if ch == '"' {
                in_str = false;
            }
            continue;
        }
        match ch {
            '"' => {
                in_str = true;
                cur.push(ch);
            }
            '[' | '(' => {
                depth += 1;
                cur.push(ch);
            }
            ']' | ')' => {
                depth -= 1;
                cur.push(ch);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(ch),
        }
    }
    if !cur.trim().is_empty() {
        items.push(cur.trim().to_string());
    }
    items
}

/// A debug-printed bind as PostgreSQL input text (strings, numbers, times, text arrays).
fn bind_text(item: &str) -> String {
    let item = item.trim();
    if let Some(inner) = item.strip_prefix("Some(").and_then(|s| s.strip_suffix(')')) {
        return bind_text(inner);
    }
    if let Some(inner) = item.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let parts: Vec<String> = split_binds(&format!("[{inner}]"))
            .iter()
            .map(|p| bind_text(p))
            .collect();
        return format!("{{{}}}", parts.join(","));
    }
    match item.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(s) => s.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => item.to_string(),
    }
}

/// The SQL of a page exactly as the list handler issues it, as a pgbench script and defs.
fn page_op(
    account: i64,
    filter: &ContactFilter,
    sort: Sort,
    after: Option<&list::Position>,
) -> (String, Vec<String>, bool) {
    let (sql, prepared) = list::page_sql(account, filter, sort, after, 51);
    let (sql, defs) = sql_op(&sql);
    (sql, defs, prepared)
}

/// A `debug_query` string as a pgbench script and its `-D` defs.
fn sql_op(debug: &str) -> (String, Vec<String>) {
    let (sql, binds) = debug
        .split_once(" -- binds: ")
        .expect("debug_query prints binds");
    let binds = split_binds(binds);
    let mut sql = sql.to_string();
    for i in (1..=binds.len()).rev() {
        sql = sql.replace(&format!("${i}"), &format!(":p{i}"));
    }
    let defs = binds
        .iter()
        .enumerate()
        .map(|(i, b)| format!("p{}={}", i + 1, bind_text(b)))
        .collect();
    (sql.replace('\n', " ") + ";", defs)
}

fn query_string(sort_name: &str, filter_qs: &str, cursor: Option<String>) -> String {
    let mut url = format!("/api/v1/contacts?limit=50&sort={}", urlencode(sort_name));
    if !filter_qs.is_empty() {
        let _ = write!(url, "&{filter_qs}");
    }
    if let Some(c) = cursor {
        let _ = write!(url, "&cursor={c}");
    }
    url
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The floor under every read: `GET /readyz` is one `SELECT 1` through the pool and the
/// blocking bridge (no token, no rows), next to pgbench running `SELECT 1`. Its API/PostgreSQL
/// ratio is the most any operation can reach on the machine: the fixed cost of HTTP, the pool
/// and the bridge, against a statement that costs PostgreSQL almost nothing.
fn floor_op() -> Op {
    let ping = diesel::sql_query(crate::db::PING_SQL);
    Op {
        name: "floor: /readyz (SELECT 1)".into(),
        url: "/readyz".into(),
        sql: format!("{};", crate::db::PING_SQL),
        // The statement has no variable; one unused definition keeps the plan's tab-separated
        // column non-empty (the shell's `read` merges empty tab-separated fields).
        defs: vec!["unused=0".into()],
        prepared: crate::repo::fragments::cached(&ping),
    }
}

/// Builds the list operations for `account` (a seeded account of many contacts).
pub fn list_ops(conn: &mut PgConnection, account: i64, depth: i64) -> diesel::QueryResult<Vec<Op>> {
    let mut ops = vec![floor_op()];
    let mut add = |name: &str,
                   sort_name: &str,
                   filter: ContactFilter,
                   qs: &str,
                   deep: bool,
                   conn: &mut PgConnection|
     -> diesel::QueryResult<()> {
        let sort = Sort::parse(sort_name).expect("sort");
        let after = if deep {
            // Half-way into a smaller result set.
            let n = depth.min(list::count(conn, account, &filter)? / 2);
            list::nth(conn, account, &filter, sort, n)?.map(|c| sort.position(&c))
        } else {
            None
        };
        let cursor = after.as_ref().map(|p| {
            crate::cursor::encode(&ListCursor {
                s: sort_name.to_string(),
                f: fingerprint(&filter),
                p: p.clone(),
            })
        });
        let (sql, defs, prepared) = page_op(account, &filter, sort, after.as_ref());
        ops.push(Op {
            name: name.to_string(),
            url: query_string(sort_name, qs, cursor),
            sql,
            defs,
            prepared,
        });
        Ok(())
    };
    let none = ContactFilter::default();
    add("first page (-id)", "-id", none.clone(), "", false, conn)?;
    add(
        &format!("page at row {depth} (-id)"),
        "-id",
        none.clone(),
        "",
        true,
        conn,
    )?;
    for (sort_name, _) in Sort::ALL.iter().skip(1) {
        add(
            &format!("page at row {depth} ({sort_name})"),
            sort_name,
            none.clone(),
            "",
            true,
            conn,
        )?;
    }
    let now = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).expect("now");
    let (from, to) = (
        now - chrono::Duration::days(180),
        now - chrono::Duration::days(90),
    );
    let filtered = ContactFilter {
        channels: Some(vec!["whatsapp".into()]),
        created_from: Some(from),
        created_to: Some(to),
        has_email: Some(true),
        ..Default::default()
    };
    let qs = format!(
        "channel=whatsapp&created_from={}&created_to={}&has_email=true",
        urlencode(&from.to_rfc3339()),
        urlencode(&to.to_rfc3339())
    );
    add(
        "filtered first page",
        "-id",
        filtered.clone(),
        &qs,
        false,
        conn,
    )?;
    add("filtered page at depth", "-id", filtered, &qs, true, conn)?;
    for (name, q) in [
        ("q common (\"son\")", "son"),
        ("q rare (\"lamarr77\")", "lamarr77"),
    ] {
        let f = ContactFilter {
            q: Some(q.into()),
            ..Default::default()
        };
        add(name, "-id", f, &format!("q={}", urlencode(q)), false, conn)?;
    }
    ops.extend(stats_ops(conn, account)?);
    Ok(ops)
}

/// `GET /contacts/stats`: from the rollups (whole account, one chatbot, one week of creation
/// days, about 1% of a seeded account) and counted from the contacts (a filter the rollups
/// cannot answer).
fn stats_ops(conn: &mut PgConnection, account: i64) -> diesel::QueryResult<Vec<Op>> {
    use crate::repo::stats::{self, Interval};
    use diesel::RunQueryDsl;
    let today = chrono::Utc::now().date_naive();
    let midnight = |days_ago: u64| {
        (today - chrono::Days::new(days_ago))
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
    };
    let from = midnight(29);
    // The busiest chatbot of the account, so the filter is not trivially empty.
    #[derive(diesel::QueryableByName)]
    struct Bot {
        #[diesel(sql_type = diesel::sql_types::Text)]
        chatbot_id: String,
    }
    let bot = diesel::sql_query(
        "SELECT chatbot_id FROM contact_daily_stats WHERE account_id = $1 \
         GROUP BY chatbot_id ORDER BY sum(total) DESC LIMIT 1",
    )
    .bind::<diesel::sql_types::BigInt, _>(account)
    .get_result::<Bot>(conn)
    .map(|b| b.chatbot_id)
    .unwrap_or_else(|_| "support-bot".into());
    let (week_from, week_to) = (midnight(97), midnight(90));
    let cases = [
        (
            "stats: all (rollups)",
            ContactFilter::default(),
            String::new(),
        ),
        (
            "stats: one chatbot (rollups)",
            ContactFilter {
                chatbots: Some(vec![bot.clone()]),
                ..Default::default()
            },
            format!("&chatbot_id={}", urlencode(&bot)),
        ),
        (
            "stats: 1 week of days (rollups)",
            ContactFilter {
                created_from: Some(week_from),
                created_to: Some(week_to),
                ..Default::default()
            },
            format!(
                "&created_from={}&created_to={}",
                urlencode(&week_from.to_rfc3339()),
                urlencode(&week_to.to_rfc3339())
            ),
        ),
        (
            "stats: has_email (counted)",
            ContactFilter {
                has_email: Some(true),
                ..Default::default()
            },
            "&has_email=true".into(),
        ),
    ];
    Ok(cases
        .into_iter()
        .map(|(name, filter, qs)| {
            let (sql, prepared) = stats::debug_sql(account, &filter, Interval::Day, from, None);
            let (sql, defs) = sql_op(&sql);
            Op {
                name: name.into(),
                url: format!(
                    "/api/v1/contacts/stats?from={}{qs}",
                    urlencode(&from.to_rfc3339())
                ),
                sql,
                defs,
                prepared,
            }
        })
        .collect())
}

/// The account the upsert operations write to (emptied by `scripts/bench` first).
pub const UPSERT_ACCOUNT: i64 = 9;

/// A contact's fields as the benchmark sends them (every bind non-null, as pgbench cannot
/// pass NULL): name, email, phone, avatar_url, country_code, ip_address, payload.
const FIELDS: [&str; 7] = [
    "Bench User",
    "bench@example.com",
    "+447700900123",
    "https://cdn.example.com/a.png",
    "GB",
    "203.0.113.9",
    r#"{"plan": "pro"}"#,
];

/// The JSON body of one upsert item (`extra` adds chatbot/session for batch items).
pub fn upsert_body(extra: &str) -> String {
    format!(
        r#"{{{extra}"channel":"website","name":"{}","email":"{}","phone":"{}","avatar_url":"{}","country_code":"{}","ip_address":"{}","payload":{}}}"#,
        FIELDS[0], FIELDS[1], FIELDS[2], FIELDS[3], FIELDS[4], FIELDS[5], FIELDS[6]
    )
}

/// `$n` becomes `(:pn)::type`: diesel sends typed binds, pgbench untyped ones (one per
/// occurrence, typed by context), so the casts give pgbench the types the service sends.
fn placeholders(sql: &str, types: &[&str]) -> String {
    let mut sql = sql.to_string();
    for i in (1..=types.len()).rev() {
        sql = sql.replace(&format!("${i}"), &format!("(:p{i})::{}", types[i - 1]));
    }
    sql.replace('\n', " ").trim().to_string() + ";"
}

/// pgbench scripts for the upsert operations. `:sid` is drawn per transaction: from 2e9 ids
/// for new sessions, from 10,000 for repeat sessions (the API side draws the same way).
pub fn upsert_ops() -> Vec<Op> {
    let mut types = ["text"; 12];
    types[0] = "bigint";
    types[10] = "jsonb";
    let single = placeholders(crate::repo::contacts::UPSERT_SQL, &types).replace(":p3", ":sid");
    let mut defs = vec![
        format!("p1={UPSERT_ACCOUNT}"),
        "p2=bench".into(),
        "p4=website".into(),
    ];
    for (i, v) in FIELDS.iter().enumerate() {
        defs.push(format!("p{}={v}", i + 5));
    }
    defs.push("p12=bench".into());
    let mut ops = vec![
        Op {
            name: "upsert, new session".into(),
            url: "new".into(),
            sql: format!("\\set sid random(1, 2000000000)\n{single}"),
            defs: defs.clone(),
            prepared: true,
        },
        Op {
            name: "upsert, repeat session".into(),
            url: "repeat".into(),
            sql: format!("\\set sid random(1, 10000)\n{single}"),
            defs,
            prepared: true,
        },
    ];
    let mut types = ["text[]"; 12];
    types[0] = "bigint";
    types[10] = "jsonb[]";
    types[11] = "text";
    // A batch of new sessions is written by the claim alone (`repo::batch::upsert_batch`: every
    // session it creates is done, and no round statement runs); `BATCH_UPSERT_SQL` only updates
    // sessions that existed, and takes two more binds (`$13`, `$14`).
    let batch = placeholders(crate::repo::batch::CLAIM_SQL, &types);
    for n in [100usize, 500] {
        let array = |v: &str| {
            let quoted = format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
            format!("{{{}}}", vec![quoted; n].join(","))
        };
        let mut defs = vec![
            format!("p1={UPSERT_ACCOUNT}"),
            format!("p2={}", array("bench")),
            format!("p4={}", array("website")),
        ];
        for (i, v) in FIELDS.iter().enumerate() {
            defs.push(format!("p{}={}", i + 5, array(v)));
        }
        defs.push("p12=bench".into());
        // The session ids vary per transaction; building them costs one small extra query.
        // Then what the service sends: the batch's transaction, and in it the setting that has
        // the stats triggers count large batches per statement (`repo::batch`).
        let stats_mode = if n >= crate::repo::batch::STATEMENT_STATS_MIN {
            "SET LOCAL contacts.stats_by_statement = on;\n"
        } else {
            ""
        };
        let sql = format!(
            "\\set r random(1, 1000000000)\nSELECT array_agg('b' || :client_id || '-' || :r || '-' || g) AS p3 FROM generate_series(1, {n}) g \\gset\nBEGIN;\n{stats_mode}{batch}\nCOMMIT;"
        );
        ops.push(Op {
            name: format!("batch upsert x{n}, new sessions"),
            url: format!("batch{n}"),
            sql,
            defs,
            prepared: true,
        });
    }
    ops
}

/// Writes `<name>.tsv` (name, url, script file, defs, pgbench protocol) and one pgbench script
/// per op into `dir`.
pub fn write_plan(dir: &std::path::Path, name: &str, ops: &[Op]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut index = String::new();
    for (i, op) in ops.iter().enumerate() {
        let script = dir.join(format!("{name}{i}.sql"));
        std::fs::write(&script, format!("{}\n", op.sql))?;
        let _ = writeln!(
            index,
            "{}\t{}\t{}\t{}\t{}",
            op.name,
            op.url,
            script.display(),
            op.defs.join("\u{1f}"),
            if op.prepared { "prepared" } else { "extended" }
        );
    }
    std::fs::write(dir.join(format!("{name}.tsv")), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_binds_become_postgres_input_text() {
        let items = split_binds(
            r#"[1, ["whatsapp", "web"], 2026-05-28T12:00:00.5Z, Some("a, \"b\""), 51]"#,
        );
        let texts: Vec<String> = items.iter().map(|i| bind_text(i)).collect();
        assert_eq!(
            texts,
            [
                "1",
                "{whatsapp,web}",
                "2026-05-28T12:00:00.5Z",
                "a, \"b\"",
                "51"
            ]
        );
    }

    #[test]
    fn page_sql_uses_pgbench_variables() {
        let (sql, defs, prepared) = page_op(3, &ContactFilter::default(), Sort::IdDesc, None);
        assert!(sql.contains("(account_id = :p1)"), "{sql}");
        assert_eq!(defs, ["p1=3", "p2=51"]);
        assert!(prepared, "a page of the whole account is kept prepared");
        let narrowed = ContactFilter {
            has_email: Some(true),
            ..Default::default()
        };
        let (_, _, prepared) = page_op(3, &narrowed, Sort::IdDesc, None);
        assert!(!prepared, "a filtered page is planned with its values");
    }
}
