//! `ApiError`, the one error type of the service, and its problem+json (RFC 9457) rendering.
//! Every failure, the framework's own included, leaves the service through here.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid input, named by its JSON field, path or query parameter.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field or parameter (`email`, `payload.plan`, `limit`).
    #[schema(example = "email")]
    pub field: String,
    /// What is wrong with it.
    #[schema(example = "not a valid email address")]
    pub message: String,
}

impl FieldError {
    /// A field error from anything string-like.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document, the body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:contacts-api:problem:validation_failed",
    "title": "Unprocessable Content",
    "status": 422,
    "detail": "the request body has invalid fields",
    "code": "validation_failed",
    "errors": [{"field": "email", "message": "not a valid email address"}],
    "request_id": "5f0c6e0e-8d1c-4c47-9a43-2b1f0c7a4d11"
}))]
pub struct Problem {
    /// `urn:contacts-api:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// A sentence for humans; never SQL, stack traces or internal messages.
    pub detail: String,
    /// Stable machine-readable identifier: `validation_failed`, `unknown_field`, `invalid_body`,
    /// `malformed_json`, `unsupported_media_type`, `payload_too_large`, `invalid_parameter`,
    /// `invalid_header`, `invalid_request`, `unsupported_encoding`, `uri_too_long`,
    /// `header_fields_too_large`, `invalid_token`, `insufficient_scope`, `not_found`, `method_not_allowed`,
    /// `contact_merged`, `session_conflict`, `conflict`, `precondition_failed`, `rate_limited`,
    /// `too_many_exports`, `request_timeout`, `service_unavailable`, `internal_error`.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// Present for validation failures: one entry per invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The id of the contact that already holds the session (`session_conflict` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_contact_id: Option<i64>,
    /// The request's `X-Request-Id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The codings the service decodes (`encoding`), sent in `Accept-Encoding` on a 415. Here,
/// below `encoding`, so that the error type imports nothing above it.
pub const ACCEPTED_ENCODINGS: &str = "gzip";

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: field values that break the contract.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// 422: a JSON field the operation does not accept.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// 422: well-formed JSON of the wrong shape (types, missing fields).
    #[error("{detail}")]
    InvalidBody {
        /// The path of the offending value, when known.
        field: Option<String>,
        /// What serde found wrong.
        detail: String,
    },
    /// 400: the body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 413.
    #[error("the body is larger than the {0} bytes this operation accepts")]
    PayloadTooLarge(usize),
    /// 400: a bad path or query parameter.
    #[error("invalid parameter `{field}`: {message}")]
    InvalidParameter {
        /// The parameter name.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// 400: a malformed request header.
    #[error("invalid header {0}")]
    InvalidHeader(&'static str),
    /// 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 400: credentials sent ambiguously or malformed (RFC 6750 §3.1 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// 415: a `Content-Encoding` the service does not decode, or a body that is not in the
    /// coding it claims; answered with `Accept-Encoding` (RFC 9110 §15.5.16).
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// 414: the request target is longer than the service accepts.
    #[error("the request target is longer than the {0} bytes this service accepts")]
    UriTooLong(usize),
    /// 431: the request's header fields are too many or too large.
    #[error("{0}")]
    HeaderFieldsTooLarge(String),
    /// 403.
    #[error("this operation needs the scope {0}")]
    InsufficientScope(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("method not allowed; this path accepts {0}")]
    MethodNotAllowed(String),
    /// 410: the contact was merged into `target`.
    #[error("the contact was merged into contact {0}")]
    Merged(i64),
    /// 409: the session already belongs to a contact.
    #[error("session already linked to contact {0}")]
    SessionConflict(i64),
    /// 409: another unique-key conflict.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` or `If-None-Match` does not hold; the current version, if any.
    #[error("{}", match .0 {
        Some(v) => format!("the contact has changed: its version is {v}"),
        None => "the precondition does not hold: there is no current representation with an \
                 entity tag".to_string(),
    })]
    PreconditionFailed(Option<i64>),
    /// 429: the account spent its request budget; retry after this many seconds.
    #[error("this account sent too many requests; retry in {0} s")]
    RateLimited(u64),
    /// 429: the account already runs this many exports.
    #[error("this account already runs {0} export(s); retry when one has finished")]
    TooManyExports(u32),
    /// 408: the client took too long to send its request.
    #[error("the request was not received in time")]
    RequestTimeout,
    /// 503: the database is unreachable, overloaded or the pool is exhausted.
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable,
    /// 500: logged once with its cause, answered with a generic body.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// An internal error whose cause is logged, never sent.
    pub fn internal(cause: impl Into<String>) -> Self {
        ApiError::Internal(cause.into())
    }

    /// A single-field validation error.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// A 404 for a contact id.
    pub fn contact_not_found(id: i64) -> Self {
        ApiError::NotFound(format!("contact {id} not found"))
    }

    /// The stable `code` of the problem body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::UnknownField(_) => "unknown_field",
            ApiError::InvalidBody { .. } => "invalid_body",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::InvalidHeader(_) => "invalid_header",
            ApiError::Unauthorized(_) => "invalid_token",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::UnsupportedEncoding(_) => "unsupported_encoding",
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::HeaderFieldsTooLarge(_) => "header_fields_too_large",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Merged(_) => "contact_merged",
            ApiError::SessionConflict(_) => "session_conflict",
            ApiError::Conflict(_) => "conflict",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::TooManyExports(_) => "too_many_exports",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Unavailable => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn field_errors(&self) -> Option<Vec<FieldError>> {
        match self {
            ApiError::Validation(errors) => Some(errors.clone()),
            ApiError::UnknownField(f) => Some(vec![FieldError::new(f, "unknown field")]),
            ApiError::InvalidBody {
                field: Some(f),
                detail,
            } => Some(vec![FieldError::new(f, detail)]),
            ApiError::InvalidParameter { field, message } => {
                Some(vec![FieldError::new(field, message)])
            }
            _ => None,
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(_) => "an internal error occurred".to_string(),
            other => other.to_string(),
        };
        Problem {
            type_: format!("urn:contacts-api:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: self.code().to_string(),
            errors: self.field_errors(),
            existing_contact_id: match self {
                ApiError::SessionConflict(id) => Some(*id),
                _ => None,
            },
            request_id: crate::request_id::current(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::UnknownField(_) | ApiError::InvalidBody { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::MalformedJson(_)
            | ApiError::InvalidParameter { .. }
            | ApiError::InvalidHeader(_)
            | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::HeaderFieldsTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Merged(_) => StatusCode::GONE,
            ApiError::SessionConflict(_) | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::RateLimited(_) | ApiError::TooManyExports(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            log::error!(
                "request {}: {cause}",
                crate::request_id::current().unwrap_or_default()
            );
        }
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json");
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            ApiError::Unauthorized(detail) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        error_description(detail)
                    ),
                ));
            }
            ApiError::InvalidRequest(detail) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        "Bearer error=\"invalid_request\", error_description=\"{}\"",
                        error_description(detail)
                    ),
                ));
            }
            ApiError::UnsupportedEncoding(_) => {
                res.insert_header((header::ACCEPT_ENCODING, ACCEPTED_ENCODINGS));
            }
            ApiError::InsufficientScope(scope) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
                ));
            }
            ApiError::MethodNotAllowed(allow) => {
                res.insert_header((header::ALLOW, allow.clone()));
            }
            ApiError::Merged(target) => {
                res.insert_header((
                    header::LINK,
                    format!("</api/v1/contacts/{target}>; rel=\"canonical\""),
                ));
            }
            ApiError::Unavailable => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::RateLimited(secs) => {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::TooManyExports(_) => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            ApiError::RequestTimeout => {
                res.insert_header((header::CONNECTION, "close"));
            }
            _ => {}
        }
        res.json(self.problem())
    }
}

/// RFC 6750 §3: `error_description` is printable ASCII without `"` or `\`. Anything else is
/// replaced, so a detail can never make the header value invalid (which would turn the 401
/// into a 500).
fn error_description(detail: &str) -> String {
    detail
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

impl From<DieselError> for ApiError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::NotFound => ApiError::NotFound("not found".into()),
            DieselError::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::UniqueViolation => {
                    ApiError::Conflict("the resource already exists".into())
                }
                DatabaseErrorKind::CheckViolation
                    if info.constraint_name() == Some("contacts_payload_size") =>
                {
                    // The trigger's own message (migration 000012): sizes, never values.
                    ApiError::field("payload", info.message())
                }
                DatabaseErrorKind::SerializationFailure
                | DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction => {
                    log::warn!("database unavailable: {e}");
                    ApiError::Unavailable
                }
                _ if is_transient(info.message()) => {
                    log::warn!("database transient failure: {e}");
                    ApiError::Unavailable
                }
                _ => ApiError::internal(format!("database: {e}")),
            },
            _ => ApiError::internal(format!("database: {e}")),
        }
    }
}

/// Deadlocks, timeouts and shutdowns: failures a retry can fix.
fn is_transient(message: &str) -> bool {
    [
        "deadlock detected",
        "canceling statement",
        "lock timeout",
        "terminating connection",
        "server closed the connection",
        "the database system is",
        "could not serialize",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<r2d2_error::PoolError> for ApiError {
    fn from(e: r2d2_error::PoolError) -> Self {
        log::warn!("database pool: {e}");
        ApiError::Unavailable
    }
}

mod r2d2_error {
    pub use diesel::r2d2::PoolError;
}
