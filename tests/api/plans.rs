//! The list's plans where the planner has a choice (an account of 30,000 contacts, analysed):
//! the statement the service issues, `EXPLAIN`ed with its values as the service plans it.

use contacts_api::repo::list::{self, ContactFilter, Sort};
use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use crate::helpers::*;

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The plan of the page `list::page` reads, with `binds` as the statement's values.
fn plan(conn: &mut PgConnection, filter: &ContactFilter, binds: &str) -> String {
    let (sql, _) = list::page_sql(7, filter, Sort::IdDesc, None, 51);
    let sql = sql.split(" -- binds: ").next().unwrap();
    // The service sends filtered pages unnamed: planned with their values every time.
    conn.batch_execute(&format!(
        "DEALLOCATE ALL; SET plan_cache_mode = force_custom_plan; PREPARE page AS {sql}"
    ))
    .unwrap();
    let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN EXECUTE page({binds})"))
        .load(conn)
        .unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn pages_of_one_channel_or_country_walk_their_index_in_id_order() {
    let db = TestDb::new();
    let mut conn = db.conn();
    conn.batch_execute(
        "SET contacts.stats_by_statement = on; \
         INSERT INTO contacts (account_id, channel, chatbot_id, name, country_code) \
         SELECT 7, CASE WHEN g % 10 = 0 THEN 'whatsapp' ELSE 'website' END, \
             CASE WHEN g % 7 = 0 THEN 'sales' ELSE 'bot' END, 'n' || g, \
             CASE WHEN g % 20 = 0 THEN 'JP' WHEN g % 3 = 0 THEN 'US' END \
         FROM generate_series(1, 30000) g; \
         ANALYZE contacts",
    )
    .unwrap();
    let one = ContactFilter {
        channels: Some(vec!["whatsapp".into()]),
        ..Default::default()
    };
    let p = plan(&mut conn, &one, "7, 'whatsapp', 51");
    assert!(
        p.contains("Index Scan Backward using contacts_channel_idx"),
        "{p}"
    );
    assert!(!p.contains("Sort"), "{p}");

    // Several channels are `= ANY(...)`: PostgreSQL 15 cannot read that in index order, so the
    // primary key's walk (filtered) stays the plan, never a sort of the whole account.
    let two = ContactFilter {
        channels: Some(vec!["whatsapp".into(), "telegram".into()]),
        ..Default::default()
    };
    let p = plan(&mut conn, &two, "7, '{whatsapp,telegram}', 51");
    assert!(p.contains("Index Scan Backward using contacts_pkey"), "{p}");

    // A country with a chatbot: the (partial) country index, in id order.
    let country = ContactFilter {
        chatbots: Some(vec!["sales".into()]),
        country_codes: Some(vec!["JP".into()]),
        ..Default::default()
    };
    let p = plan(&mut conn, &country, "7, 'sales', 'JP', 51");
    assert!(
        p.contains("Index Scan Backward using contacts_country_idx"),
        "{p}"
    );
    assert!(!p.contains("Sort"), "{p}");
}

/// The statements of the write and lookup paths as the service prepares them, each `EXPLAIN`ed
/// with the generic plan that PostgreSQL may switch a cached statement to after five
/// executions, on an account that was never analysed (autovacuum off). Returns `(statement,
/// plan)` for every statement the connection prepared.
fn generic_plans(conn: &mut PgConnection) -> Vec<(String, String)> {
    #[derive(QueryableByName)]
    struct Stmt {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        statement: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        params: i32,
    }
    let stmts: Vec<Stmt> = diesel::sql_query(
        "SELECT name, statement, cardinality(parameter_types) AS params \
         FROM pg_prepared_statements WHERE from_sql = false",
    )
    .load(conn)
    .unwrap();
    conn.batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    let plans = stmts
        .into_iter()
        .map(|s| {
            let args = vec!["NULL"; s.params as usize].join(", ");
            let lines: Vec<Line> =
                diesel::sql_query(format!("EXPLAIN EXECUTE \"{}\"({args})", s.name))
                    .load(conn)
                    .unwrap();
            let plan = lines
                .into_iter()
                .map(|l| l.line)
                .collect::<Vec<_>>()
                .join("\n");
            (s.statement, plan)
        })
        .collect();
    conn.batch_execute("RESET plan_cache_mode").unwrap();
    plans
}

/// What is wrong with `plan` for a statement that names its rows by key: a sequential scan of
/// a table of contacts, or an index scan whose only condition is the account (a scan of the
/// whole account).
fn scans_the_account(plan: &str) -> Vec<String> {
    let lines: Vec<&str> = plan.lines().collect();
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim_start().trim_start_matches("->").trim();
        if l.starts_with("Seq Scan on") {
            bad.push(l.to_string());
        }
        if let Some(cond) = l.strip_prefix("Index Cond: ") {
            // `(account_id = $1)`, `(s.account_id = $0)`: the account alone.
            let inner = cond.trim_start_matches('(').trim_end_matches(')');
            let alone = !inner.contains(" AND ")
                && inner
                    .split(" = ")
                    .next()
                    .is_some_and(|c| c.trim_start_matches('(').ends_with("account_id"));
            if alone {
                bad.push(format!("{} / {l}", lines[i - 1].trim()));
            }
        }
    }
    bad
}

#[test]
fn hot_statements_stay_on_their_keys_in_a_generic_plan_of_a_never_analysed_account() {
    use contacts_api::repo::{batch, bulk, contacts, merge, privacy};
    let db = TestDb::new();
    let mut conn = db.conn();
    // 2,400 contacts, one session each, never analysed.
    conn.batch_execute(
        "SET contacts.stats_by_statement = on; \
         INSERT INTO contacts (account_id, id, channel, chatbot_id, session_id, name, email) \
         SELECT 7, g, 'website', 'bot', 's' || g, 'n' || g, 'p' || (g % 50) || '@example.com' \
         FROM generate_series(1, 2400) g; \
         INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel) \
         SELECT 7, 'bot', 's' || g, g, 'website' FROM generate_series(1, 2400) g; \
         SELECT setval('contacts_id_seq', 10000); \
         RESET contacts.stats_by_statement",
    )
    .unwrap();
    // Every hot path once, on this connection, so that it prepares the statements.
    let upsert = |s: &str| contacts::SessionUpsert {
        chatbot_id: "bot".into(),
        session_id: s.into(),
        channel: "api".into(),
        name: Some("N".into()),
        ..Default::default()
    };
    contacts::upsert_session(&mut conn, 7, &upsert("s1"), "t").unwrap();
    contacts::upsert_session(&mut conn, 7, &upsert("new-1"), "t").unwrap();
    let items: Vec<_> = ["s2", "s3", "new-2", "s2", "new-2"]
        .into_iter()
        .map(upsert)
        .collect();
    conn.transaction(|c| batch::upsert_batch(c, 7, &items, "t"))
        .unwrap();
    contacts::find(&mut conn, 7, 5).unwrap();
    conn.transaction(|c| {
        let current = contacts::find_for_update(c, 7, 5)?.expect("contact 5");
        let changes = contacts_api::models::ContactChanges::from_contact(&current).unwrap();
        contacts::update(c, 7, 5, &changes)
    })
    .unwrap();
    contacts::delete(&mut conn, 7, 6, |_| true).unwrap();
    conn.transaction(|c| merge::merge(c, 7, 7, &[8, 9], "t", |_| true))
        .unwrap()
        .unwrap();
    bulk::delete_ids(&mut conn, 7, &[10, 11], "t").unwrap();
    conn.transaction(|c| {
        privacy::erase(
            c,
            7,
            &privacy::Subject::Email("p13@example.com".into()),
            "t",
        )
    })
    .unwrap();

    let plans = generic_plans(&mut conn);
    assert!(plans.len() >= 10, "{} statements", plans.len());
    let bad: Vec<String> = plans
        .iter()
        .filter_map(|(sql, plan)| {
            let bad = scans_the_account(plan);
            (!bad.is_empty()).then(|| format!("{bad:?}\n{sql}\n{plan}"))
        })
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}
