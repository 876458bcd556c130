//! Contact analytics in one pass: totals, capture rates, returning contacts, sessions per
//! contact, and counts by channel, by chatbot and by creation bucket, through GROUPING SETS
//! over the contacts matching the list filters. Exact at the time of the query.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Untyped};

use super::fragments::Matches;
use super::list::ContactFilter;

/// Growth bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Calendar days, UTC.
    Day,
    /// ISO weeks (Monday to Sunday), UTC.
    Week,
    /// Calendar months, UTC.
    Month,
}

impl Interval {
    fn sql(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

/// One row of the grouping-sets query; `grouping` tells which set it belongs to.
#[derive(Debug, QueryableByName)]
pub struct Row {
    /// GROUPING(channel, chatbot_id, bucket): 7 totals, 3 by channel, 5 by chatbot, 6 by bucket.
    #[diesel(sql_type = Integer)]
    pub grouping: i32,
    /// Channel (by-channel rows).
    #[diesel(sql_type = Nullable<Text>)]
    pub channel: Option<String>,
    /// Chatbot (by-chatbot rows).
    #[diesel(sql_type = Nullable<Text>)]
    pub chatbot_id: Option<String>,
    /// Bucket start (growth rows).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub bucket: Option<DateTime<Utc>>,
    /// Contacts.
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    /// With an email.
    #[diesel(sql_type = BigInt)]
    pub with_email: i64,
    /// With a phone.
    #[diesel(sql_type = BigInt)]
    pub with_phone: i64,
    /// With an email or a phone.
    #[diesel(sql_type = BigInt)]
    pub with_email_or_phone: i64,
    /// With name, email and phone.
    #[diesel(sql_type = BigInt)]
    pub complete: i64,
    /// With more than one session.
    #[diesel(sql_type = BigInt)]
    pub returning: i64,
    /// Sum of sessions_count.
    #[diesel(sql_type = BigInt)]
    pub sessions: i64,
}

struct StatsQuery {
    interval: Interval,
    /// The growth window: only contacts created in `[from, to)` have a bucket.
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    matches: Matches,
}

impl QueryFragment<Pg> for StatsQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT GROUPING(channel, chatbot_id, bucket)::int AS grouping, channel, chatbot_id, bucket, \
            count(*) AS total, count(email) AS with_email, count(phone) AS with_phone, \
            count(*) FILTER (WHERE email IS NOT NULL OR phone IS NOT NULL) AS with_email_or_phone, \
            count(*) FILTER (WHERE name IS NOT NULL AND email IS NOT NULL AND phone IS NOT NULL) AS complete, \
            count(*) FILTER (WHERE sessions_count > 1) AS returning, \
            COALESCE(sum(sessions_count), 0)::bigint AS sessions \
            FROM (SELECT channel, chatbot_id, name, email, phone, sessions_count, \
            CASE WHEN created_at >= ");
        out.push_bind_param::<Timestamptz, _>(&self.from)?;
        out.push_sql(" AND created_at < ");
        out.push_bind_param::<Timestamptz, _>(&self.to)?;
        // Outside the window the bucket is NULL: one (bucket) row that the caller ignores, so
        // that a contact created after `to` never counts in the bucket that `to` falls in.
        out.push_sql(" THEN date_trunc('");
        out.push_sql(self.interval.sql());
        out.push_sql("', created_at, 'UTC') END AS bucket FROM contacts WHERE ");
        self.matches.walk_ast(out.reborrow())?;
        out.push_sql(") m GROUP BY GROUPING SETS ((), (channel), (chatbot_id), (bucket))");
        Ok(())
    }
}

impl QueryId for StatsQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for StatsQuery {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for StatsQuery {}

/// Every grouped row for the account's contacts matching `filter`; the growth rows count the
/// contacts created in `[from, to)` (`from` a bucket start), a NULL bucket the rest.
pub fn rows(
    conn: &mut PgConnection,
    account_id: i64,
    filter: &ContactFilter,
    interval: Interval,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> QueryResult<Vec<Row>> {
    StatsQuery {
        interval,
        from,
        to,
        matches: Matches::new(account_id, filter),
    }
    .load(conn)
}
