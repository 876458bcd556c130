//! `POST /contacts/{id}/merge`: fold duplicates into one contact.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Auth, Write};
use crate::db::{retry_transient, with_conn, Pool};
use crate::error::{ApiError, FieldError, Problem};
use crate::extract::Body;
use crate::models::Contact;
use crate::repo::merge::{self, Refused};
use crate::routes::contacts::contact_response;
use crate::routes::precondition::Preconditions;

/// Most sources in one merge.
pub const MAX_SOURCES: usize = 100;

fn source_ids() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let schema = serde_json::json!({
        "description": "1 to 100 distinct ids of contacts of this account, other than the target.",
        "type": "array", "minItems": 1, "maxItems": MAX_SOURCES, "uniqueItems": true,
        "items": {"type": "integer", "format": "int64"}
    });
    utoipa::openapi::RefOr::T(serde_json::from_value(schema).expect("a valid schema"))
}

/// Body of the merge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"source_ids": [1043, 1077]}))]
pub struct MergeRequest {
    /// 1 to 100 distinct ids of contacts of this account, other than the target.
    #[schema(schema_with = source_ids)]
    #[serde(deserialize_with = "crate::extract::integral_vec")]
    pub source_ids: Vec<i64>,
}

/// Merge contacts into this one.
///
/// In one transaction: moves the sources' sessions to the target, fills the target's empty
/// fields from the sources (most recently seen first), merges `payload` at the top level
/// (the target's keys win, then the newer source's), sums `sessions_count`, keeps the earliest
/// `created_at` and the latest `last_seen_at` (with that contact's channel, chatbot and
/// session), then deletes the sources. A merged-away id then answers 410 with
/// `Link: </api/v1/contacts/{target}>; rel="canonical"` on GET, PATCH and DELETE, and later
/// upserts of a source's session update the target. Unknown or other accounts' source ids,
/// duplicates and the target itself among the sources are a 422 naming them; nothing changes.
/// A source already merged into this same target counts as done, so a retried merge answers
/// 200 with the target (unchanged when every source was). `If-Match` and `If-None-Match` are
/// evaluated against the target's `ETag` (412 when they do not hold).
#[utoipa::path(
    tag = "contacts",
    params(("id" = i64, Path, description = "Target contact id")),
    request_body(content = MergeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The merged contact.", body = Contact,
         headers(("ETag" = String, description = "Quoted version"))),
        (status = 404, description = "No such target contact in this account.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The target was itself merged away (`contact_merged`, with `Link`).", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["contacts:write"]))
)]
#[post("/contacts/{id}/merge")]
pub async fn merge_contacts(
    auth: Auth<Write>,
    pool: web::Data<Pool>,
    id: web::Path<i64>,
    req: HttpRequest,
    body: Body<MergeRequest>,
) -> Result<HttpResponse, ApiError> {
    let cond = Preconditions::from_request(&req)?;
    let (account, target) = (auth.0.account_id, id.into_inner());
    let sources = body.0.source_ids;
    let mut errors = Vec::new();
    if sources.is_empty() || sources.len() > MAX_SOURCES {
        errors.push(FieldError::new(
            "source_ids",
            format!("must hold 1 to {MAX_SOURCES} ids"),
        ));
    }
    for (i, sid) in sources.iter().enumerate() {
        if *sid == target {
            errors.push(FieldError::new(
                format!("source_ids[{i}]"),
                "a contact cannot be merged into itself",
            ));
        } else if sources[..i].contains(sid) {
            errors.push(FieldError::new(format!("source_ids[{i}]"), "duplicate id"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let actor = auth.0.sub.clone();
    let outcome = with_conn(&pool, move |conn| {
        Ok(retry_transient(|| {
            use diesel::Connection;
            conn.transaction(|conn| {
                merge::merge(conn, account, target, &sources, &actor, |v| {
                    cond.allows(Some(v))
                })
            })
        })?
        .map_err(|refused| (refused, sources)))
    })
    .await?;
    match outcome {
        Ok(contact) => Ok(contact_response(StatusCode::OK, &contact)),
        Err((Refused::TargetNotFound, _)) => Err(ApiError::contact_not_found(target)),
        Err((Refused::TargetMerged(to), _)) => Err(ApiError::Merged(to)),
        Err((Refused::Precondition(v), _)) => Err(Preconditions::failed(Some(v))),
        Err((Refused::SourcesNotFound(missing), sources)) => Err(ApiError::Validation(
            sources
                .iter()
                .enumerate()
                .filter(|(_, s)| missing.contains(s))
                .map(|(i, s)| {
                    FieldError::new(format!("source_ids[{i}]"), format!("contact {s} not found"))
                })
                .collect(),
        )),
    }
}
