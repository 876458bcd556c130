//! The contact list: filters, sorts and keyset positions shared by list, count and export.
//! Every query starts from `account_id = $1`; every sort has an index that ends with `id`.

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::activity::LastSeenPage;
use super::fragments::{Keyset, Matches, NameKey};
use serde::{Deserialize, Serialize};

use crate::models::Contact;
use crate::schema::contacts::{self, dsl as c};

diesel::define_sql_function! {
    /// SQL `lower(text)`.
    fn lower(x: diesel::sql_types::Nullable<Text>) -> diesel::sql_types::Nullable<Text>;
}

/// Name sort key; identical to the expression of the `contacts_name_idx` index.
pub const NAME_KEY: &str = r#"(COALESCE(lower(name), chr(1114111)) COLLATE "C")"#;

/// Searchable text; identical to the expression of the `contacts_search_idx` index.
pub const SEARCH_TEXT: &str =
    r#"(COALESCE(name, '') || E'\n' || COALESCE(email, '') || E'\n' || COALESCE(phone, ''))"#;

/// Which contacts: every `None` is "no condition".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContactFilter {
    /// Case-insensitive substring of name, email or phone (an integer also matches the id).
    pub q: Option<String>,
    /// Any of these channels.
    pub channels: Option<Vec<String>>,
    /// Any of these chatbots.
    pub chatbots: Option<Vec<String>>,
    /// Any of these countries.
    pub country_codes: Option<Vec<String>>,
    /// `created_at >= created_from`.
    pub created_from: Option<DateTime<Utc>>,
    /// `created_at < created_to`.
    pub created_to: Option<DateTime<Utc>>,
    /// `last_seen_at >= last_seen_from`.
    pub last_seen_from: Option<DateTime<Utc>>,
    /// `last_seen_at < last_seen_to`.
    pub last_seen_to: Option<DateTime<Utc>>,
    /// Has (true) or lacks (false) an email.
    pub has_email: Option<bool>,
    /// Has (true) or lacks (false) a phone.
    pub has_phone: Option<bool>,
    /// More than one session (true) or exactly one or none (false).
    pub returning: Option<bool>,
}

impl ContactFilter {
    /// Whether any condition beyond the account is set: then the rows that match, and so the
    /// best plan, depend on the values.
    pub fn narrows(&self) -> bool {
        *self != Self::default()
    }
}

/// List order; every order ends with `id` in the same direction, so it is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sort {
    /// `-id` (default): newest first.
    IdDesc,
    /// `id`.
    IdAsc,
    /// `created_at`.
    CreatedAsc,
    /// `-created_at`.
    CreatedDesc,
    /// `last_seen_at`.
    LastSeenAsc,
    /// `-last_seen_at`.
    LastSeenDesc,
    /// `name` (case-insensitive, no name last).
    NameAsc,
    /// `-name` (the exact reverse of `name`).
    NameDesc,
}

impl Sort {
    /// Every accepted `sort` value and its order.
    pub const ALL: [(&'static str, Sort); 8] = [
        ("-id", Sort::IdDesc),
        ("id", Sort::IdAsc),
        ("created_at", Sort::CreatedAsc),
        ("-created_at", Sort::CreatedDesc),
        ("last_seen_at", Sort::LastSeenAsc),
        ("-last_seen_at", Sort::LastSeenDesc),
        ("name", Sort::NameAsc),
        ("-name", Sort::NameDesc),
    ];

    /// Parses a `sort` parameter.
    pub fn parse(s: &str) -> Option<Sort> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
    }

    fn descending(self) -> bool {
        matches!(
            self,
            Sort::IdDesc | Sort::CreatedDesc | Sort::LastSeenDesc | Sort::NameDesc
        )
    }

    /// The keyset position of `contact` in this order.
    pub fn position(self, contact: &Contact) -> Position {
        let key = match self {
            Sort::IdDesc | Sort::IdAsc => Key::Id,
            Sort::CreatedAsc | Sort::CreatedDesc => Key::Time(contact.created_at),
            Sort::LastSeenAsc | Sort::LastSeenDesc => Key::Time(contact.last_seen_at),
            Sort::NameAsc | Sort::NameDesc => Key::Name(contact.name.clone()),
        };
        Position {
            key,
            id: contact.id,
        }
    }
}

/// The sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    /// Id orders: the id is the key.
    Id,
    /// Time orders.
    Time(DateTime<Utc>),
    /// Name orders: the raw name, keyed in SQL by the same expression as the index, so the
    /// database's own `lower()` decides (it depends on the database's ctype).
    Name(Option<String>),
}

impl Position {
    /// True when this position was taken in `sort`'s order.
    pub fn fits(&self, sort: Sort) -> bool {
        matches!(
            (sort, &self.key),
            (Sort::IdDesc | Sort::IdAsc, Key::Id)
                | (
                    Sort::CreatedAsc | Sort::CreatedDesc | Sort::LastSeenAsc | Sort::LastSeenDesc,
                    Key::Time(_)
                )
                | (Sort::NameAsc | Sort::NameDesc, Key::Name(_))
        )
    }
}

/// Where the next page starts (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Sort key of the last row.
    pub key: Key,
    /// Id of the last row.
    pub id: i64,
}

/// Escapes LIKE wildcards so `q` is matched literally.
pub fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for ch in q.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// Applies the account and `f` to a boxed query of any selection.
pub fn filtered<'a, ST: 'a>(
    q: contacts::BoxedQuery<'a, Pg, ST>,
    account_id: i64,
    f: &ContactFilter,
) -> contacts::BoxedQuery<'a, Pg, ST> {
    q.filter(Matches::new(account_id, f))
}

/// Orders a boxed query and starts it after `after`.
fn ordered<'a, ST: 'a>(
    mut q: contacts::BoxedQuery<'a, Pg, ST>,
    sort: Sort,
    after: Option<&Position>,
) -> contacts::BoxedQuery<'a, Pg, ST> {
    if let Some(p) = after {
        let desc = sort.descending();
        q = match (sort, &p.key) {
            (Sort::IdDesc, _) => q.filter(c::id.lt(p.id)),
            (Sort::IdAsc, _) => q.filter(c::id.gt(p.id)),
            (Sort::CreatedAsc | Sort::CreatedDesc, Key::Time(t)) => q.filter(Keyset::Time {
                column: "created_at",
                desc,
                at: *t,
                id: p.id,
            }),
            (Sort::NameAsc | Sort::NameDesc, Key::Name(name)) => q.filter(Keyset::Name {
                desc,
                name: name.clone(),
                id: p.id,
            }),
            // A position of another order matches nothing; handlers refuse such cursors first.
            _ => q.filter(c::id.ne(c::id)),
        };
    }
    match sort {
        Sort::IdDesc => q.order(c::id.desc()),
        Sort::IdAsc => q.order(c::id.asc()),
        Sort::CreatedAsc => q.order((c::created_at.asc(), c::id.asc())),
        Sort::CreatedDesc => q.order((c::created_at.desc(), c::id.desc())),
        // (Served by `last_seen_page`; this order has no index on `contacts`.)
        Sort::LastSeenAsc => q.order((c::last_seen_at.asc(), c::id.asc())),
        Sort::LastSeenDesc => q.order((c::last_seen_at.desc(), c::id.desc())),
        Sort::NameAsc => q.order((NameKey.asc(), c::id.asc())),
        Sort::NameDesc => q.order((NameKey.desc(), c::id.desc())),
    }
}

/// The "last seen" orders walk `contact_activity` (`activity::LastSeenPage`); `None` for the
/// others.
fn last_seen_page(
    account_id: i64,
    filter: &ContactFilter,
    sort: Sort,
    after: Option<&Position>,
    limit: i64,
    offset: i64,
) -> Option<LastSeenPage> {
    if !matches!(sort, Sort::LastSeenAsc | Sort::LastSeenDesc) {
        return None;
    }
    let (after, limit) = match after.map(|p| (&p.key, p.id)) {
        None => (None, limit),
        Some((Key::Time(t), id)) => (Some((*t, id)), limit),
        // A position of another order matches nothing; handlers refuse such cursors first.
        Some(_) => (None, 0),
    };
    Some(LastSeenPage {
        matches: Matches::new(account_id, filter).on_contact_only(),
        account_id,
        desc: sort.descending(),
        after,
        limit,
        offset,
    })
}

/// One page (up to `limit` rows) of matching contacts in `sort` order after `after`.
pub fn page(
    conn: &mut PgConnection,
    account_id: i64,
    filter: &ContactFilter,
    sort: Sort,
    after: Option<&Position>,
    limit: i64,
) -> QueryResult<Vec<Contact>> {
    if let Some(q) = last_seen_page(account_id, filter, sort, after, limit, 0) {
        return q.load(conn);
    }
    let q = filtered(
        c::contacts.select(Contact::as_select()).into_boxed(),
        account_id,
        filter,
    );
    ordered(q, sort, after).limit(limit).load(conn)
}

/// How many contacts match.
pub fn count(conn: &mut PgConnection, account_id: i64, filter: &ContactFilter) -> QueryResult<i64> {
    filtered(
        c::contacts.select(count_star()).into_boxed(),
        account_id,
        filter,
    )
    .get_result(conn)
}

/// The SQL of a page, for benchmarks and `EXPLAIN` (binds rendered as `$n`), and whether
/// diesel keeps it prepared.
pub fn page_sql(
    account_id: i64,
    filter: &ContactFilter,
    sort: Sort,
    after: Option<&Position>,
    limit: i64,
) -> (String, bool) {
    if let Some(q) = last_seen_page(account_id, filter, sort, after, limit, 0) {
        return (
            diesel::debug_query::<Pg, _>(&q).to_string(),
            super::fragments::cached(&q),
        );
    }
    let q = filtered(
        c::contacts.select(Contact::as_select()).into_boxed(),
        account_id,
        filter,
    );
    let q = ordered(q, sort, after).limit(limit);
    (
        diesel::debug_query::<Pg, _>(&q).to_string(),
        super::fragments::cached(&q),
    )
}

/// The `n`-th matching contact in `sort` order (an OFFSET scan: for benchmarks and tools,
/// never for requests).
pub fn nth(
    conn: &mut PgConnection,
    account_id: i64,
    filter: &ContactFilter,
    sort: Sort,
    n: i64,
) -> QueryResult<Option<Contact>> {
    if let Some(q) = last_seen_page(account_id, filter, sort, None, 1, n) {
        return Ok(q.load(conn)?.pop());
    }
    let q = filtered(
        c::contacts.select(Contact::as_select()).into_boxed(),
        account_id,
        filter,
    );
    ordered(q, sort, None)
        .offset(n)
        .limit(1)
        .first(conn)
        .optional()
}
