//! `POST /contacts/batch-upsert`: many session upserts in one request and one transaction.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, Upsert};
use crate::db::{with_conn, Pool};
use crate::error::{ApiError, Problem};
use crate::extract::Body;
use crate::metrics::Metrics;
use crate::models::Contact;
use crate::repo::{batch, contacts::SessionUpsert};
use crate::routes::sessions::{to_upsert, UpsertContactRequest};
use crate::validate::{self, Check};

/// Most items in one batch.
pub const MAX_ITEMS: usize = 500;
/// Largest batch body: 500 items with sizeable payloads.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// One item: a session upsert with its chatbot and session in the body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// Chatbot id (1–128 characters, no `/`, no `,`, no space at either end).
    #[schema(schema_with = crate::openapi::fields::chatbot_id)]
    pub chatbot_id: String,
    /// Session id (1–128 characters, no `/`).
    #[schema(schema_with = crate::openapi::fields::identifier)]
    pub session_id: String,
    /// Channel slug.
    #[schema(schema_with = crate::openapi::fields::channel)]
    pub channel: String,
    /// Name.
    #[schema(schema_with = crate::openapi::fields::name)]
    pub name: Option<String>,
    /// Email.
    #[schema(schema_with = crate::openapi::fields::email)]
    pub email: Option<String>,
    /// Phone.
    #[schema(schema_with = crate::openapi::fields::phone)]
    pub phone: Option<String>,
    /// Avatar URL.
    #[schema(schema_with = crate::openapi::fields::avatar_url)]
    pub avatar_url: Option<String>,
    /// Country.
    #[schema(schema_with = crate::openapi::fields::country_code)]
    pub country_code: Option<String>,
    /// IP address.
    #[schema(schema_with = crate::openapi::fields::ip_address)]
    pub ip_address: Option<String>,
    /// Payload object, merged key by key.
    #[schema(schema_with = crate::openapi::fields::payload)]
    pub payload: Option<serde_json::Value>,
    /// A consent statement.
    pub consent: Option<crate::routes::consent::ConsentRequest>,
}

/// `items`: 1 to 500 values, each a `BatchItem`; one that is not fails alone (its result holds the
/// problem, and the answer is a 207), so any value is a well-formed item here.
fn batch_items() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let schema = serde_json::json!({
        "description": "1 to 500 items, each validated on its own as a `BatchItem`: an invalid \
                        item fails alone (its result carries the problem; the answer is a 207).",
        "type": "array", "minItems": 1, "maxItems": 500,
        "items": {"anyOf": [
            {"$ref": "#/components/schemas/BatchItem"},
            {"type": ["object", "array", "string", "number", "boolean", "null"]}
        ]}
    });
    utoipa::openapi::RefOr::T(serde_json::from_value(schema).expect("a valid schema"))
}

/// Body of the batch upsert.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [
    {"chatbot_id": "support-bot", "session_id": "wa-447700900123", "channel": "whatsapp", "name": "Ada Lovelace"},
    {"chatbot_id": "support-bot", "session_id": "web-8f2c", "channel": "website", "email": "grace@example.com"}
]}))]
pub struct BatchRequest {
    /// 1 to 500 items, each validated on its own.
    #[schema(schema_with = batch_items)]
    pub items: Vec<serde_json::Value>,
}

/// The outcome of one item.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// 201 created, 200 updated, or the item's error status.
    pub status: u16,
    /// The contact after this item (on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    /// The item's problem (on failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// Results in input order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"results": [
    {"status": 201, "contact": {"id": 1042, "name": "Ada Lovelace", "email": null, "phone": null, "avatar_url": null, "country_code": null, "ip_address": null, "channel": "whatsapp", "chatbot_id": "support-bot", "session_id": "wa-447700900123", "payload": {}, "sessions_count": 1, "created_at": "2026-11-24T10:15:00Z", "updated_at": "2026-11-24T10:15:00Z", "last_seen_at": "2026-11-24T10:15:00Z", "version": 1}},
    {"status": 422, "error": {"type": "urn:contacts-api:problem:validation_failed", "title": "Unprocessable Entity", "status": 422, "detail": "the request has invalid fields", "code": "validation_failed", "errors": [{"field": "email", "message": "not a valid email address"}]}}
]}))]
pub struct BatchResponse {
    /// `results[i]` is the outcome of `items[i]`.
    pub results: Vec<BatchResult>,
}

fn failure(e: ApiError) -> BatchResult {
    BatchResult {
        status: actix_web::ResponseError::status_code(&e).as_u16(),
        contact: None,
        error: Some(e.problem()),
    }
}

/// Checks one item; the error is that item's alone.
fn parse_item(
    principal: &crate::auth::Principal,
    raw: serde_json::Value,
) -> Result<SessionUpsert, ApiError> {
    let bytes = serde_json::to_vec(&raw).map_err(|e| ApiError::internal(e.to_string()))?;
    let item: BatchItem = crate::extract::parse(&bytes)?;
    let mut check = Check::default();
    let chatbot_id = check.req("chatbot_id", &item.chatbot_id, validate::chatbot_id);
    let session_id = check.req("session_id", &item.session_id, validate::identifier);
    check.finish()?;
    principal.check_chatbot(&chatbot_id)?;
    let request = UpsertContactRequest {
        channel: item.channel,
        name: item.name,
        email: item.email,
        phone: item.phone,
        avatar_url: item.avatar_url,
        country_code: item.country_code,
        ip_address: item.ip_address,
        payload: item.payload,
        consent: item.consent,
    };
    to_upsert(chatbot_id, session_id, request)
}

/// Upsert many sessions' contacts.
///
/// Up to 500 items of the session upsert's shape plus `chatbot_id` and `session_id`, applied in
/// one transaction. Each item is validated on its own: an invalid item fails alone with its
/// problem, the valid ones are applied. Items for the same session apply in input order, as if
/// sent one after the other. Answers 200 when every item succeeded, 207 otherwise;
/// `results[i]` is `{status, contact}` or `{status, error}` for `items[i]`. Bodies over 4 MiB
/// are refused with 413.
#[utoipa::path(
    tag = "sessions",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every item succeeded.", body = BatchResponse),
        (status = 207, description = "Some items failed; see each result's `status`.", body = BatchResponse),
    ),
    security(("bearer" = ["contacts:upsert"]), ("bearer" = ["contacts:write"]))
)]
#[post("/contacts/batch-upsert")]
pub async fn batch_upsert_contacts(
    auth: Auth<Upsert>,
    _preconditions: crate::routes::precondition::OnCollection,
    pool: web::Data<Pool>,
    metrics: web::Data<Metrics>,
    body: Body<BatchRequest, BODY_LIMIT>,
) -> Result<HttpResponse, ApiError> {
    let items = body.0.items;
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ApiError::field(
            "items",
            format!("must hold 1 to {MAX_ITEMS} items"),
        ));
    }
    let parsed: Vec<Result<SessionUpsert, ApiError>> = items
        .into_iter()
        .map(|raw| parse_item(&auth.0, raw))
        .collect();
    let valid: Vec<SessionUpsert> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let account = auth.0.account_id;
    let actor = auth.0.sub.clone();
    let applied = if valid.is_empty() {
        Vec::new()
    } else {
        with_conn(&pool, move |conn| {
            Ok(crate::db::retry_transient(|| {
                use diesel::Connection;
                conn.transaction(|conn| batch::upsert_batch(conn, account, &valid, &actor))
            })?)
        })
        .await?
    };
    let created = applied
        .iter()
        .filter(|r| matches!(r, Ok((_, true))))
        .count();
    let updated = applied
        .iter()
        .filter(|r| matches!(r, Ok((_, false))))
        .count();
    metrics.upserted(created as u64, updated as u64);
    let mut applied = applied.into_iter();
    let results: Vec<BatchResult> = parsed
        .into_iter()
        .map(|p| match p {
            Err(e) => failure(e),
            Ok(_) => match applied.next().expect("one result per valid item") {
                Ok((contact, created)) => BatchResult {
                    status: if created { 201 } else { 200 },
                    contact: Some(contact),
                    error: None,
                },
                Err(e) => failure(e.into()),
            },
        })
        .collect();
    let all_ok = results.iter().all(|r| r.error.is_none());
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(HttpResponse::build(status).json(BatchResponse { results }))
}
