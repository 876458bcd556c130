//! The list's plans where the planner has a choice (an account of 30,000 contacts, analysed):
//! the statement the service issues, `EXPLAIN`ed with its values as the service plans it.

use contacts_api::repo::list::{self, ContactFilter, Sort};
use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

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
