//! `JsonText`: a `jsonb` column read as its JSON text and written out as is.
//!
//! A contact's `payload` and `consent` are only copied from the database into responses and
//! exports on the read paths. Parsed into a `serde_json::Value` tree and serialised back, they
//! were ~14% of the server's CPU on a page of 50 contacts (perf: the tree's allocation, its map
//! keys written one by one, its drop). PostgreSQL's `jsonb` output is already compact JSON, so
//! it is kept as text and parsed only where code needs the value. The text is made compact
//! (PostgreSQL writes `{"a": 1, "b": 2}`), as `serde_json` wrote it before; keys keep `jsonb`'s
//! order (shorter keys first) instead of `serde_json`'s alphabetical one.

use std::io::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Jsonb;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// JSON text of a `jsonb` value.
#[derive(Debug, Clone, AsExpression, FromSqlRow)]
#[diesel(sql_type = Jsonb)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The value, parsed. The text is JSON, but `serde_json` refuses some of what `jsonb`
    /// holds (nesting deeper than 128, numbers beyond `f64`), which a client cannot send but
    /// SQL can write: an error then, never a stand-in value that a write would store.
    pub fn value(&self) -> serde_json::Result<Value> {
        serde_json::from_str(self.0.get())
    }

    /// The text of `value`.
    pub fn from_value(value: &Value) -> Self {
        Self(serde_json::value::to_raw_value(value).expect("a Value always serialises"))
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl FromSql<Jsonb, Pg> for JsonText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        // The binary `jsonb` format: a version byte (1), then the JSON text.
        match value.as_bytes().split_first() {
            Some((1, text)) => Ok(Self(serde_json::from_slice(&compact(text))?)),
            _ => Err("unsupported jsonb format version".into()),
        }
    }
}

/// `text` without the whitespace between JSON tokens (strings are copied as they are).
fn compact(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

impl ToSql<Jsonb, Pg> for JsonText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[1])?;
        out.write_all(self.get().as_bytes())?;
        Ok(IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_and_parses_on_demand() {
        let v = serde_json::json!({"plan": "pro", "n": [1, 2.5, null], "s": "a\"b\u{1}"});
        let t = JsonText::from_value(&v);
        assert_eq!(t.value().unwrap(), v);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        // What serde_json cannot hold is an error, not a stand-in value.
        let deep: Box<RawValue> =
            serde_json::from_str(&format!("{}{}", "[".repeat(200), "]".repeat(200))).unwrap();
        assert!(JsonText(deep).value().is_err());
    }

    #[test]
    fn compacts_between_tokens_only() {
        let text = br#"{"a b": "x, y: \"z\" \\", "n": [1, 2.50], "o": {"k": null}}"#;
        assert_eq!(
            String::from_utf8(compact(text)).unwrap(),
            r#"{"a b":"x, y: \"z\" \\","n":[1,2.50],"o":{"k":null}}"#
        );
    }
}
