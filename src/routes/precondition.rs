//! Preconditions (RFC 9110 §13) against the contact's version, sent as the ETag `"<version>"`.
//! Every write evaluates `If-Match` and `If-None-Match` or refuses: a condition is never
//! silently ignored (§13.2.2: a server must not perform the method when one is false).
//! Operations on one contact evaluate them against it (`Preconditions::allows`); operations on
//! a collection (create, batch, bulk delete, privacy, settings) have no entity tag, so a list of
//! tags never matches there (`OnCollection`).

use std::future::{ready, Ready};

use actix_web::{dev::Payload, http::header, FromRequest, HttpRequest};

use crate::error::ApiError;

/// A parsed `If-Match` or `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    /// No header.
    Absent,
    /// `*`: any current representation.
    Any,
    /// A list of entity tags: `(weak, version)`; tags that are not a version never match.
    List(Vec<(bool, i64)>),
}

impl Tags {
    /// Reads `name`; a value that is not `*` or a list of quoted entity tags is a 400.
    fn read(
        req: &HttpRequest,
        name: header::HeaderName,
        what: &'static str,
    ) -> Result<Self, ApiError> {
        let mut values = req.headers().get_all(&name);
        let Some(value) = values.next() else {
            return Ok(Tags::Absent);
        };
        let bad = || ApiError::InvalidHeader(what);
        // Two fields would be one comma-joined list, but `*` cannot be part of a list.
        let mut text = value.to_str().map_err(|_| bad())?.trim().to_string();
        for more in values {
            text.push(',');
            text.push_str(more.to_str().map_err(|_| bad())?.trim());
        }
        if text == "*" {
            return Ok(Tags::Any);
        }
        let mut tags = Vec::new();
        for tag in text.split(',') {
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
            // Only the exact text the service sends names a version: `"+3"` or `"003"` is
            // another entity tag, which strong and weak comparison alike tell apart from `"3"`.
            if let Some(v) = inner.parse::<i64>().ok().filter(|v| v.to_string() == inner) {
                tags.push((weak, v));
            }
        }
        Ok(Tags::List(tags))
    }
}

/// The two preconditions of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preconditions {
    /// `If-Match` (strong comparison).
    pub if_match: Tags,
    /// `If-None-Match` (weak comparison).
    pub if_none_match: Tags,
}

impl Preconditions {
    /// Reads both headers (400 `invalid_header` when malformed).
    pub fn from_request(req: &HttpRequest) -> Result<Self, ApiError> {
        Ok(Self {
            if_match: Tags::read(
                req,
                header::IF_MATCH,
                "If-Match: expected \"<version>\" or *",
            )?,
            if_none_match: Tags::read(
                req,
                header::IF_NONE_MATCH,
                "If-None-Match: expected \"<version>\" or *",
            )?,
        })
    }

    /// True when neither header was sent.
    pub fn is_empty(&self) -> bool {
        self.if_match == Tags::Absent && self.if_none_match == Tags::Absent
    }

    /// Evaluates both against the current version, `None` when there is no current
    /// representation (§13.2.2, steps 1 and 3).
    pub fn allows(&self, current: Option<i64>) -> bool {
        let if_match = match (&self.if_match, current) {
            (Tags::Absent, _) => true,
            (_, None) => false,
            (Tags::Any, Some(_)) => true,
            // Strong comparison: a weak tag never matches.
            (Tags::List(tags), Some(v)) => tags.iter().any(|&(weak, t)| !weak && t == v),
        };
        let if_none_match = match (&self.if_none_match, current) {
            (Tags::Absent, _) | (_, None) => true,
            (Tags::Any, Some(_)) => false,
            // Weak comparison: W/"3" names version 3 too.
            (Tags::List(tags), Some(v)) => !tags.iter().any(|&(_, t)| t == v),
        };
        if_match && if_none_match
    }

    /// The 412 for a condition that does not hold at `current`.
    pub fn failed(current: Option<i64>) -> ApiError {
        ApiError::PreconditionFailed(current)
    }
}

/// Extractor for writes on a collection, which has no entity tag: `If-Match: *` and a list of
/// `If-None-Match` tags hold (the collection exists, no tag names it); a list of `If-Match`
/// tags and `If-None-Match: *` do not (412).
pub struct OnCollection;

impl FromRequest for OnCollection {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Preconditions::from_request(req).and_then(|p| {
            let holds = matches!(p.if_match, Tags::Absent | Tags::Any)
                && !matches!(p.if_none_match, Tags::Any);
            if holds {
                Ok(OnCollection)
            } else {
                Err(ApiError::PreconditionFailed(None))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{Preconditions, Tags};

    fn p(if_match: Tags, if_none_match: Tags) -> Preconditions {
        Preconditions {
            if_match,
            if_none_match,
        }
    }

    #[test]
    fn rfc_9110_evaluation() {
        use Tags::*;
        assert!(p(Absent, Absent).allows(None));
        assert!(!p(Any, Absent).allows(None));
        assert!(p(Any, Absent).allows(Some(3)));
        assert!(p(List(vec![(false, 3)]), Absent).allows(Some(3)));
        assert!(!p(List(vec![(true, 3)]), Absent).allows(Some(3)));
        assert!(!p(List(vec![(false, 2)]), Absent).allows(Some(3)));
        assert!(p(Absent, Any).allows(None));
        assert!(!p(Absent, Any).allows(Some(1)));
        assert!(!p(Absent, List(vec![(true, 3)])).allows(Some(3)));
        assert!(p(Absent, List(vec![(false, 2)])).allows(Some(3)));
    }
}
