//! Contact resources: create, get, patch, delete and list (`/api/v1/contacts...`).

use actix_web::http::header;
use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Auth, Delete, Read, Write};
use crate::db::{with_conn, Pool};
use crate::error::{ApiError, Problem};
use crate::extract::Body;
use crate::models::{Contact, NewContact};
use crate::repo::audit;
use crate::repo::contacts::{self as repo, Deleted};
use crate::routes::precondition::Preconditions;
use crate::validate::{self, Check};

/// 404 for an unknown id, or 410 (with the canonical link) for an id merged into another.
pub fn missing(conn: &mut diesel::PgConnection, account: i64, id: i64) -> ApiError {
    match crate::repo::merge::redirect(conn, account, id) {
        Ok(Some(target)) => ApiError::Merged(target),
        Ok(None) => ApiError::contact_not_found(id),
        Err(e) => e.into(),
    }
}

/// `200`/`201` with the contact, its `ETag`, and `Location` when created.
pub fn contact_response(status: actix_web::http::StatusCode, contact: &Contact) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::ETAG, format!("\"{}\"", contact.version)));
    if status == actix_web::http::StatusCode::CREATED {
        res.insert_header((header::LOCATION, format!("/api/v1/contacts/{}", contact.id)));
    }
    res.json(contact)
}

/// Body of `POST /contacts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "chatbot_id": "support-bot", "channel": "website", "session_id": "web-8f2c",
    "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+447700900123",
    "country_code": "GB", "payload": {"plan": "pro"}
}))]
pub struct CreateContactRequest {
    /// Chatbot the contact belongs to (1–128 characters, no `/`, no `,`, no space at either end).
    #[schema(schema_with = crate::openapi::fields::chatbot_id)]
    pub chatbot_id: String,
    /// Channel slug `[a-z0-9_-]{1,32}`.
    #[schema(schema_with = crate::openapi::fields::channel)]
    pub channel: String,
    /// Optional session to link; a session already linked to a contact is a 409.
    #[schema(schema_with = crate::openapi::fields::optional_identifier)]
    pub session_id: Option<String>,
    /// Name, trimmed, 1–200 characters; empty means null.
    #[schema(schema_with = crate::openapi::fields::name)]
    pub name: Option<String>,
    /// Email address.
    #[schema(schema_with = crate::openapi::fields::email)]
    pub email: Option<String>,
    /// Phone, E.164 or national with `country_code` as region hint.
    #[schema(schema_with = crate::openapi::fields::phone)]
    pub phone: Option<String>,
    /// Absolute http(s) URL.
    #[schema(schema_with = crate::openapi::fields::avatar_url)]
    pub avatar_url: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(schema_with = crate::openapi::fields::country_code)]
    pub country_code: Option<String>,
    /// IPv4 or IPv6.
    #[schema(schema_with = crate::openapi::fields::ip_address)]
    pub ip_address: Option<String>,
    /// JSON object, ≤ 16 KiB.
    #[schema(schema_with = crate::openapi::fields::payload)]
    pub payload: Option<serde_json::Value>,
    /// A consent statement, recorded as the first entry of the consent history.
    pub consent: Option<crate::routes::consent::ConsentRequest>,
}

/// Create a contact by hand.
///
/// Creates a contact for `chatbot_id`, optionally linked to `session_id`. Answers 201 with
/// `Location` and `ETag`. When the session is already linked to a contact the answer is 409 with
/// `existing_contact_id`. Empty strings count as null.
#[utoipa::path(
    tag = "contacts",
    request_body(content = CreateContactRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `Location` and `ETag` are set.", body = Contact,
         headers(("Location" = String, description = "URL of the new contact"),
                 ("ETag" = String, description = "Quoted version"))),
        (status = 409, description = "The session already belongs to a contact (`session_conflict`, with `existing_contact_id`).",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["contacts:write"]))
)]
#[post("/contacts")]
pub async fn create_contact(
    auth: Auth<Write>,
    _preconditions: crate::routes::precondition::OnCollection,
    pool: web::Data<Pool>,
    body: Body<CreateContactRequest>,
) -> Result<HttpResponse, ApiError> {
    let r = body.0;
    let mut check = Check::default();
    let chatbot_id = check.req("chatbot_id", &r.chatbot_id, validate::chatbot_id);
    let channel = check.req("channel", &r.channel, validate::channel);
    let session_id = r
        .session_id
        .as_deref()
        .and_then(|s| match validate::identifier(s) {
            Ok(v) => Some(v),
            Err(m) => {
                check.fail("session_id", m);
                None
            }
        });
    let country_code = check.opt(
        "country_code",
        r.country_code.as_deref(),
        validate::country_code,
    );
    let phone = check.opt("phone", r.phone.as_deref(), |p| {
        validate::phone(p, country_code.as_deref())
    });
    let new = NewContact {
        account_id: auth.0.account_id,
        name: check.opt("name", r.name.as_deref(), validate::name),
        email: check.opt("email", r.email.as_deref(), validate::email),
        phone,
        avatar_url: check.opt("avatar_url", r.avatar_url.as_deref(), validate::avatar_url),
        country_code,
        ip_address: check.opt("ip_address", r.ip_address.as_deref(), validate::ip_address),
        channel,
        chatbot_id,
        sessions_count: i32::from(session_id.is_some()),
        session_id,
        payload: match &r.payload {
            None => serde_json::json!({}),
            Some(p) => match validate::payload(p) {
                Ok(map) => serde_json::Value::Object(map),
                Err(m) => {
                    check.fail("payload", m);
                    serde_json::json!({})
                }
            },
        },
    };
    let consent = r.consent.as_ref().map(|c| c.to_input(&mut check));
    check.finish()?;
    let actor = auth.0.sub.clone();
    let created = with_conn(&pool, move |conn| {
        use diesel::Connection;
        Ok(conn.transaction(|conn| {
            let created = repo::create(conn, &new, &actor)?;
            match (&created, &consent) {
                (Ok(contact), Some(consent)) => Ok(
                    match crate::repo::consent::apply(conn, contact, consent, &actor)? {
                        Some(updated) => Ok(updated),
                        None => created,
                    },
                ),
                _ => Ok::<_, diesel::result::Error>(created),
            }
        })?)
    })
    .await?;
    match created {
        Ok(contact) => Ok(contact_response(
            actix_web::http::StatusCode::CREATED,
            &contact,
        )),
        Err(existing) => Err(ApiError::SessionConflict(existing)),
    }
}

/// Get a contact.
///
/// Answers the contact with `ETag: "<version>"`. An id of another account is answered as an
/// unknown id (404).
#[utoipa::path(
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id")),
    responses(
        (status = 200, description = "The contact.", body = Contact,
         headers(("ETag" = String, description = "Quoted version"))),
        (status = 404, description = "No such contact in this account.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The contact was merged into another (`contact_merged`); `Link: </api/v1/contacts/{target}>; rel=\"canonical\"`.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["contacts:read"]))
)]
#[get("/contacts/{id}", guard = "crate::routes::fallback::not_literal")]
pub async fn get_contact(
    auth: Auth<Read>,
    pool: web::Data<Pool>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (account, id) = (auth.0.account_id, id.into_inner());
    let contact = with_conn(&pool, move |conn| {
        repo::find(conn, account, id)?.ok_or_else(|| missing(conn, account, id))
    })
    .await?;
    Ok(contact_response(actix_web::http::StatusCode::OK, &contact))
}

/// Delete a contact.
///
/// Permanently deletes the contact and its sessions. With `If-Match`, a stale version is a 412.
#[utoipa::path(
    tag = "contacts",
    params(
        ("id" = i64, Path, description = "Contact id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)$"#, description = "`\"<version>\"` (or `*`, or a list of tags): delete only that version"),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such contact in this account.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The contact was merged into another (`contact_merged`); `Link: </api/v1/contacts/{target}>; rel=\"canonical\"`.", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` or `If-None-Match` does not hold at the current version (`precondition_failed`).", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["contacts:delete"]))
)]
#[delete("/contacts/{id}", guard = "crate::routes::fallback::not_literal")]
pub async fn delete_contact(
    auth: Auth<Delete>,
    pool: web::Data<Pool>,
    id: web::Path<i64>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (account, id) = (auth.0.account_id, id.into_inner());
    let cond = Preconditions::from_request(&req)?;
    let actor = auth.0.sub.clone();
    with_conn(&pool, move |conn| {
        use diesel::Connection;
        conn.transaction(
            |conn| match repo::delete(conn, account, id, |v| cond.allows(Some(v)))? {
                Deleted::Yes => {
                    audit::record(
                        conn,
                        account,
                        &audit::Event::new(&actor, "contact.deleted", Some(id)),
                    )?;
                    Ok(())
                }
                Deleted::NotFound => Err(missing(conn, account, id)),
                Deleted::VersionMismatch(v) => Err(Preconditions::failed(Some(v))),
            },
        )
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
