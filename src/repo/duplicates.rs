//! Duplicate detection: groups of contacts that share a case-insensitive email or an E.164
//! phone. Each group query walks the partial index of its key in order and stops after one
//! page of groups, so a page costs the same at any position.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use serde::{Deserialize, Serialize};

use super::fragments::{Bind, Prepared};

/// What the contacts of a group share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// Same email, ignoring case (the value is lower case).
    Email,
    /// Same E.164 phone.
    Phone,
}

/// One group of duplicates.
#[derive(Debug, Clone, QueryableByName)]
pub struct Group {
    /// The shared value.
    #[diesel(sql_type = Text)]
    pub value: String,
    /// The contacts sharing it, ascending.
    #[diesel(sql_type = Array<BigInt>)]
    pub contact_ids: Vec<i64>,
}

const EMAIL_GROUPS: &str = r#"
SELECT lower(email) AS value, array_agg(id ORDER BY id) AS contact_ids
FROM contacts
WHERE account_id = $1 AND email IS NOT NULL AND lower(email) > $2
GROUP BY lower(email)
HAVING count(*) > 1
ORDER BY lower(email)
LIMIT $3
"#;

const PHONE_GROUPS: &str = r#"
SELECT phone AS value, array_agg(id ORDER BY id) AS contact_ids
FROM contacts
WHERE account_id = $1 AND phone IS NOT NULL AND phone > $2
GROUP BY phone
HAVING count(*) > 1
ORDER BY phone
LIMIT $3
"#;

/// Up to `limit` groups of `kind` whose value sorts after `after` ("" for the first page).
pub fn groups(
    conn: &mut PgConnection,
    account_id: i64,
    kind: MatchKind,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<Group>> {
    let sql = match kind {
        MatchKind::Email => EMAIL_GROUPS,
        MatchKind::Phone => PHONE_GROUPS,
    };
    Prepared {
        sql,
        binds: &[Bind::Int8(account_id), Bind::Text(after), Bind::Int8(limit)],
    }
    .load(conn)
}
