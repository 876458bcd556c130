//! Opaque pagination cursors: URL-safe base64 of a small JSON value. Clients must treat them as
//! opaque; the server rejects one it did not issue for the same listing with a 400.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::ApiError;

/// Encodes a cursor position.
pub fn encode<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).expect("cursor serialises"))
}

/// Longest cursor accepted. A position can hold a 200-character name (list) or two
/// 128-character ids (sessions) of up to 4 bytes per character in UTF-8, 2 bytes per `"` or `\`
/// in JSON: about 1,100 bytes of JSON, 1,500 in base64. The bound leaves room for that, so the
/// server always accepts the cursors it issues, and still refuses absurd input cheaply.
pub const MAX_LEN: usize = 4096;

/// Decodes a cursor issued by `encode` for the same kind of position. A cursor is client input
/// like any other: one that decodes to a value the database cannot take (a NUL in a string, a
/// time outside [`time`]'s range) is refused here, never sent to PostgreSQL to fail as a 500.
pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    if cursor.len() > MAX_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if crate::validate::has_nul(&value) {
        return Err(invalid());
    }
    serde_json::from_value(value).map_err(|_| invalid())
}

/// Checks a time taken from a cursor: the service issues only times it stored, so anything
/// outside years 1–9999 (PostgreSQL itself refuses years before 4713 BC) is forged.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> Result<(), ApiError> {
    use chrono::Datelike;
    if (1..=9999).contains(&t.year()) {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// The 400 for a cursor that is malformed or was issued for another listing.
pub fn invalid() -> ApiError {
    ApiError::InvalidParameter {
        field: "cursor".into(),
        message: "not a cursor issued for this listing".into(),
    }
}
