//! Contact analytics in one pass: totals, capture rates, returning contacts, sessions per
//! contact, and counts by channel, by chatbot and by creation bucket, through GROUPING SETS
//! over the contacts matching the list filters. Exact at the time of the query.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Date, Integer, Nullable, Text, Timestamptz, Untyped};

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

/// The same rows from the per-day rollups (`contact_daily_figures`: the folded rollups plus the
/// deltas not folded yet), when they can answer exactly:
/// the filter restricts at most channel, chatbot and a creation range on UTC day boundaries,
/// and the growth window ends on a day boundary (`to`) or is open (`None`: every contact created
/// since `from`; creation times are the database's clock, so none lies in the future). `None`
/// when the rollups cannot answer; the caller runs [`rows`] then.
pub fn rows_from_rollups(
    conn: &mut PgConnection,
    account_id: i64,
    filter: &ContactFilter,
    interval: Interval,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> QueryResult<Option<Vec<Row>>> {
    match rollup_query(account_id, filter, interval, from, to) {
        Some(q) => q.load(conn).map(Some),
        None => Ok(None),
    }
}

/// The statement the stats handler runs for these arguments, with its binds as
/// `debug_query` prints them (for the benchmark's pgbench side), and whether diesel keeps it
/// prepared.
pub fn debug_sql(
    account_id: i64,
    filter: &ContactFilter,
    interval: Interval,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> (String, bool) {
    match rollup_query(account_id, filter, interval, from, to) {
        Some(q) => (
            diesel::debug_query::<Pg, _>(&q).to_string(),
            super::fragments::cached(&q),
        ),
        None => {
            let q = StatsQuery {
                interval,
                from,
                to: to.unwrap_or_else(Utc::now),
                matches: Matches::new(account_id, filter),
            };
            (
                diesel::debug_query::<Pg, _>(&q).to_string(),
                super::fragments::cached(&q),
            )
        }
    }
}

fn rollup_query(
    account_id: i64,
    filter: &ContactFilter,
    interval: Interval,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> Option<RollupQuery> {
    let only_day_filters = filter.q.is_none()
        && filter.country_codes.is_none()
        && filter.last_seen_from.is_none()
        && filter.last_seen_to.is_none()
        && filter.has_email.is_none()
        && filter.has_phone.is_none()
        && filter.returning.is_none();
    let (Some(created_from), Some(created_to), Some(Some(from)), Some(to)) = (
        day_of(filter.created_from),
        day_of(filter.created_to),
        day_of(Some(from)),
        day_of(to),
    ) else {
        return None;
    };
    only_day_filters.then(|| RollupQuery {
        account_id,
        channels: filter.channels.clone(),
        chatbots: filter.chatbots.clone(),
        created_from,
        created_to,
        interval,
        from,
        to,
    })
}

/// `Some(None)` for no bound, `Some(Some(day))` for a bound at a UTC midnight, `None` for a
/// bound inside a day (which the rollups cannot split).
fn day_of(t: Option<DateTime<Utc>>) -> Option<Option<NaiveDate>> {
    match t {
        None => Some(None),
        Some(t) if t.time() == NaiveTime::MIN => Some(Some(t.date_naive())),
        Some(_) => None,
    }
}

struct RollupQuery {
    account_id: i64,
    channels: Option<Vec<String>>,
    chatbots: Option<Vec<String>>,
    created_from: Option<NaiveDate>,
    created_to: Option<NaiveDate>,
    interval: Interval,
    from: NaiveDate,
    to: Option<NaiveDate>,
}

impl QueryFragment<Pg> for RollupQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT GROUPING(channel, chatbot_id, bucket)::int AS grouping, channel, chatbot_id, bucket, \
            sum(total)::bigint AS total, sum(with_email)::bigint AS with_email, \
            sum(with_phone)::bigint AS with_phone, sum(with_email_or_phone)::bigint AS with_email_or_phone, \
            sum(complete)::bigint AS complete, sum(returning_contacts)::bigint AS returning, \
            sum(sessions)::bigint AS sessions \
            FROM (SELECT channel, chatbot_id, total, with_email, with_phone, with_email_or_phone, \
            complete, returning_contacts, sessions, CASE WHEN day >= ");
        out.push_bind_param::<Date, _>(&self.from)?;
        if let Some(to) = &self.to {
            out.push_sql(" AND day < ");
            out.push_bind_param::<Date, _>(to)?;
        }
        out.push_sql(" THEN date_trunc('");
        out.push_sql(self.interval.sql());
        out.push_sql("', day::timestamp) AT TIME ZONE 'UTC' END AS bucket FROM contact_daily_figures WHERE account_id = ");
        out.push_bind_param::<BigInt, _>(&self.account_id)?;
        if let Some(channels) = &self.channels {
            out.push_sql(" AND channel = ANY(");
            out.push_bind_param::<Array<Text>, _>(channels)?;
            out.push_sql(")");
        }
        if let Some(chatbots) = &self.chatbots {
            out.push_sql(" AND chatbot_id = ANY(");
            out.push_bind_param::<Array<Text>, _>(chatbots)?;
            out.push_sql(")");
        }
        if let Some(day) = &self.created_from {
            out.push_sql(" AND day >= ");
            out.push_bind_param::<Date, _>(day)?;
        }
        if let Some(day) = &self.created_to {
            out.push_sql(" AND day < ");
            out.push_bind_param::<Date, _>(day)?;
        }
        // A group whose contacts were all deleted sums to zero: it is not a channel or chatbot
        // of any contact any more.
        out.push_sql(") m GROUP BY GROUPING SETS ((), (channel), (chatbot_id), (bucket)) HAVING sum(total) <> 0");
        Ok(())
    }
}

impl QueryId for RollupQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for RollupQuery {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for RollupQuery {}
