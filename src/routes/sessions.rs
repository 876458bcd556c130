//! Chat sessions: the chatbot runtime's upsert (the hot path) and a contact's session list.

use actix_web::http::StatusCode;
use actix_web::{get, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, Read, Upsert};
use crate::coalesce::Coalescer;
use crate::db::{with_conn, Pool};
use crate::error::{ApiError, Problem};
use crate::extract::{Body, Query};
use crate::metrics::Metrics;
use crate::models::{Contact, ContactSession};
use crate::repo::{contacts, sessions};
use crate::routes::contacts::contact_response;
use crate::routes::paging;
use crate::routes::precondition::Preconditions;
use crate::validate::{self, Check};

/// Body of the session upsert: what the chatbot learned in this interaction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "channel": "whatsapp", "name": "Ada Lovelace", "phone": "+447700900123",
    "country_code": "GB", "payload": {"plan": "pro"}
}))]
pub struct UpsertContactRequest {
    /// Channel slug of this interaction, `[a-z0-9_-]{1,32}` (`website`, `whatsapp`, ...).
    #[schema(schema_with = crate::openapi::fields::channel)]
    pub channel: String,
    /// Name; absent, null or empty keeps the stored value.
    #[schema(schema_with = crate::openapi::fields::name)]
    pub name: Option<String>,
    /// Email; absent, null or empty keeps the stored value.
    #[schema(schema_with = crate::openapi::fields::email)]
    pub email: Option<String>,
    /// Phone, E.164 or national with `country_code` (of this request) as region hint.
    #[schema(schema_with = crate::openapi::fields::phone)]
    pub phone: Option<String>,
    /// Absolute http(s) URL.
    #[schema(schema_with = crate::openapi::fields::avatar_url)]
    pub avatar_url: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(schema_with = crate::openapi::fields::country_code)]
    pub country_code: Option<String>,
    /// IPv4 or IPv6 of the visitor.
    #[schema(schema_with = crate::openapi::fields::ip_address)]
    pub ip_address: Option<String>,
    /// JSON object (≤ 16 KiB) merged key by key into the stored payload.
    #[schema(schema_with = crate::openapi::fields::payload)]
    pub payload: Option<serde_json::Value>,
    /// A consent statement; a change is appended to the contact's consent history.
    pub consent: Option<crate::routes::consent::ConsentRequest>,
}

/// Upsert the contact of a chat session.
///
/// Creates the contact of `(chatbot_id, session_id)` on first contact (201 with `Location`)
/// and updates it afterwards (200). Absent, null or empty fields keep their stored values;
/// `payload` is merged key by key (top level); every call moves `last_seen_at` and bumps
/// `version`. Concurrent calls for one session yield exactly one contact. A token with a
/// `chatbot_id` claim may upsert for that chatbot only (403 otherwise).
#[utoipa::path(
    tag = "sessions",
    params(
        ("chatbot_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[^,/ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f]([^,/\x00-\x1f\x7f-\x9f]{0,126}[^,/ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?$", description = "Chatbot id (1–128 characters, no `/`, no `,`, no control characters, no space at either end)"),
        ("session_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[^/\x00-\x1f\x7f-\x9f]+$", description = "The chatbot's session id (1–128 characters, no `/`, no control characters)"),
    ),
    request_body(content = UpsertContactRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated the session's contact.", body = Contact,
         headers(("ETag" = String, description = "Quoted version"))),
        (status = 201, description = "Created the session's contact.", body = Contact,
         headers(("Location" = String, description = "URL of the new contact"),
                 ("ETag" = String, description = "Quoted version"))),
    ),
    security(("bearer" = ["contacts:upsert"]), ("bearer" = ["contacts:write"]))
)]
#[put("/chatbots/{chatbot_id}/sessions/{session_id}/contact")]
pub async fn upsert_session_contact(
    auth: Auth<Upsert>,
    pool: web::Data<Pool>,
    metrics: web::Data<Metrics>,
    coalescer: web::Data<Coalescer>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: Body<UpsertContactRequest>,
) -> Result<HttpResponse, ApiError> {
    let cond = Preconditions::from_request(&req)?;
    let (chatbot_id, session_id) = path.into_inner();
    let mut check = Check::default();
    let chatbot_id = check.req("chatbot_id", &chatbot_id, validate::chatbot_id);
    let session_id = check.req("session_id", &session_id, validate::identifier);
    check.finish()?;
    auth.0.check_chatbot(&chatbot_id)?;
    let upsert = to_upsert(chatbot_id, session_id, body.0)?;
    let (account, actor) = (auth.0.account_id, auth.0.sub.clone());
    let (contact, created) = if cond.is_empty() {
        coalescer
            .into_inner()
            .upsert(&pool, account, actor, upsert)
            .await?
    } else {
        // A conditional upsert is its own transaction: the group commit cannot hold a
        // condition per request.
        with_conn(&pool, move |conn| {
            use diesel::Connection;
            conn.transaction(|conn| conditional_upsert(conn, account, &upsert, &actor, &cond))
        })
        .await?
    };
    metrics.upserted(created.into(), (!created).into());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(contact_response(status, &contact))
}

/// The upsert under `If-Match` / `If-None-Match`, evaluated against the session's contact (no
/// contact: no current representation, so `If-None-Match: *` creates only and `If-Match`
/// fails); call inside a transaction.
fn conditional_upsert(
    conn: &mut diesel::PgConnection,
    account: i64,
    upsert: &contacts::SessionUpsert,
    actor: &str,
    cond: &Preconditions,
) -> Result<(Contact, bool), ApiError> {
    let current = sessions::contact_version_for_update(
        conn,
        account,
        &upsert.chatbot_id,
        &upsert.session_id,
    )?;
    if !cond.allows(current) {
        return Err(Preconditions::failed(current));
    }
    let (contact, created) = contacts::upsert_session(conn, account, upsert, actor)?;
    // No row to lock when the session was new: a concurrent call may have created it since;
    // then the condition was evaluated against a state that no longer holds (the transaction
    // rolls back).
    if current.is_none() && !created && !cond.allows(Some(contact.version - 1)) {
        return Err(Preconditions::failed(Some(contact.version - 1)));
    }
    Ok((contact, created))
}

/// Validates one upsert item into the repository's input.
pub fn to_upsert(
    chatbot_id: String,
    session_id: String,
    r: UpsertContactRequest,
) -> Result<contacts::SessionUpsert, ApiError> {
    let mut check = Check::default();
    let channel = check.req("channel", &r.channel, validate::channel);
    let country_code = check.opt(
        "country_code",
        r.country_code.as_deref(),
        validate::country_code,
    );
    let phone = check.opt("phone", r.phone.as_deref(), |p| {
        validate::phone(p, country_code.as_deref())
    });
    let payload = match &r.payload {
        None | Some(serde_json::Value::Null) => None,
        Some(p) => match validate::payload(p) {
            Ok(map) => Some(serde_json::Value::Object(map)),
            Err(m) => {
                check.fail("payload", m);
                None
            }
        },
    };
    let upsert = contacts::SessionUpsert {
        chatbot_id,
        session_id,
        channel,
        name: check.opt("name", r.name.as_deref(), validate::name),
        email: check.opt("email", r.email.as_deref(), validate::email),
        phone,
        avatar_url: check.opt("avatar_url", r.avatar_url.as_deref(), validate::avatar_url),
        country_code,
        ip_address: check.opt("ip_address", r.ip_address.as_deref(), validate::ip_address),
        payload,
        consent: r.consent.as_ref().map(|c| c.to_input(&mut check)),
    };
    check.finish()?;
    Ok(upsert)
}

/// Query of `GET /contacts/{id}/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionListParams {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = crate::openapi::fields::cursor)]
    pub cursor: Option<String>,
}

/// A page of a contact's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    /// Sessions, newest `last_seen_at` first.
    pub data: Vec<ContactSession>,
    /// Cursor of the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SessionCursor {
    c: i64,
    t: DateTime<Utc>,
    b: String,
    s: String,
}

/// List a contact's sessions.
///
/// The conversations linked to the contact, newest `last_seen_at` first, keyset-paginated.
#[utoipa::path(
    tag = "sessions",
    params(("id" = i64, Path, description = "Contact id"), SessionListParams),
    responses(
        (status = 200, description = "A page of sessions.", body = SessionPage),
        (status = 404, description = "No such contact in this account.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The contact was merged into another (`contact_merged`, with `Link`); its sessions are the target's now.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["contacts:read"]))
)]
#[get("/contacts/{id}/sessions")]
pub async fn list_contact_sessions(
    auth: Auth<Read>,
    pool: web::Data<Pool>,
    id: web::Path<i64>,
    params: Query<SessionListParams>,
) -> Result<HttpResponse, ApiError> {
    let (account, id, p) = (auth.0.account_id, id.into_inner(), params.0);
    let limit = paging::limit(p.limit)?;
    let after = match &p.cursor {
        None => None,
        Some(c) => {
            let cur: SessionCursor = crate::cursor::decode(c)?;
            if cur.c != id {
                return Err(crate::cursor::invalid());
            }
            crate::cursor::time(&cur.t)?;
            Some((cur.t, cur.b, cur.s))
        }
    };
    let mut rows = with_conn(&pool, move |conn| {
        if contacts::find(conn, account, id)?.is_none() {
            return Err(crate::routes::contacts::missing(conn, account, id));
        }
        Ok(sessions::list_for_contact(
            conn,
            account,
            id,
            after.as_ref(),
            limit + 1,
        )?)
    })
    .await?;
    let next_cursor = paging::cut(&mut rows, limit, |s| {
        crate::cursor::encode(&SessionCursor {
            c: id,
            t: s.last_seen_at,
            b: s.chatbot_id.clone(),
            s: s.session_id.clone(),
        })
    });
    Ok(HttpResponse::Ok().json(SessionPage {
        data: rows,
        next_cursor,
    }))
}
