//! `If-Match` (RFC 9110 §13.1.1) against the contact's version, sent as the ETag `"<version>"`.

use actix_web::{http::header, HttpRequest};

use crate::error::ApiError;

/// A parsed `If-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: any version.
    Absent,
    /// `*`: any existing version.
    Any,
    /// A list of entity tags: one of these versions.
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Reads the header; a value that is not `*` or a list of `"<integer>"` tags is a 400.
    pub fn from_request(req: &HttpRequest) -> Result<Self, ApiError> {
        let Some(value) = req.headers().get(header::IF_MATCH) else {
            return Ok(IfMatch::Absent);
        };
        let bad = || ApiError::InvalidHeader("If-Match: expected \"<version>\" or *");
        let text = value.to_str().map_err(|_| bad())?.trim();
        if text == "*" {
            return Ok(IfMatch::Any);
        }
        let mut versions = Vec::new();
        for tag in text.split(',') {
            // Weak tags never match under If-Match's strong comparison, but are well-formed.
            let tag = tag.trim();
            let (weak, quoted) = match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            let inner = quoted
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(bad)?;
            // etagc (RFC 9110 §8.8.3): no spaces, controls or quotes inside the tag.
            if !inner
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
            {
                return Err(bad());
            }
            if !weak {
                if let Ok(v) = inner.parse::<i64>() {
                    versions.push(v);
                }
            }
        }
        Ok(IfMatch::Versions(versions))
    }

    /// True when a contact at `version` satisfies the condition.
    pub fn allows(&self, version: i64) -> bool {
        match self {
            IfMatch::Absent | IfMatch::Any => true,
            IfMatch::Versions(v) => v.contains(&version),
        }
    }

    /// The accepted versions, or `None` when any version is accepted.
    pub fn versions(&self) -> Option<Vec<i64>> {
        match self {
            IfMatch::Versions(v) => Some(v.clone()),
            _ => None,
        }
    }
}
