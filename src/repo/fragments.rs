//! Hand-written SQL fragments with fixed text, so that diesel can cache the statements they
//! appear in (`sql()` literals make a statement uncacheable: re-parsed and re-planned on every
//! call). `Prepared` runs a whole static statement; `Keyset` and `NameKey` serve the list.

use diesel::expression::{is_aggregate, AppearsOnTable, Expression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz, Untyped};
use diesel::{QueryResult, RunQueryDsl};

use crate::schema::contacts;

/// A bind value of a `Prepared` statement.
#[derive(Debug, Clone, Copy)]
pub enum Bind<'a> {
    /// `bigint`.
    Int8(i64),
    /// `text`.
    Text(&'a str),
    /// `text`, possibly null.
    OptText(Option<&'a str>),
    /// `jsonb`.
    Jsonb(&'a serde_json::Value),
    /// `jsonb`, possibly null.
    OptJsonb(Option<&'a serde_json::Value>),
    /// `text[]` with nullable elements.
    TextArray(&'a [Option<String>]),
    /// `jsonb[]` with nullable elements.
    JsonbArray(&'a [Option<serde_json::Value>]),
    /// `bigint[]`.
    Int8Array(&'a [i64]),
}

/// A static SQL statement whose `$n` refer to `binds[n - 1]`; a bind may be used several times.
/// Its text never changes, so diesel prepares it once per connection.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'a> {
    /// The statement.
    pub sql: &'static str,
    /// Its parameters.
    pub binds: &'a [Bind<'a>],
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest = self.sql;
        while let Some(i) = rest.find('$') {
            out.push_sql(&rest[..i]);
            let digits = rest[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
            let n: usize = rest[i + 1..i + 1 + digits]
                .parse()
                .expect("static SQL uses $<n> placeholders");
            match &self.binds[n - 1] {
                Bind::Int8(v) => out.push_bind_param::<BigInt, _>(v)?,
                Bind::Text(v) => out.push_bind_param::<Text, _>(v)?,
                Bind::OptText(v) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                Bind::Jsonb(v) => out.push_bind_param::<Jsonb, _>(*v)?,
                Bind::OptJsonb(v) => out.push_bind_param::<Nullable<Jsonb>, _>(v)?,
                Bind::TextArray(v) => out.push_bind_param::<Array<Nullable<Text>>, _>(v)?,
                Bind::JsonbArray(v) => out.push_bind_param::<Array<Nullable<Jsonb>>, _>(v)?,
                Bind::Int8Array(v) => out.push_bind_param::<Array<BigInt>, _>(v)?,
            }
            rest = &rest[i + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Prepared<'_> {}

/// Whether diesel keeps `query` as a prepared statement per connection (else it is sent
/// unnamed and planned on every execution); the benchmark runs pgbench in the same mode.
pub fn cached<Q: QueryFragment<Pg>>(query: &Q) -> bool {
    query.is_safe_to_cache_prepared(&Pg).unwrap_or(false)
}

/// The name sort key; identical to the `contacts_name_idx` expression.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct NameKey;

impl QueryFragment<Pg> for NameKey {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(super::list::NAME_KEY);
        Ok(())
    }
}

impl Expression for NameKey {
    type SqlType = Text;
}

impl AppearsOnTable<contacts::table> for NameKey {}

impl ValidGrouping<()> for NameKey {
    type IsAggregate = is_aggregate::Never;
}

/// `(key, id) > (last key, last id)` (or `<` when descending): a row comparison that the
/// `(account_id, key, id)` indexes answer as a range scan.
#[derive(Debug, Clone)]
pub enum Keyset {
    /// A timestamp column of `contacts` (`created_at`).
    Time {
        /// Column name.
        column: &'static str,
        /// Descending order.
        desc: bool,
        /// Key of the last row.
        at: chrono::DateTime<chrono::Utc>,
        /// Id of the last row.
        id: i64,
    },
    /// The name key, computed in SQL from the last row's raw name.
    Name {
        /// Descending order.
        desc: bool,
        /// Name of the last row.
        name: Option<String>,
        /// Id of the last row.
        id: i64,
    },
}

impl QueryFragment<Pg> for Keyset {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let op = |desc: bool| if desc { " < " } else { " > " };
        match self {
            Keyset::Time {
                column,
                desc,
                at,
                id,
            } => {
                out.push_sql("(");
                out.push_sql(column);
                out.push_sql(", id)");
                out.push_sql(op(*desc));
                out.push_sql("(");
                out.push_bind_param::<Timestamptz, _>(at)?;
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(id)?;
                out.push_sql(")");
            }
            Keyset::Name { desc, name, id } => {
                out.push_sql("(");
                out.push_sql(super::list::NAME_KEY);
                out.push_sql(", id)");
                out.push_sql(op(*desc));
                out.push_sql("((COALESCE(lower(");
                out.push_bind_param::<Nullable<Text>, _>(name)?;
                out.push_sql("), chr(1114111)) COLLATE \"C\"), ");
                out.push_bind_param::<BigInt, _>(id)?;
                out.push_sql(")");
            }
        }
        Ok(())
    }
}

impl QueryId for Keyset {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Expression for Keyset {
    type SqlType = Bool;
}

impl AppearsOnTable<contacts::table> for Keyset {}

impl ValidGrouping<()> for Keyset {
    type IsAggregate = is_aggregate::Never;
}

/// The contact filter as one WHERE condition: the account, then every condition the filter
/// sets. The list, its count, the export, bulk delete and the stats all select through it, so
/// "matching contacts" means the same everywhere.
#[derive(Debug, Clone)]
pub struct Matches {
    account_id: i64,
    filter: super::list::ContactFilter,
    /// `q` as a LIKE pattern, and the id it may name.
    search: Option<(String, Option<i64>)>,
    /// Whether a `last_seen_from/to` range also goes through `contact_activity`'s index.
    activity_range: bool,
}

impl Matches {
    /// The condition for `account_id` and `filter`.
    pub fn new(account_id: i64, filter: &super::list::ContactFilter) -> Self {
        let search = filter.q.as_ref().map(|text| {
            // Only plain digits name an id: `+4477` is a phone search, not contact 4477.
            let id = text
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<i64>().ok())
                .flatten();
            (super::list::like_pattern(text), id)
        });
        Self {
            account_id,
            filter: filter.clone(),
            search,
            activity_range: true,
        }
    }

    /// The same condition for a query that walks `contact_activity` itself and applies the
    /// range there (`activity::LastSeenPage`).
    pub fn on_contact_only(mut self) -> Self {
        self.activity_range = false;
        self
    }

    /// The filter.
    pub fn filter(&self) -> &super::list::ContactFilter {
        &self.filter
    }
}

impl QueryFragment<Pg> for Matches {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let f = &self.filter;
        if f.narrows() {
            // Planned per request, never cached: the best plan depends on the values. A cached
            // statement becomes a generic plan once PostgreSQL rates it no dearer than the
            // custom ones, and for a filtered page at depth (channel + created range + has_email,
            // 1M contacts) that plan walked the created_at index and sorted: 567 ms against
            // 0.4 ms for the custom plan's backward walk of the primary key. It happened in a
            // benchmark run, after an ANALYZE. A page of the whole account has one good plan
            // whatever the values (its sort's index) and stays cached.
            out.unsafe_to_cache_prepared();
        }
        out.push_sql("(account_id = ");
        out.push_bind_param::<BigInt, _>(&self.account_id)?;
        for (column, values) in [
            ("channel", &f.channels),
            ("chatbot_id", &f.chatbots),
            ("country_code", &f.country_codes),
        ] {
            match values.as_deref() {
                // One value is an equality: PostgreSQL 15 reads an index in order only for
                // `=` on its leading columns, not for `= ANY(array)`, so the single-channel
                // page walks `contacts_channel_idx` (account_id, channel, id) in id order.
                Some([one]) => {
                    out.push_sql(" AND ");
                    out.push_sql(column);
                    out.push_sql(" = ");
                    out.push_bind_param::<Text, _>(one)?;
                }
                Some(v) => {
                    out.push_sql(" AND ");
                    out.push_sql(column);
                    out.push_sql(" = ANY(");
                    out.push_bind_param::<Array<Text>, _>(v)?;
                    out.push_sql(")");
                }
                None => {}
            }
        }
        for (sql, value) in [
            (" AND created_at >= ", &f.created_from),
            (" AND created_at < ", &f.created_to),
            (" AND last_seen_at >= ", &f.last_seen_from),
            (" AND last_seen_at < ", &f.last_seen_to),
        ] {
            if let Some(t) = value {
                out.push_sql(sql);
                out.push_bind_param::<Timestamptz, _>(t)?;
            }
        }
        if self.activity_range && (f.last_seen_from.is_some() || f.last_seen_to.is_some()) {
            // `contacts` has no index on last_seen_at (migration 000009): the same range as a
            // semi-join lets the planner start from `contact_activity_last_seen_idx` when the
            // range is narrow ("seen in the last hour"), instead of filtering the whole account.
            out.push_sql(" AND id IN (SELECT contact_id FROM contact_activity WHERE account_id = ");
            out.push_bind_param::<BigInt, _>(&self.account_id)?;
            last_seen_range(out.reborrow(), "last_seen_at", f)?;
            out.push_sql(")");
        }
        for (flag, yes, no) in [
            (f.has_email, " AND email IS NOT NULL", " AND email IS NULL"),
            (f.has_phone, " AND phone IS NOT NULL", " AND phone IS NULL"),
            (
                f.returning,
                " AND sessions_count > 1",
                " AND sessions_count <= 1",
            ),
        ] {
            match flag {
                Some(true) => out.push_sql(yes),
                Some(false) => out.push_sql(no),
                None => {}
            }
        }
        if let Some((pattern, id)) = &self.search {
            // (Uncached, as every narrowing filter: a walk of the id index suits a common term,
            // the trigram index a rare one.)
            out.push_sql(" AND (");
            out.push_sql(super::list::SEARCH_TEXT);
            out.push_sql(" ILIKE ");
            out.push_bind_param::<Text, _>(pattern)?;
            out.push_sql(" ESCAPE '\\'");
            if let Some(id) = id {
                out.push_sql(" OR id = ");
                out.push_bind_param::<BigInt, _>(id)?;
            }
            out.push_sql(")");
        }
        out.push_sql(")");
        Ok(())
    }
}

/// ` AND <column> >= last_seen_from AND <column> < last_seen_to`, for the bounds `f` sets.
pub fn last_seen_range<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    column: &'static str,
    f: &'b super::list::ContactFilter,
) -> QueryResult<()> {
    for (op, value) in [(" >= ", &f.last_seen_from), (" < ", &f.last_seen_to)] {
        if let Some(t) = value {
            out.push_sql(" AND ");
            out.push_sql(column);
            out.push_sql(op);
            out.push_bind_param::<Timestamptz, _>(t)?;
        }
    }
    Ok(())
}

impl QueryId for Matches {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Expression for Matches {
    type SqlType = Bool;
}

impl AppearsOnTable<contacts::table> for Matches {}

impl ValidGrouping<()> for Matches {
    type IsAggregate = is_aggregate::Never;
}
