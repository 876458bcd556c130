//! Database settings the service depends on: the trigram index's pending list (migration
//! 000008) and the session settings of its pooled connections (`db::service_url`).

use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};

use crate::helpers::*;

#[derive(QueryableByName)]
struct Options {
    #[diesel(sql_type = Text)]
    options: String,
}

#[test]
fn the_trigram_index_merges_its_pending_list_in_small_steps() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let found = diesel::sql_query(
        "SELECT array_to_string(reloptions, ',') AS options FROM pg_class \
         WHERE relname = 'contacts_search_idx'",
    )
    .get_result::<Options>(&mut conn)
    .unwrap();
    // A merge runs inside the upsert that overflows the list: 512 kB keeps that pause short.
    assert_eq!(found.options, "gin_pending_list_limit=512");
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

#[test]
fn service_connections_run_without_jit_and_with_the_timeouts() {
    let db = TestDb::new();
    let mut conn = db.pool.get().unwrap();
    let show = |conn: &mut diesel::PgConnection, name: &str| {
        diesel::sql_query(format!("SELECT current_setting('{name}') AS value"))
            .get_result::<Setting>(conn)
            .unwrap()
            .value
    };
    // Compiling the counted stats took longer than running them (db::service_options).
    assert_eq!(show(&mut conn, "jit"), "off");
    assert_eq!(show(&mut conn, "statement_timeout"), "30s");
}
