//! Queries on `contacts`: the session upsert (one statement), create, read, patch, delete, list.

use diesel::dsl::now;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use super::fragments::{Bind, Prepared};

use crate::models::{Contact, ContactChanges, NewContact};
use crate::schema::contacts::dsl as c;

/// What a chatbot runtime sends for one session; every `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct SessionUpsert {
    /// Chatbot of the session.
    pub chatbot_id: String,
    /// The chatbot's session id.
    pub session_id: String,
    /// Channel of this interaction.
    pub channel: String,
    /// Name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Country.
    pub country_code: Option<String>,
    /// IP address.
    pub ip_address: Option<String>,
    /// Keys merged into the stored payload.
    pub payload: Option<serde_json::Value>,
    /// A consent statement to record with this interaction.
    pub consent: Option<super::consent::ConsentInput>,
}

#[derive(QueryableByName)]
struct UpsertRow {
    #[diesel(embed)]
    contact: Contact,
    #[diesel(sql_type = Bool)]
    created: bool,
}

/// The lateral subquery naming the profile fields an upsert changed, comparing the updated row
/// `u` with the locked row before the update `b`; shared by the single and the batch statement.
macro_rules! changed_fields_sql {
    () => {
        r#"    CROSS JOIN LATERAL (
        SELECT ARRAY(
            SELECT name FROM (VALUES
                ('name', u.name IS DISTINCT FROM b.name),
                ('email', u.email IS DISTINCT FROM b.email),
                ('phone', u.phone IS DISTINCT FROM b.phone),
                ('avatar_url', u.avatar_url IS DISTINCT FROM b.avatar_url),
                ('country_code', u.country_code IS DISTINCT FROM b.country_code),
                ('ip_address', u.ip_address IS DISTINCT FROM b.ip_address),
                ('payload', u.payload IS DISTINCT FROM b.payload)
            ) AS v(name, changed)
            WHERE changed
        ) AS fields
    ) f
"#
    };
}
pub(crate) use changed_fields_sql;

/// The session upsert as one statement. An existing session updates its contact; a new one
/// takes an id from the sequence and inserts the session and the contact together (the foreign
/// key is checked at the end of the statement). `nextval` runs only when the session was not
/// found, so repeat upserts do not burn ids. The audit row is written by the same statement:
/// `contact.created`, or `contact.updated` naming the profile fields that changed (an upsert
/// that only records an interaction — last seen, channel, session — is not audited, or every
/// chat message would be). The changed fields are named against the contact as `locked` read
/// it: locked before the update, that row holds a change another transaction committed while
/// this statement waited, as the update sees it (the statement's snapshot would not, and the
/// audit would then name that other change too). The contact is addressed by a scalar
/// subquery, so the only plan is a primary-key lookup whatever the statistics say (a join let a
/// stale estimate turn it into a scan of the whole account). The account, too, is compared as
/// `(SELECT $1::bigint)`: an initplan value the planner cannot look up in the statistics, so it
/// assumes an average account. With the constant, an account that the statistics do not know
/// yet (a new one, before autoanalyze) is estimated at one row, and any index that starts with
/// `account_id` (`contact_sessions_contact_idx`, and then `contacts_last_seen_idx`) looks as good
/// as the primary key; the benchmark saw such custom plans scan millions of index entries per
/// upsert.
///
/// A returning session changes no indexed column of `contacts` or `contact_sessions` (the "last
/// seen" order lives in `contact_activity`, migration 000009), so both updates are HOT.
pub const UPSERT_SQL: &str = concat!(
    r#"
WITH found AS (
    SELECT contact_id FROM contact_sessions
    WHERE account_id = (SELECT $1::bigint) AND chatbot_id = $2 AND session_id = $3
), new_session AS (
    INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel, ip_address)
    SELECT $1, $2, $3, nextval('contacts_id_seq'), $4, $10
    WHERE NOT EXISTS (SELECT 1 FROM found)
    ON CONFLICT (account_id, chatbot_id, session_id) DO NOTHING
    RETURNING contact_id
), seen_session AS (
    UPDATE contact_sessions s
    SET channel = $4, ip_address = COALESCE($10, s.ip_address),
        last_seen_at = GREATEST(s.last_seen_at, now())
    WHERE s.account_id = (SELECT $1::bigint) AND s.chatbot_id = $2 AND s.session_id = $3
      AND EXISTS (SELECT 1 FROM found)
    RETURNING s.contact_id
), created AS (
    INSERT INTO contacts (account_id, id, name, email, phone, avatar_url, country_code,
                          ip_address, channel, chatbot_id, session_id, payload, sessions_count)
    SELECT $1, contact_id, $5, $6, $7, $8, $9, $10, $4, $2, $3, COALESCE($11, '{}'::jsonb), 1
    FROM new_session
    RETURNING *
), locked AS MATERIALIZED (
    SELECT t.id, t.name, t.email, t.phone, t.avatar_url, t.country_code, t.ip_address, t.payload
    FROM contacts t
    WHERE t.account_id = (SELECT $1::bigint) AND t.id = (SELECT contact_id FROM seen_session)
    FOR UPDATE
), updated AS (
    UPDATE contacts t
    SET name = COALESCE($5, t.name), email = COALESCE($6, t.email),
        phone = COALESCE($7, t.phone), avatar_url = COALESCE($8, t.avatar_url),
        country_code = COALESCE($9, t.country_code), ip_address = COALESCE($10, t.ip_address),
        channel = $4, chatbot_id = $2, session_id = $3,
        payload = t.payload || COALESCE($11, '{}'::jsonb),
        last_seen_at = GREATEST(t.last_seen_at, now()),
        updated_at = GREATEST(t.updated_at, now()),
        version = t.version + 1
    WHERE t.account_id = (SELECT $1::bigint) AND t.id = (SELECT id FROM locked)
    RETURNING t.*
), audit AS (
    INSERT INTO audit_events (account_id, actor, action, contact_id, changed_fields)
    SELECT $1, $12, 'contact.created', id, '{}' FROM created
    UNION ALL
    SELECT $1, $12, 'contact.updated', u.id, f.fields
    FROM updated u
    CROSS JOIN locked b
"#,
    changed_fields_sql!(),
    r#"    WHERE cardinality(f.fields) > 0
)
SELECT *, true AS created FROM created
UNION ALL
SELECT *, false AS created FROM updated
"#
);

/// The binds of `UPSERT_SQL`, in `$n` order.
fn upsert_binds<'a>(account_id: i64, u: &'a SessionUpsert, actor: &'a str) -> [Bind<'a>; 12] {
    [
        Bind::Int8(account_id),
        Bind::Text(&u.chatbot_id),
        Bind::Text(&u.session_id),
        Bind::Text(&u.channel),
        Bind::OptText(u.name.as_deref()),
        Bind::OptText(u.email.as_deref()),
        Bind::OptText(u.phone.as_deref()),
        Bind::OptText(u.avatar_url.as_deref()),
        Bind::OptText(u.country_code.as_deref()),
        Bind::OptText(u.ip_address.as_deref()),
        Bind::OptJsonb(u.payload.as_ref()),
        Bind::Text(actor),
    ]
}

/// Creates or updates the contact of one session; returns it and whether it was created.
///
/// Under concurrency the statement can come back empty: a parallel call inserted the session
/// after this statement's snapshot (so neither branch applies), or the contact was deleted
/// between the two. Running it again with a fresh snapshot resolves both, so exactly one
/// contact exists per session whatever the interleaving.
pub fn upsert_session(
    conn: &mut PgConnection,
    account_id: i64,
    u: &SessionUpsert,
    actor: &str,
) -> QueryResult<(Contact, bool)> {
    let Some(consent) = &u.consent else {
        return upsert_statement(conn, account_id, u, actor);
    };
    // With consent, the upsert and the consent change commit together.
    conn.transaction(|conn| {
        let (contact, created) = upsert_statement(conn, account_id, u, actor)?;
        match super::consent::apply(conn, &contact, consent, actor)? {
            Some(updated) => Ok((updated, created)),
            None => Ok((contact, created)),
        }
    })
}

/// The upsert statement alone, retried when a race leaves it empty.
fn upsert_statement(
    conn: &mut PgConnection,
    account_id: i64,
    u: &SessionUpsert,
    actor: &str,
) -> QueryResult<(Contact, bool)> {
    for _ in 0..5 {
        let row = Prepared {
            sql: UPSERT_SQL,
            binds: &upsert_binds(account_id, u, actor),
        }
        .get_result::<UpsertRow>(conn)
        .optional()?;
        if let Some(r) = row {
            return Ok((r.contact, r.created));
        }
    }
    Err(diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::SerializationFailure,
        Box::new("session upsert kept racing; retry".to_string()),
    ))
}

/// Session insert first, then the contact that it names, in one statement: when the session
/// is already linked nothing is inserted and the result is empty.
const CREATE_WITH_SESSION_SQL: &str = r#"
WITH s AS (
    INSERT INTO contact_sessions (account_id, chatbot_id, session_id, contact_id, channel, ip_address)
    VALUES ($1, $2, $3, nextval('contacts_id_seq'), $4, $10)
    ON CONFLICT (account_id, chatbot_id, session_id) DO NOTHING
    RETURNING contact_id
)
INSERT INTO contacts (account_id, id, name, email, phone, avatar_url, country_code,
                      ip_address, channel, chatbot_id, session_id, payload, sessions_count)
SELECT $1, contact_id, $5, $6, $7, $8, $9, $10, $4, $2, $3, $11, 1 FROM s
RETURNING *
"#;

/// Creates a contact by hand and records it in the audit log; call inside a transaction. With
/// a session: `Ok(Err(existing_contact_id))` when the session already belongs to a contact.
pub fn create(
    conn: &mut PgConnection,
    new: &NewContact,
    actor: &str,
) -> QueryResult<Result<Contact, i64>> {
    let created = insert(conn, new)?;
    if let Ok(contact) = &created {
        super::audit::record(
            conn,
            new.account_id,
            &super::audit::Event::new(actor, "contact.created", Some(contact.id)),
        )?;
    }
    Ok(created)
}

fn insert(conn: &mut PgConnection, new: &NewContact) -> QueryResult<Result<Contact, i64>> {
    let Some(session_id) = &new.session_id else {
        let contact = diesel::insert_into(c::contacts)
            .values(new)
            .returning(Contact::as_returning())
            .get_result(conn)?;
        return Ok(Ok(contact));
    };
    let binds = [
        Bind::Int8(new.account_id),
        Bind::Text(&new.chatbot_id),
        Bind::Text(session_id),
        Bind::Text(&new.channel),
        Bind::OptText(new.name.as_deref()),
        Bind::OptText(new.email.as_deref()),
        Bind::OptText(new.phone.as_deref()),
        Bind::OptText(new.avatar_url.as_deref()),
        Bind::OptText(new.country_code.as_deref()),
        Bind::OptText(new.ip_address.as_deref()),
        Bind::Jsonb(&new.payload),
    ];
    let created = Prepared {
        sql: CREATE_WITH_SESSION_SQL,
        binds: &binds,
    }
    .get_result::<Contact>(conn)
    .optional()?;
    match created {
        Some(contact) => Ok(Ok(contact)),
        None => {
            let existing =
                super::sessions::contact_of(conn, new.account_id, &new.chatbot_id, session_id)?;
            Ok(Err(existing.unwrap_or(0)))
        }
    }
}

/// One contact of the account.
pub fn find(conn: &mut PgConnection, account_id: i64, id: i64) -> QueryResult<Option<Contact>> {
    c::contacts
        .find((account_id, id))
        .select(Contact::as_select())
        .first(conn)
        .optional()
}

/// One contact, locked until the end of the transaction (read-modify-write of a patch).
pub fn find_for_update(
    conn: &mut PgConnection,
    account_id: i64,
    id: i64,
) -> QueryResult<Option<Contact>> {
    c::contacts
        .find((account_id, id))
        .select(Contact::as_select())
        .for_update()
        .first(conn)
        .optional()
}

/// Stores the editable fields, bumping `version` and `updated_at`.
pub fn update(
    conn: &mut PgConnection,
    account_id: i64,
    id: i64,
    changes: &ContactChanges,
) -> QueryResult<Contact> {
    diesel::update(c::contacts.find((account_id, id)))
        .set((
            changes,
            c::updated_at.eq(now),
            c::version.eq(c::version + 1),
        ))
        .returning(Contact::as_returning())
        .get_result(conn)
}

/// What a delete found.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The contact and its sessions are gone.
    Yes,
    /// No such contact in the account.
    NotFound,
    /// `If-Match` named another version; this is the current one.
    VersionMismatch(i64),
}

/// Deletes a contact (sessions cascade), only when `allows` its current version (the caller's
/// preconditions). The sessions are locked before the contact (`repo::locks`): the cascade would
/// otherwise lock them after it, the reverse of an upsert of one of them.
pub fn delete(
    conn: &mut PgConnection,
    account_id: i64,
    id: i64,
    allows: impl Fn(i64) -> bool,
) -> QueryResult<Deleted> {
    conn.transaction(|conn| {
        super::locks::sessions_then_contacts(conn, account_id, &[id], &[id])?;
        let Some(current) = find_for_update(conn, account_id, id)? else {
            return Ok(Deleted::NotFound);
        };
        if !allows(current.version) {
            return Ok(Deleted::VersionMismatch(current.version));
        }
        diesel::delete(c::contacts.find((account_id, id))).execute(conn)?;
        Ok(Deleted::Yes)
    })
}

/// A page of the account's contacts, newest id first, after the cursor id.
pub fn list(
    conn: &mut PgConnection,
    account_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Contact>> {
    let mut q = c::contacts
        .filter(c::account_id.eq(account_id))
        .select(Contact::as_select())
        .order(c::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before_id {
        q = q.filter(c::id.lt(before));
    }
    q.load(conn)
}
