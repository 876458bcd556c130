//! The request-head limits of the service, answered as problem+json: a request target longer
//! than [`MAX_TARGET_BYTES`] is a 414 (`uri_too_long`), more than [`MAX_HEADER_FIELDS`] header
//! fields or more than [`MAX_HEADER_BYTES`] of them a 431 (`header_fields_too_large`).
//!
//! actix-http has its own, fixed limits (not configurable in 3.x: `MAX_BUFFER_SIZE` of 128 KiB
//! for the request head and `MAX_HEADERS` of 96 field lines in `h1/decoder.rs`) and answers
//! them itself, before the application runs, with an empty 431; it also answers a request
//! head it cannot parse (bad request line, malformed or repeated `Content-Length`,
//! `Transfer-Encoding` other than chunked, no `Host` in HTTP/1.1) with an empty 400, and a head
//! not received within `CLIENT_TIMEOUT_SECONDS` with an empty 408, closing the connection each
//! time. The limits here sit below actix's, so every head actix accepts and the service does
//! not is refused by the application, with problem+json and `X-Request-Id`; README
//! "Configuration" lists what stays actix's.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;

use crate::error::ApiError;

/// Longest request target (path and query), in bytes.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Most header fields (field lines) in a request.
pub const MAX_HEADER_FIELDS: usize = 64;

/// Most bytes of header fields in a request, counted as on the wire (`name: value\r\n`).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The refusal a request head earns, if any.
fn check(req: &ServiceRequest) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_TARGET_BYTES {
        return Some(ApiError::UriTooLong(MAX_TARGET_BYTES));
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADER_FIELDS {
        return Some(ApiError::HeaderFieldsTooLarge(format!(
            "the request has more than {MAX_HEADER_FIELDS} header fields"
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Some(ApiError::HeaderFieldsTooLarge(format!(
            "the request's header fields are larger than {MAX_HEADER_BYTES} bytes"
        )));
    }
    None
}

/// Middleware: refuses a request head beyond the limits before anything else reads it.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    match check(&req) {
        Some(e) => Ok(req.error_response(e).map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}
