//! The hot statements are prepared once per connection and reused (diesel's statement cache):
//! a regression here costs a parse and plan on every request.

use contacts_api::repo::contacts::{upsert_session, SessionUpsert};
use contacts_api::repo::list::{self, ContactFilter, Sort};
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::helpers::*;

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn prepared_matching(conn: &mut diesel::PgConnection, needle: &str) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE strpos(statement, $1) > 0",
    )
    .bind::<Text, _>(needle)
    .get_result::<N>(conn)
    .unwrap()
    .n
}

#[test]
fn upserts_and_keyset_pages_reuse_one_prepared_statement() {
    let db = TestDb::new();
    let mut conn = db.conn();
    for i in 0..3 {
        let u = SessionUpsert {
            chatbot_id: "bot".into(),
            session_id: format!("s{}", i % 2),
            channel: "api".into(),
            name: Some(format!("N{i}")),
            ..Default::default()
        };
        upsert_session(&mut conn, 1, &u, "tester").unwrap();
    }
    assert_eq!(prepared_matching(&mut conn, "new_session AS"), 1);

    for sort in [Sort::CreatedDesc, Sort::NameAsc] {
        let first = list::page(&mut conn, 1, &ContactFilter::default(), sort, None, 1).unwrap();
        let pos = sort.position(&first[0]);
        for _ in 0..3 {
            list::page(&mut conn, 1, &ContactFilter::default(), sort, Some(&pos), 1).unwrap();
        }
    }
    assert_eq!(prepared_matching(&mut conn, "(created_at, id) < ("), 1);
    assert_eq!(prepared_matching(&mut conn, "COLLATE \"C\"), id) > ("), 1);
}

#[test]
fn filtered_pages_are_planned_with_their_values_every_time() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let filter = ContactFilter {
        channels: Some(vec!["api".into()]),
        has_email: Some(true),
        ..Default::default()
    };
    for _ in 0..6 {
        list::page(&mut conn, 1, &filter, Sort::IdDesc, None, 10).unwrap();
        list::count(&mut conn, 1, &filter).unwrap();
    }
    // Kept prepared, PostgreSQL could switch it to a generic plan: for a filtered page at depth
    // that plan was 1000x slower than the custom one (repo::fragments::Matches).
    assert_eq!(prepared_matching(&mut conn, "channel = ANY("), 0);
    list::page(
        &mut conn,
        1,
        &ContactFilter::default(),
        Sort::IdDesc,
        None,
        10,
    )
    .unwrap();
    assert_eq!(prepared_matching(&mut conn, "FROM \"contacts\" WHERE"), 1);
}
