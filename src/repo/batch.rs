//! The batch session upsert: up to 500 items in one transaction, applied in rounds of one
//! multi-row statement each. A round holds at most one item per session, so repeats of a
//! session inside a batch apply in input order, exactly as if sent one after the other.

use std::collections::HashSet;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};

use super::contacts::{upsert_session, SessionUpsert};
use super::fragments::{Bind, Prepared};
use crate::models::Contact;

/// The multi-row form of the session upsert (see `contacts::UPSERT_SQL`): the items arrive as
/// arrays, `ord` is each item's 1-based position. Rows whose merged payload would break the
/// size limit (migration 000012's trigger, measured by the same function) are left out, their session untouched (and retried alone, to report them); so are
/// items that share a contact with another item of the round (a contact is updated once per
/// statement).
///
/// The redundant `= ANY (...)` conditions give every lookup a primary-key range whatever join
/// order the planner picks, so stale statistics (a young account that just grew) cannot turn a
/// lookup into a scan of the whole account; the account is compared as `(SELECT $1::bigint)`
/// for the reason given at `contacts::UPSERT_SQL`.
///
/// The existing sessions are locked first, in key order: concurrent batches naming the same
/// sessions in different orders then queue behind each other instead of deadlocking (an
/// `UPDATE ... FROM` locks rows in whatever order its join produces them). A contact is only
/// updated through a session this statement holds. The contacts to update are then locked in id
/// order (`locked`), and the changed fields of the audit are named against those locked values:
/// they hold a change another transaction committed while this statement waited, as the update
/// sees it (the statement's snapshot would not, and the audit would then name that other change
/// too).
pub const BATCH_UPSERT_SQL: &str = concat!(
    r#"
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::jsonb[])
        WITH ORDINALITY AS i(chatbot_id, session_id, channel, name, email, phone, avatar_url,
                             country_code, ip_address, payload, ord)
), found AS MATERIALIZED (
    SELECT i.ord, s.contact_id
    FROM input i
    JOIN contact_sessions s
      ON s.account_id = (SELECT $1::bigint) AND s.chatbot_id = i.chatbot_id AND s.session_id = i.session_id
    WHERE s.chatbot_id = ANY ($2::text[]) AND s.session_id = ANY ($3::text[])
    ORDER BY s.chatbot_id, s.session_id
    FOR UPDATE OF s
), new_session AS (
    INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel, ip_address)
    SELECT $1, i.chatbot_id, i.session_id, nextval('contacts_id_seq'), i.channel, i.ip_address
    FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.ord = i.ord)
    ORDER BY i.chatbot_id, i.session_id
    ON CONFLICT (account_id, chatbot_id, session_id) DO NOTHING
    RETURNING chatbot_id, session_id, contact_id
), seen_session AS (
    UPDATE contact_sessions s
    SET channel = i.channel, ip_address = COALESCE(i.ip_address, s.ip_address),
        last_seen_at = GREATEST(s.last_seen_at, now())
    FROM input i
    JOIN found f ON f.ord = i.ord
    JOIN contacts t ON t.account_id = (SELECT $1::bigint) AND t.id = f.contact_id
    WHERE s.account_id = (SELECT $1::bigint) AND s.chatbot_id = i.chatbot_id AND s.session_id = i.session_id
      AND s.chatbot_id = ANY ($2::text[]) AND s.session_id = ANY ($3::text[])
      AND t.id = ANY (ARRAY(SELECT contact_id FROM found))
      AND (i.payload IS NULL OR contacts_payload_bytes(t.payload || i.payload) <= 16384)
    RETURNING i.ord, s.contact_id
), created AS (
    INSERT INTO contacts (account_id, id, name, email, phone, avatar_url, country_code,
                          ip_address, channel, chatbot_id, session_id, payload, sessions_count)
    SELECT $1, n.contact_id, i.name, i.email, i.phone, i.avatar_url, i.country_code,
           i.ip_address, i.channel, i.chatbot_id, i.session_id, COALESCE(i.payload, '{}'::jsonb), 1
    FROM new_session n
    JOIN input i ON i.chatbot_id = n.chatbot_id AND i.session_id = n.session_id
    RETURNING *
), locked AS MATERIALIZED (
    SELECT t.id, t.name, t.email, t.phone, t.avatar_url, t.country_code, t.ip_address, t.payload
    FROM contacts t
    WHERE t.account_id = (SELECT $1::bigint) AND t.id = ANY (ARRAY(SELECT contact_id FROM seen_session))
    ORDER BY t.id
    FOR UPDATE
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
    SELECT $1, $12, 'contact.created', id, '{}' FROM created
    UNION ALL
    SELECT $1, $12, 'contact.updated', u.id, f.fields
    FROM updated u
    JOIN before b ON b.ord = u.ord
"#,
    super::contacts::changed_fields_sql!(),
    r#"    WHERE cardinality(f.fields) > 0
)
SELECT c.*, i.ord, true AS created
FROM created c
JOIN input i ON i.chatbot_id = c.chatbot_id AND i.session_id = c.session_id
UNION ALL
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

/// Runs one round (items with distinct sessions) as one statement; returns the results by
/// position in `round`, `None` for items the statement left out.
fn run_round(
    conn: &mut PgConnection,
    account_id: i64,
    round: &[&SessionUpsert],
    actor: &str,
) -> QueryResult<Vec<Option<(Contact, bool)>>> {
    let col = |f: fn(&SessionUpsert) -> Option<String>| -> Vec<Option<String>> {
        round.iter().map(|u| f(u)).collect()
    };
    let chatbots: Vec<Option<String>> = col(|u| Some(u.chatbot_id.clone()));
    let sessions = col(|u| Some(u.session_id.clone()));
    let channels = col(|u| Some(u.channel.clone()));
    let names = col(|u| u.name.clone());
    let emails = col(|u| u.email.clone());
    let phones = col(|u| u.phone.clone());
    let avatars = col(|u| u.avatar_url.clone());
    let countries = col(|u| u.country_code.clone());
    let ips = col(|u| u.ip_address.clone());
    let payloads: Vec<Option<serde_json::Value>> =
        round.iter().map(|u| u.payload.clone()).collect();
    let binds = [
        Bind::Int8(account_id),
        Bind::TextArray(&chatbots),
        Bind::TextArray(&sessions),
        Bind::TextArray(&channels),
        Bind::TextArray(&names),
        Bind::TextArray(&emails),
        Bind::TextArray(&phones),
        Bind::TextArray(&avatars),
        Bind::TextArray(&countries),
        Bind::TextArray(&ips),
        Bind::JsonbArray(&payloads),
        Bind::Text(actor),
    ];
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
        // An item left out twice (payload limit, a contact shared with another item, a race)
        // runs alone in a savepoint: it then either succeeds or fails with its own error.
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
        for (k, r) in run_round(conn, account_id, &refs, actor)?
            .into_iter()
            .enumerate()
        {
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
