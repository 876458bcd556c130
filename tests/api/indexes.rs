//! Storage settings of the indexes that the write path depends on (migration 000008).

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
