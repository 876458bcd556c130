//! The batch session upsert: up to 500 items in one transaction. One statement first locks or
//! creates every session of the batch in key order (`CLAIM_SQL`); the items are then applied in
//! rounds of one multi-row statement each. A round holds at most one item per session, so
//! repeats of a session inside a batch apply in input order, exactly as if sent one after the
//! other.

use std::collections::HashSet;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};

use super::contacts::{upsert_session, SessionUpsert};
use super::fragments::{Bind, Prepared};
use crate::models::Contact;

/// The first step of a batch: every distinct session of the batch, in key order, is either
/// locked (it exists) or inserted with a new contact made from the first item naming it (it is
/// new), in ONE pass (`repo::locks` explains why one pass). `ON CONFLICT ... DO UPDATE ... WHERE
/// false` is what makes that pass: a conflicting row is locked, waiting for its inserter if it is
/// not committed yet, and left unchanged. The items arrive as arrays, `ord` being each one's
/// 1-based position; the statement returns the contacts it created with their `ord`.
///
/// Every row proposes a fresh id (`nextval`), also for a session that exists, whose id is then
/// not used: the snapshot's contact id would be wrong for a session that an erasure or delete
/// removed meanwhile (the insert then succeeds, and would bring back the deleted id, twice for
/// two sessions of one merged contact). An id of the 2^63 is cheaper than a second lookup.
pub const CLAIM_SQL: &str = r#"
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::jsonb[])
        WITH ORDINALITY AS i(chatbot_id, session_id, channel, name, email, phone, avatar_url,
                             country_code, ip_address, payload, ord)
), claimed AS (
    INSERT INTO contact_sessions AS s (account_id, chatbot_id, session_id, contact_id, channel, ip_address)
    SELECT $1, i.chatbot_id, i.session_id, nextval('contacts_id_seq'), i.channel, i.ip_address
    FROM input i
    ORDER BY i.chatbot_id, i.session_id
    ON CONFLICT (account_id, chatbot_id, session_id) DO UPDATE SET channel = s.channel WHERE false
    RETURNING s.chatbot_id, s.session_id, s.contact_id
), created AS (
    INSERT INTO contacts (account_id, id, name, email, phone, avatar_url, country_code,
                          ip_address, channel, chatbot_id, session_id, payload, sessions_count)
    SELECT $1, n.contact_id, i.name, i.email, i.phone, i.avatar_url, i.country_code,
           i.ip_address, i.channel, i.chatbot_id, i.session_id, COALESCE(i.payload, '{}'::jsonb), 1
    FROM claimed n
    JOIN input i ON i.chatbot_id = n.chatbot_id AND i.session_id = n.session_id
    RETURNING *
), audit AS (
    INSERT INTO audit_events (account_id, actor, action, contact_id, changed_fields)
    SELECT $1, $12, 'contact.created', id, '{}' FROM created
)
SELECT c.*, i.ord, true AS created
FROM created c
JOIN input i ON i.chatbot_id = c.chatbot_id AND i.session_id = c.session_id
"#;

/// The multi-row form of the session upsert (see `contacts::UPSERT_SQL`) for sessions that
/// exist and that this transaction already holds (`CLAIM_SQL` ran first): the items arrive as
/// arrays, `ord` is each item's 1-based position. Rows whose merged payload would break the
/// size limit (migration 000012's trigger, measured by the same function) are left out, their session untouched (and retried alone, to report them); so are
/// items that share a contact with another item of the round (a contact is updated once per
/// statement).
///
/// Every lookup by key is a `LATERAL` subquery per item that the planner cannot flatten
/// (`OFFSET 0`, `FOR UPDATE`): its only plan is a probe of the primary key with every key column
/// given, even in a generic plan, where `account_id = $1` is estimated at a handful of rows and
/// a join (or `= ANY ($array)`) made a bitmap scan of the whole account look cheaper (issue #14:
/// 500 items took 17 s in an account of 2,240 contacts). The updates are joined to those
/// results, which are estimated at one row each, and the redundant `= ANY (...)` conditions give
/// them a primary-key range too. The sessions' update names its rows by `ctid`, read by `found`
/// (a TID scan: no condition on the account that a scan of it could serve): the claim locked
/// them in an earlier statement, so the version this statement sees is the one to update and
/// no other transaction can replace it. The account is compared as `(SELECT $1::bigint)` for
/// the reason given at `contacts::UPSERT_SQL`.
///
/// `locked` locks, in id order, the contacts of every session named by `$13`/`$14` (the first
/// round passes all the batch's sessions, so every contact the batch may touch is locked by
/// one statement, in order, before any is updated; `repo::locks`). Its snapshot is younger than
/// the claim, so it sees the contact of a session another transaction created meanwhile. The
/// changed fields of the audit are named against those locked values: they hold a change
/// another transaction committed while this statement waited, as the update sees it (the
/// statement's snapshot would not, and the audit would then name that other change too).
pub const BATCH_UPSERT_SQL: &str = concat!(
    r#"
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::jsonb[])
        WITH ORDINALITY AS i(chatbot_id, session_id, channel, name, email, phone, avatar_url,
                             country_code, ip_address, payload, ord)
), found AS MATERIALIZED (
    SELECT i.ord, s.contact_id, s.ctid
    FROM input i
    CROSS JOIN LATERAL (
        SELECT s.contact_id, s.ctid FROM contact_sessions s
        WHERE s.account_id = (SELECT $1::bigint) AND s.chatbot_id = i.chatbot_id AND s.session_id = i.session_id
        OFFSET 0
    ) s
), locked AS MATERIALIZED (
    SELECT t.*
    FROM (
        SELECT DISTINCT s.contact_id
        FROM unnest($13::text[], $14::text[]) AS k(chatbot_id, session_id)
        CROSS JOIN LATERAL (
            SELECT s.contact_id FROM contact_sessions s
            WHERE s.account_id = (SELECT $1::bigint) AND s.chatbot_id = k.chatbot_id AND s.session_id = k.session_id
            OFFSET 0
        ) s
        ORDER BY s.contact_id
    ) k
    CROSS JOIN LATERAL (
        SELECT t.id, t.name, t.email, t.phone, t.avatar_url, t.country_code, t.ip_address, t.payload
        FROM contacts t
        WHERE t.account_id = (SELECT $1::bigint) AND t.id = k.contact_id
        FOR UPDATE
    ) t
), seen_session AS (
    UPDATE contact_sessions s
    SET channel = i.channel, ip_address = COALESCE(i.ip_address, s.ip_address),
        last_seen_at = GREATEST(s.last_seen_at, now())
    FROM input i
    JOIN found f ON f.ord = i.ord
    CROSS JOIN LATERAL (
        SELECT t.id, t.payload FROM contacts t
        WHERE t.account_id = (SELECT $1::bigint) AND t.id = f.contact_id
        OFFSET 0
    ) t
    WHERE s.ctid = ANY (ARRAY(SELECT ctid FROM found)) AND s.ctid = f.ctid
      AND t.id = ANY (ARRAY(SELECT contact_id FROM found))
      AND (i.payload IS NULL OR contacts_payload_bytes(t.payload || i.payload) <= 16384)
      -- Two sessions of one (merged) contact: the first in input order goes now, the other
      -- untouched to the next round. `UPDATE ... FROM` would apply whichever join row it met
      -- first, so a later item could land before an earlier one.
      AND NOT EXISTS (SELECT 1 FROM found e WHERE e.contact_id = f.contact_id AND e.ord < f.ord)
    RETURNING i.ord, s.contact_id
), updated AS (
    UPDATE contacts t
    SET name = COALESCE(i.name, t.name), email = COALESCE(i.email, t.email),
        phone = COALESCE(i.phone, t.phone), avatar_url = COALESCE(i.avatar_url, t.avatar_url),
        country_code = COALESCE(i.country_code, t.country_code),
        ip_address = COALESCE(i.ip_address, t.ip_address),
        channel = i.channel, chatbot_id = i.chatbot_id, session_id = i.session_id,
        payload = t.payload || COALESCE(i.payload, '{}'::jsonb),
        last_seen_at = GREATEST(t.last_seen_at, now()),
        updated_at = GREATEST(t.updated_at, now()),
        version = t.version + 1
    FROM seen_session s
    JOIN input i ON i.ord = s.ord
    WHERE t.account_id = (SELECT $1::bigint) AND t.id = s.contact_id
      AND t.id = ANY (ARRAY(SELECT id FROM locked))
      AND (i.payload IS NULL OR contacts_payload_bytes(t.payload || i.payload) <= 16384)
    RETURNING t.*, i.ord
), before AS (
    SELECT f.ord, l.name, l.email, l.phone, l.avatar_url, l.country_code, l.ip_address, l.payload
    FROM found f
    JOIN locked l ON l.id = f.contact_id
), audit AS (
    INSERT INTO audit_events (account_id, actor, action, contact_id, changed_fields)
    SELECT $1, $12, 'contact.updated', u.id, f.fields
    FROM updated u
    JOIN before b ON b.ord = u.ord
"#,
    super::contacts::changed_fields_sql!(),
    r#"    WHERE cardinality(f.fields) > 0
)
SELECT u.*, false AS created FROM updated u
"#
);

#[derive(QueryableByName)]
struct BatchRow {
    #[diesel(embed)]
    contact: Contact,
    #[diesel(sql_type = BigInt)]
    ord: i64,
    #[diesel(sql_type = Bool)]
    created: bool,
}

/// The outcome of one item: its contact and whether it was created, or a database error that
/// concerns this item only (e.g. its merged payload is too large).
pub type ItemResult = Result<(Contact, bool), diesel::result::Error>;

/// The column arrays of `items`, as `$2` to `$11` of `CLAIM_SQL` and `BATCH_UPSERT_SQL`.
struct Columns {
    text: [Vec<Option<String>>; 9],
    payloads: Vec<Option<serde_json::Value>>,
}

impl Columns {
    fn of(items: &[&SessionUpsert]) -> Self {
        let col = |f: fn(&SessionUpsert) -> Option<String>| -> Vec<Option<String>> {
            items.iter().map(|u| f(u)).collect()
        };
        Self {
            text: [
                col(|u| Some(u.chatbot_id.clone())),
                col(|u| Some(u.session_id.clone())),
                col(|u| Some(u.channel.clone())),
                col(|u| u.name.clone()),
                col(|u| u.email.clone()),
                col(|u| u.phone.clone()),
                col(|u| u.avatar_url.clone()),
                col(|u| u.country_code.clone()),
                col(|u| u.ip_address.clone()),
            ],
            payloads: items.iter().map(|u| u.payload.clone()).collect(),
        }
    }

    /// `$1` to `$12`: the account, the columns, the actor.
    fn binds<'a>(&'a self, account_id: i64, actor: &'a str) -> Vec<Bind<'a>> {
        let mut binds = vec![Bind::Int8(account_id)];
        binds.extend(self.text.iter().map(|c| Bind::TextArray(c)));
        binds.push(Bind::JsonbArray(&self.payloads));
        binds.push(Bind::Text(actor));
        binds
    }
}

/// Runs `CLAIM_SQL` for `firsts` (the first item of each distinct session); returns the
/// contacts it created by position in `firsts`.
fn claim(
    conn: &mut PgConnection,
    account_id: i64,
    firsts: &[&SessionUpsert],
    actor: &str,
) -> QueryResult<Vec<Option<Contact>>> {
    let columns = Columns::of(firsts);
    let rows: Vec<BatchRow> = Prepared {
        sql: CLAIM_SQL,
        binds: &columns.binds(account_id, actor),
    }
    .load(conn)?;
    let mut out: Vec<Option<Contact>> = vec![None; firsts.len()];
    for r in rows {
        out[(r.ord - 1) as usize] = Some(r.contact);
    }
    Ok(out)
}

/// Runs one round (items with distinct sessions, all of them claimed) as one statement, locking
/// first the contacts of the sessions `lock` names; returns the results by position in `round`,
/// `None` for items the statement left out.
fn run_round(
    conn: &mut PgConnection,
    account_id: i64,
    round: &[&SessionUpsert],
    lock: &[&SessionUpsert],
    actor: &str,
) -> QueryResult<Vec<Option<(Contact, bool)>>> {
    let columns = Columns::of(round);
    let lock_chatbots: Vec<Option<String>> =
        lock.iter().map(|u| Some(u.chatbot_id.clone())).collect();
    let lock_sessions: Vec<Option<String>> =
        lock.iter().map(|u| Some(u.session_id.clone())).collect();
    let mut binds = columns.binds(account_id, actor);
    binds.push(Bind::TextArray(&lock_chatbots));
    binds.push(Bind::TextArray(&lock_sessions));
    let rows: Vec<BatchRow> = Prepared {
        sql: BATCH_UPSERT_SQL,
        binds: &binds,
    }
    .load(conn)?;
    let mut out: Vec<Option<(Contact, bool)>> = vec![None; round.len()];
    for r in rows {
        out[(r.ord - 1) as usize] = Some((r.contact, r.created));
    }
    Ok(out)
}

/// From this many items on, a batch has the stats triggers count its rows once per statement
/// (`SET LOCAL contacts.stats_by_statement`, migration 000007) instead of once per row: a
/// statement trigger costs more to start than a row trigger, and less for many rows.
pub const STATEMENT_STATS_MIN: usize = 32;

/// Applies `items` in input order semantics; call inside a transaction. Each item gets its own
/// result; a database error of one item (raised when it is retried alone, inside a savepoint)
/// does not undo the others.
pub fn upsert_batch(
    conn: &mut PgConnection,
    account_id: i64,
    items: &[SessionUpsert],
    actor: &str,
) -> QueryResult<Vec<ItemResult>> {
    if items.len() >= STATEMENT_STATS_MIN {
        conn.batch_execute("SET LOCAL contacts.stats_by_statement = on")?;
    }
    let mut results: Vec<Option<ItemResult>> = (0..items.len()).map(|_| None).collect();
    // Every session of the batch, locked or created before anything else (`repo::locks`): a
    // later round then never waits for a session, so the order of the rounds cannot matter.
    let mut seen = HashSet::new();
    let firsts: Vec<usize> = (0..items.len())
        .filter(|&i| seen.insert((&items[i].chatbot_id, &items[i].session_id)))
        .collect();
    let first_items: Vec<&SessionUpsert> = firsts.iter().map(|&i| &items[i]).collect();
    for (k, created) in claim(conn, account_id, &first_items, actor)?
        .into_iter()
        .enumerate()
    {
        if let Some(contact) = created {
            results[firsts[k]] = Some(Ok((contact, true)));
        }
    }
    // The first round locks the contacts of every session of the batch, in id order.
    let mut lock: Vec<&SessionUpsert> = first_items;
    let mut attempts = vec![0u8; items.len()];
    loop {
        // The first pending item of each session, in input order.
        let mut seen = HashSet::new();
        let round: Vec<usize> = (0..items.len())
            .filter(|&i| results[i].is_none())
            .filter(|&i| seen.insert((&items[i].chatbot_id, &items[i].session_id)))
            .collect();
        if round.is_empty() {
            break;
        }
        // An item left out twice (payload limit, a contact shared with another item) runs
        // alone in a savepoint: it then either succeeds or fails with its own error.
        let (alone, together): (Vec<usize>, Vec<usize>) =
            round.into_iter().partition(|&i| attempts[i] >= 2);
        for i in alone {
            let r = conn.transaction(|c| upsert_session(c, account_id, &items[i], actor));
            results[i] = Some(r);
        }
        if together.is_empty() {
            continue;
        }
        let refs: Vec<&SessionUpsert> = together.iter().map(|&i| &items[i]).collect();
        let rows = run_round(conn, account_id, &refs, &lock, actor)?;
        // Later rounds hold every contact already; they lock only what they update.
        lock = refs;
        for (k, r) in rows.into_iter().enumerate() {
            let i = together[k];
            attempts[i] += 1;
            if let Some(ok) = r {
                results[i] = Some(Ok(ok));
            }
        }
    }
    let mut results: Vec<ItemResult> = results
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect();
    // Consent statements, in input order, in the same transaction.
    for (i, item) in items.iter().enumerate() {
        let (Some(consent), Ok((contact, created))) = (&item.consent, &results[i]) else {
            continue;
        };
        let created = *created;
        if let Some(updated) = super::consent::apply(conn, contact, consent, actor)? {
            results[i] = Ok((updated, created));
        }
    }
    Ok(results)
}
