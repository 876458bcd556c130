//! The outermost middleware: request ids (every response carries `X-Request-Id`, the client's
//! when it sent a sane one; problem bodies repeat it), panics turned into 500s, `RateLimit-*`
//! headers, request metrics, and one access log line per request.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};
use futures_util::FutureExt;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::RateInfo;
use crate::metrics::{Metrics, RequestLabels};

/// The request id header, sent back on every response.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// A client-sent id is echoed only when it is short printable ASCII, so it can be logged safely.
fn client_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_string())
}

/// Middleware: assigns the id, runs the request inside its scope and catches its panics,
/// adds the `RateLimit-*` headers, records the metrics and logs the access line.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(client_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let started = Instant::now();
    let method = req.method().clone();
    // Taken now: after a panic the request, and with it its app data, is gone.
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    // A panicking handler answers 500 problem+json instead of dropping the connection; the
    // worker keeps serving (the panic was confined to this request's future).
    let outcome = REQUEST_ID
        .scope(id.clone(), AssertUnwindSafe(next.call(req)).catch_unwind())
        .await;
    let (mut res, panicked) = match outcome {
        Ok(Ok(res)) => (res.map_into_left_body(), false),
        Ok(Err(e)) => return Err(e),
        Err(panic) => (
            panic_response(&id, &method, panic).map_into_right_body(),
            true,
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, value);
    }
    let rate = res.request().extensions().get::<RateInfo>().copied();
    if let Some(rate) = rate {
        rate_headers(res.headers_mut(), &rate);
    }
    // The route pattern, never the raw path: session ids in paths are personal data.
    let route = match res.request().match_pattern() {
        _ if panicked => "panicked".into(),
        Some(pattern) => pattern,
        None => "unmatched".into(),
    };
    let account = res
        .request()
        .extensions()
        .get::<Principal>()
        .map(|p| p.account_id.to_string())
        .unwrap_or_else(|| "-".into());
    let seconds = started.elapsed().as_secs_f64();
    let status = res.status().as_u16();
    log::info!(
        target: "access",
        "request_id={id} account={account} method={method} route={route} status={status} duration_ms={:.2}",
        seconds * 1000.0
    );
    if let Some(metrics) = metrics {
        let labels = RequestLabels {
            method: method.to_string(),
            route,
            status,
        };
        metrics.observe(labels, seconds);
    }
    Ok(res)
}

/// The 500 answer to a request whose handler panicked. The request itself went down with the
/// panic, and actix cannot copy one before routing, so the response is paired with a bare
/// request of the same method; the access line names the route `panicked`.
fn panic_response(
    id: &str,
    method: &actix_web::http::Method,
    panic: Box<dyn std::any::Any + Send>,
) -> ServiceResponse {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let res = REQUEST_ID.sync_scope(id.to_string(), || {
        ApiError::internal(format!("handler panicked: {what}")).error_response()
    });
    let req = actix_web::test::TestRequest::default()
        .method(method.clone())
        .uri("/")
        .to_http_request();
    ServiceResponse::new(req, res)
}

/// The budget's state, in the header fields of draft-ietf-httpapi-ratelimit-headers.
fn rate_headers(headers: &mut HeaderMap, rate: &RateInfo) {
    let fields = [
        ("ratelimit-limit", rate.limit.to_string()),
        ("ratelimit-remaining", rate.remaining.to_string()),
        ("ratelimit-reset", rate.reset_secs.to_string()),
        ("ratelimit-policy", format!("{};w=60", rate.limit)),
    ];
    for (name, value) in fields {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}
