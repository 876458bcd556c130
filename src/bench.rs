//! `contacts-api bench-plan`: the benchmark's operations, each as the HTTP request the service
//! answers and the exact SQL the service issues for it (diesel's own query with its binds), so
//! `scripts/bench` can measure the API and `pgbench -M prepared` on the same work.

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
}

/// Splits the top-level items of diesel's `-- binds: [...]` debug list.
fn split_binds(list: &str) -> Vec<String> {
    let inner = list.trim().trim_start_matches('[').trim_end_matches(']');
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
) -> (String, Vec<String>) {
    let debug = list::page_sql(account, filter, sort, after, 51);
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

/// Builds the list operations for `account` (a seeded account of many contacts).
pub fn list_ops(conn: &mut PgConnection, account: i64, depth: i64) -> diesel::QueryResult<Vec<Op>> {
    let mut ops = Vec::new();
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
        let (sql, defs) = page_op(account, &filter, sort, after.as_ref());
        ops.push(Op {
            name: name.to_string(),
            url: query_string(sort_name, qs, cursor),
            sql,
            defs,
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
    Ok(ops)
}

/// Writes `ops.tsv` (name, url, script file, defs) and one pgbench script per op into `dir`.
pub fn write_plan(dir: &std::path::Path, ops: &[Op]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut index = String::new();
    for (i, op) in ops.iter().enumerate() {
        let script = dir.join(format!("op{i}.sql"));
        std::fs::write(&script, format!("{}\n", op.sql))?;
        let _ = writeln!(
            index,
            "{}\t{}\t{}\t{}",
            op.name,
            op.url,
            script.display(),
            op.defs.join("\u{1f}")
        );
    }
    std::fs::write(dir.join("ops.tsv"), index)
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
        let (sql, defs) = page_op(3, &ContactFilter::default(), Sort::IdDesc, None);
        assert!(sql.contains("\"contacts\".\"account_id\" = :p1"), "{sql}");
        assert_eq!(defs, ["p1=3", "p2=51"]);
    }
}
