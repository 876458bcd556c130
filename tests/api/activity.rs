//! `contact_activity` (migration 000009): the "last seen" order lives outside `contacts`, so a
//! returning visitor's upsert is a HOT update, and the copy never drifts from the contact.

use actix_web::http::Method;
use contacts_api::repo::contacts::{upsert_session, SessionUpsert};
use contacts_api::repo::list::{self, ContactFilter, Sort};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::json;

use crate::helpers::*;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

/// Contacts whose activity row is missing or differs, plus activity rows without a contact.
fn drift(conn: &mut PgConnection) -> i64 {
    count(
        conn,
        "SELECT count(*) AS n FROM contacts c FULL JOIN contact_activity a \
         ON a.account_id = c.account_id AND a.contact_id = c.id \
         WHERE c.id IS NULL OR a.contact_id IS NULL OR a.last_seen_at <> c.last_seen_at",
    )
}

fn session(id: &str) -> SessionUpsert {
    SessionUpsert {
        chatbot_id: "bot".into(),
        session_id: id.into(),
        channel: "web".into(),
        name: Some("Ada".into()),
        email: Some("ada@example.com".into()),
        ..Default::default()
    }
}

#[test]
fn a_returning_session_updates_its_contact_and_session_in_place() {
    let db = TestDb::new();
    let mut conn = db.conn();
    upsert_session(&mut conn, 1, &session("s1"), "t").unwrap();
    // An hour ago, so that the repeat moves last_seen_at (now() is fixed within a transaction).
    conn.batch_execute(
        "UPDATE contacts SET last_seen_at = last_seen_at - interval '1 hour'; \
         UPDATE contact_sessions SET last_seen_at = last_seen_at - interval '1 hour'",
    )
    .unwrap();
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        // The backend's own counters (they also hold its earlier, unflushed transactions:
        // hence the difference).
        let counters = |conn: &mut PgConnection, table: &str| {
            let sql = format!(
                "SELECT pg_stat_get_xact_tuples_updated('{table}'::regclass) * 1000 \
                 + pg_stat_get_xact_tuples_hot_updated('{table}'::regclass) AS n"
            );
            count(conn, &sql)
        };
        let before = [
            counters(conn, "contacts"),
            counters(conn, "contact_sessions"),
        ];
        let (c, created) = upsert_session(conn, 1, &session("s1"), "t")?;
        assert!(!created);
        // One update of each table, and a HOT one (no new index entries; an index on a column
        // that the upsert changes would make it a plain update).
        for (table, before) in ["contacts", "contact_sessions"].into_iter().zip(before) {
            let after = counters(conn, table);
            assert_eq!(
                after - before,
                1001,
                "{table}: updates * 1000 + HOT updates"
            );
        }
        let moved = count(
            conn,
            &format!(
                "SELECT count(*) AS n FROM contact_activity \
                 WHERE contact_id = {} AND last_seen_at = now()",
                c.id
            ),
        );
        assert_eq!(moved, 1, "the activity row follows");
        Ok(())
    })
    .unwrap();
}

#[derive(QueryableByName)]
struct Def {
    #[diesel(sql_type = Text)]
    def: String,
}

#[test]
fn no_index_of_contacts_or_sessions_covers_what_an_interaction_changes() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let defs: Vec<Def> = diesel::sql_query(
        "SELECT pg_get_indexdef(indexrelid) AS def FROM pg_index \
         WHERE indrelid IN ('contacts'::regclass, 'contact_sessions'::regclass)",
    )
    .load(&mut conn)
    .unwrap();
    assert!(defs.len() >= 8, "{}", defs.len());
    for Def { def } in defs {
        for column in [
            "last_seen_at",
            "updated_at",
            "version",
            "ip_address",
            "payload",
        ] {
            assert!(!def.contains(column), "{def} covers {column}");
        }
    }
}

#[test]
fn the_activity_copy_follows_every_write() {
    let db = TestDb::new();
    let mut conn = db.conn();
    for i in 0..5 {
        upsert_session(&mut conn, 1, &session(&format!("s{i}")), "t").unwrap();
    }
    conn.batch_execute(
        "UPDATE contacts SET last_seen_at = last_seen_at - id * interval '1 minute'",
    )
    .unwrap();
    upsert_session(&mut conn, 1, &session("s2"), "t").unwrap();
    // A COPY-sized insert counted by statement (the seed's and large batches' path).
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        conn.batch_execute(
            "SET LOCAL contacts.stats_by_statement = on; \
             INSERT INTO contacts (account_id, name, channel, chatbot_id, last_seen_at) \
             SELECT 2, 'n' || g, 'api', 'bot', now() - g * interval '1 day' \
             FROM generate_series(1, 50) g",
        )
    })
    .unwrap();
    conn.batch_execute("DELETE FROM contacts WHERE account_id = 2 AND name = 'n7'")
        .unwrap();
    assert_eq!(drift(&mut conn), 0);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM contact_activity"),
        54
    );

    // Pages in last-seen order, either way, equal the order of the contacts' own column.
    let all = |conn: &mut PgConnection, sort| {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page =
                list::page(conn, 2, &ContactFilter::default(), sort, after.as_ref(), 7).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(sort.position(last));
            out.extend(page.iter().map(|c| (c.last_seen_at, c.id)));
        }
        out
    };
    let asc = all(&mut conn, Sort::LastSeenAsc);
    let mut want = asc.clone();
    want.sort();
    assert_eq!(asc, want);
    assert_eq!(asc.len(), 49);
    let mut desc = all(&mut conn, Sort::LastSeenDesc);
    desc.reverse();
    assert_eq!(desc, asc);
}

#[actix_web::test]
async fn merge_and_delete_keep_the_copy_exact() {
    let app = spawn().await;
    let tok = token(
        1,
        "contacts:read contacts:write contacts:delete contacts:upsert",
    );
    let mut ids = Vec::new();
    for s in ["a", "b", "c"] {
        let body = app
            .upsert_ok(&tok, "bot", s, json!({"channel": "web"}))
            .await;
        ids.push(body["id"].as_i64().unwrap());
    }
    let mut conn = app.db.conn();
    conn.batch_execute(&format!(
        "UPDATE contacts SET last_seen_at = '2030-01-01Z' WHERE id = {}",
        ids[1]
    ))
    .unwrap();
    app.call(
        Method::POST,
        &format!("/api/v1/contacts/{}/merge", ids[0]),
        &tok,
        Some(json!({"source_ids": [ids[1]]})),
    )
    .await
    .ok(200);
    app.call(
        Method::DELETE,
        &format!("/api/v1/contacts/{}", ids[2]),
        &tok,
        None,
    )
    .await
    .ok(204);
    assert_eq!(drift(&mut conn), 0);
    let seen = count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM contact_activity \
             WHERE contact_id = {} AND last_seen_at = '2030-01-01Z'",
            ids[0]
        ),
    );
    assert_eq!(seen, 1, "the target took the source's latest interaction");
}
