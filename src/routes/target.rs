//! The request target is refused, before any route runs, when its percent-encoding does not
//! decode to UTF-8: actix would decode such bytes with U+FFFD, so two different session ids
//! (`Jos%E9`, `Jos%F1`) would name one session. An identifier round-trips exactly or is refused.
//! A `%` that does not start an escape is refused too: actix decodes a path twice (the URL,
//! then each segment), and `Jos%%459` becomes `Jos%E9` after the first pass and U+FFFD after
//! the second, so a malformed escape could smuggle bytes past a single decode.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;
use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// Middleware: 400 `invalid_parameter` for a path or query that is not UTF-8 once decoded.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    match check(req.path(), req.query_string()) {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

/// The problem of a path or query string whose percent-decoded bytes are not UTF-8.
pub fn check(path: &str, query: &str) -> Result<(), ApiError> {
    if !well_formed(path) {
        return Err(ApiError::InvalidParameter {
            field: "path".into(),
            message: "every '%' must start an escape of two hex digits".into(),
        });
    }
    if percent_decode_str(path).decode_utf8().is_err() {
        return Err(ApiError::InvalidParameter {
            field: "path".into(),
            message: "percent-encoded bytes must form UTF-8 text".into(),
        });
    }
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !well_formed(pair) {
            return Err(ApiError::InvalidParameter {
                field: "query".into(),
                message: "every '%' must start an escape of two hex digits".into(),
            });
        }
        let name_ok = percent_decode_str(name).decode_utf8();
        let field = match &name_ok {
            Ok(n) => n.replace('+', " "),
            Err(_) => "query".into(),
        };
        if name_ok.is_err() || percent_decode_str(value).decode_utf8().is_err() {
            return Err(ApiError::InvalidParameter {
                field,
                message: "percent-encoded bytes must form UTF-8 text".into(),
            });
        }
    }
    Ok(())
}

/// True when every `%` of `s` is followed by two hex digits.
fn well_formed(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn refuses_bytes_that_are_not_utf8_and_keeps_the_rest() {
        assert!(check("/api/v1/chatbots/b/sessions/Jos%E9/contact", "").is_err());
        assert!(check("/a", "chatbot_id=Jos%F1").is_err());
        assert!(check("/a", "%FF=1").is_err());
        assert!(check(
            "/api/v1/chatbots/b/sessions/Jos%C3%A9/contact",
            "q=Jos%C3%A9&x"
        )
        .is_ok());
        assert!(check("/a%2Fb", "").is_ok());
        // Malformed escapes, which actix's second decoding pass would complete.
        for path in [
            "/s/Jos%%459",
            "/s/Jos%E%39",
            "/s/%F%31",
            "/s/%2%35",
            "/s/a%",
            "/s/a%4",
        ] {
            assert!(check(path, "").is_err(), "{path}");
        }
        assert!(check("/a", "q=%%45").is_err());
        assert!(check("/s/Jos%25E9", "q=100%25").is_ok());
    }
}
