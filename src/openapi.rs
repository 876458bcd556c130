//! The OpenAPI 3.1 document: `ApiDoc` holds the info and components; paths are collected from
//! the route table itself, and `document()` adds the error responses every operation shares.

use actix_web::App;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::error::{FieldError, Problem};

/// Info, tags, security scheme and shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "contacts-api",
        description = "Contacts of everyone who talks to a business's AI chatbots.\n\n\
Every `/api/v1` operation takes `Authorization: Bearer <JWT>`; the account (tenant) comes only \
from the token's `account_id` claim, and ids of other accounts answer 404. Errors are \
`application/problem+json` (RFC 9457) with a stable `code`. Every response carries \
`X-Request-Id`; responses with personal data carry `Cache-Control: no-store`. Request bodies \
over 64 KiB are refused with 413; unknown JSON fields with 422 (`unknown_field`); NUL \
characters in strings with 422. Timestamps are RFC 3339 in UTC, with microseconds when \
non-zero.\n\n\
**Rate limits.** Each account has two budgets per server process: session upserts (single \
and batch requests; `RATE_LIMIT_UPSERTS_PER_MINUTE`, default 12000) and every other \
authenticated request (`RATE_LIMIT_REQUESTS_PER_MINUTE`, default 3000). A budget refills \
continuously and may be spent in one burst. Authenticated responses carry `RateLimit-Limit`, \
`RateLimit-Remaining`, `RateLimit-Reset` (seconds until the budget is full) and \
`RateLimit-Policy` (`<limit>;w=60`); a spent budget answers 429 (`rate_limited`) with \
`Retry-After`. An account runs at most `EXPORTS_PER_ACCOUNT` (default 2) exports at once. A \
client must send its headers, then its body, within `CLIENT_TIMEOUT_SECONDS` (default 10) \
each, or gets 408.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    tags(
        (name = "sessions", description = "Chatbot runtimes: the contact of a chat session."),
        (name = "contacts", description = "Dashboards and integrations: browse and edit contacts."),
        (name = "privacy", description = "Data-subject access and erasure, retention, the audit log."),
        (name = "system", description = "Health and readiness probes."),
    ),
    components(schemas(Problem, FieldError, crate::routes::batch::BatchItem))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        http.description = Some(
            "JWT (HS256 with JWT_SECRET, or RS256/ES256 with JWT_PUBLIC_KEY_FILE) with claims \
             `sub`, `account_id`, `scope` (space-separated), `exp`, optional `nbf` and \
             `chatbot_id`; `iss`/`aud` when the server is configured with them."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Shared error responses, referenced from every operation that can produce them.
const SHARED: &[(&str, &str, &str)] = &[
    ("400", "BadRequest", "Malformed JSON (`malformed_json`), a bad path or query parameter (`invalid_parameter`) or header (`invalid_header`), or credentials sent ambiguously: two `Authorization` fields, several credentials in one, or a token both in the header and in `access_token` (`invalid_request`, with `WWW-Authenticate: Bearer error=\"invalid_request\"`)."),
    ("401", "Unauthorized", "Missing, malformed, expired or forged token, or one whose header uses `crit`, `b64`, `zip`, `enc` or `cty`, whose `typ` is not `JWT` or `at+jwt`, with duplicate member names, or with a claim out of its rules (`account_id` 1 to 2^63-1; `sub` 1 to 255 characters without control characters; `chatbot_id` as the path's, without `,` or edge whitespace; `scope` space-separated RFC 6749 scope tokens; `exp`, `nbf`, `iat` integers up to year 9999) (`invalid_token`); `WWW-Authenticate: Bearer error=\"invalid_token\"`."),
    ("403", "Forbidden", "The token lacks the operation's scope, or is restricted to another chatbot (`insufficient_scope`)."),
    ("413", "PayloadTooLarge", "The body exceeds the operation's limit (`payload_too_large`)."),
    ("415", "UnsupportedMediaType", "The body is not `application/json` (`unsupported_media_type`), or is sent with a `Content-Encoding` other than one `gzip`, or is not the gzip it claims (`unsupported_encoding`, with `Accept-Encoding: gzip`). A gzip body is decoded within the operation's size limit (413 beyond)."),
    ("422", "UnprocessableContent", "Invalid field values (`validation_failed`, with `errors`), unknown fields (`unknown_field`) or values of the wrong type (`invalid_body`)."),
    ("408", "RequestTimeout", "The body did not arrive within `CLIENT_TIMEOUT_SECONDS` (`request_timeout`); the connection is closed."),
    ("412", "PreconditionFailed", "`If-Match` or `If-None-Match` does not hold (`precondition_failed`). On one contact they are evaluated against its `ETag` (`\"<version>\"`); an operation on a collection has no entity tag, so there `If-Match: *` and a list of `If-None-Match` tags hold, while a list of `If-Match` tags and `If-None-Match: *` fail (RFC 9110 §13.2)."),
    ("429", "TooManyRequests", "The account spent its budget (`rate_limited`) or runs its maximum of concurrent exports (`too_many_exports`); `Retry-After` says when to retry, `RateLimit-*` describe the budget."),
    ("500", "InternalError", "Unexpected failure (`internal_error`); the body never carries internals."),
    ("503", "Unavailable", "The database is unreachable or saturated (`service_unavailable`); `Retry-After` says when to retry."),
];

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

/// Headers of a shared error response.
fn response_headers(status: &str) -> &'static [(&'static str, &'static str)] {
    match status {
        "429" => &[
            ("Retry-After", "Seconds to wait before retrying."),
            (
                "RateLimit-Limit",
                "Requests per minute of the spent budget (rate_limited only).",
            ),
            ("RateLimit-Remaining", "0 (rate_limited only)."),
            (
                "RateLimit-Reset",
                "Seconds until a request is allowed again (rate_limited only).",
            ),
        ],
        "503" => &[("Retry-After", "Seconds to wait before retrying.")],
        _ => &[],
    }
}

fn add_shared(op: &mut Operation, write: bool) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    for (status, name, _) in SHARED {
        let applies = match *status {
            // A malformed request head (a header line without a colon, say) is a 400 anywhere.
            "400" => true,
            "401" | "403" | "429" | "503" => secured,
            "408" | "413" | "415" | "422" => has_body,
            "412" => write && secured,
            _ => true,
        };
        if applies && !op.responses.responses.contains_key(*status) {
            op.responses.responses.insert(
                status.to_string(),
                RefOr::Ref(Ref::from_response_name(*name)),
            );
        }
    }
}

fn scope_note(op: &mut Operation) {
    let Some(reqs) = &op.security else { return };
    let value = serde_json::to_value(reqs).unwrap_or_default();
    let mut scopes: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("bearer"))
        .filter_map(|s| s.as_array())
        .flatten()
        .filter_map(|s| s.as_str().map(|s| format!("`{s}`")))
        .collect();
    scopes.dedup();
    if scopes.is_empty() {
        return;
    }
    let note = format!("\n\nRequired scope: {}.", scopes.join(" or "));
    let description = op.description.get_or_insert_with(String::new);
    description.push_str(&note);
}

/// Every write evaluates `If-Match` and `If-None-Match` or refuses (RFC 9110 §13.2.2): each
/// documents both headers.
fn precondition_params(op: &mut Operation) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    let pattern = r#"^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)$"#;
    let params = op.parameters.get_or_insert_with(Vec::new);
    for (name, what) in [
        ("If-Match", "Perform the write only if the current version is one of these entity tags (`\"<version>\"`, strong comparison), or, with `*`, if there is a current representation."),
        ("If-None-Match", "Perform the write only if the current version is none of these entity tags (weak comparison), or, with `*`, if there is no current representation (an upsert then only creates)."),
    ] {
        let present = params.iter().any(|p| match p {
            RefOr::T(p) => p.name == name,
            RefOr::Ref(_) => false,
        });
        if present {
            continue;
        }
        let schema = utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(pattern));
        params.push(RefOr::T(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .description(Some(what))
                .schema(Some(schema))
                .build(),
        ));
    }
}

/// `schema_with` parameters carry their description in the schema: move it to the parameter
/// (where clients look), and describe array query parameters as comma-separated
/// (`style: form`, `explode: false`), which is how every list parameter is sent.
fn lift_param_descriptions(op: &mut Operation) {
    use utoipa::openapi::path::{ParameterIn, ParameterStyle};
    for param in op.parameters.iter_mut().flatten() {
        let RefOr::T(param) = param else { continue };
        let Some(RefOr::T(schema)) = &param.schema else {
            continue;
        };
        let mut value = serde_json::to_value(schema).unwrap_or_default();
        let Some(obj) = value.as_object_mut() else {
            continue;
        };
        if param.parameter_in == ParameterIn::Query && obj.get("type") == Some(&"array".into()) {
            param.style = Some(ParameterStyle::Form);
            param.explode = Some(false);
        }
        if let Some(serde_json::Value::String(d)) = obj.remove("description") {
            if param.description.is_none() {
                param.description = Some(d);
                param.schema = serde_json::from_value(value).ok().map(RefOr::T);
            }
        }
    }
}

/// The complete document, exactly as the server serves it at `/api/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    for (status, name, description) in SHARED {
        let mut response = problem_response(description);
        for (header, what) in response_headers(status) {
            let mut h = utoipa::openapi::header::Header::new(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer),
            );
            h.description = Some(what.to_string());
            response.headers.insert(header.to_string(), RefOr::T(h));
        }
        components
            .responses
            .insert(name.to_string(), RefOr::T(response));
    }
    fields::refine(components);
    for (path, item) in doc.paths.paths.iter_mut() {
        // The merge states its preconditions in its description instead of as header
        // parameters: the fuzzer's coverage phase derives header variants of a merge from the
        // generated body before its hook can give them real sources (scripts/lib/fuzz/hooks.py),
        // and would report the resulting 422s. Evaluated all the same (preconditions tests).
        let documents_headers = !path.ends_with("/merge");
        for (op, write) in [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ] {
            let Some(op) = op else { continue };
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            if write && secured && documents_headers {
                precondition_params(op);
            }
            add_shared(op, write);
            scope_note(op);
            lift_param_descriptions(op);
        }
    }
    doc
}

/// The document as pretty JSON with a trailing newline: the form committed in `openapi/`.
pub fn document_json() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("OpenAPI serialises");
    s.push('\n');
    s
}

/// Schemas of the request fields whose rules JSON Schema can state.
pub mod fields;
#[cfg(test)]
mod fields_check;
