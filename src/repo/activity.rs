//! Pages in "last seen" order. `contacts` has no index on `last_seen_at`: every interaction
//! changes it, and an indexed column would make every session upsert a non-HOT update that
//! writes an entry into each of the table's indexes (migration 000009). Its index is
//! `contact_activity`, a narrow copy kept by triggers in the same transaction; these pages walk
//! that index and fetch each contact by primary key, filters applied to the contact.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Timestamptz, Untyped};
use diesel::{QueryResult, RunQueryDsl};

use super::fragments::{last_seen_range, Matches};

/// `SELECT` of the contacts matching `matches`, in `last_seen_at, id` order (or its reverse),
/// after a keyset position, `LIMIT limit OFFSET offset`.
#[derive(Debug, Clone)]
pub struct LastSeenPage {
    /// The account and the list filters (applied to `contacts`).
    pub matches: Matches,
    /// The account again, for the walk of the activity index.
    pub account_id: i64,
    /// `-last_seen_at`.
    pub desc: bool,
    /// The last row of the previous page: its `last_seen_at` and id.
    pub after: Option<(DateTime<Utc>, i64)>,
    /// Rows wanted.
    pub limit: i64,
    /// Rows skipped first (only `list::nth`, for benchmarks and tools).
    pub offset: i64,
}

impl QueryFragment<Pg> for LastSeenPage {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // The lateral subquery is pulled up into a plain join: its unqualified columns are the
        // contact's, as `Matches` expects, and the plan is the activity index in order, then
        // one primary-key lookup per row, stopped by the LIMIT.
        out.push_sql(
            "SELECT c.* FROM contact_activity a CROSS JOIN LATERAL (SELECT * FROM contacts \
             WHERE account_id = a.account_id AND id = a.contact_id AND ",
        );
        self.matches.walk_ast(out.reborrow())?;
        out.push_sql(") c WHERE a.account_id = ");
        out.push_bind_param::<BigInt, _>(&self.account_id)?;
        let (op, dir) = if self.desc {
            (" < ", " DESC")
        } else {
            (" > ", "")
        };
        if let Some((at, id)) = &self.after {
            out.push_sql(" AND (a.last_seen_at, a.contact_id)");
            out.push_sql(op);
            out.push_sql("(");
            out.push_bind_param::<Timestamptz, _>(at)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(id)?;
            out.push_sql(")");
        }
        // The filter's own range, on the index too (`Matches` checks it again on the contact).
        last_seen_range(out.reborrow(), "a.last_seen_at", self.matches.filter())?;
        out.push_sql(" ORDER BY a.last_seen_at");
        out.push_sql(dir);
        out.push_sql(", a.contact_id");
        out.push_sql(dir);
        out.push_sql(" LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        if self.offset > 0 {
            out.push_sql(" OFFSET ");
            out.push_bind_param::<BigInt, _>(&self.offset)?;
        }
        Ok(())
    }
}

impl QueryId for LastSeenPage {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for LastSeenPage {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for LastSeenPage {}
