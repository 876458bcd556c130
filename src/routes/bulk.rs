//! `POST /contacts/bulk-delete`: delete many contacts by id or by list filter.

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, Delete};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Body;
use crate::repo::{bulk, list};
use crate::routes::filters::FilterParams;

/// Most ids in one request.
pub const MAX_IDS: usize = 1000;

/// Body of the bulk delete: exactly one of `ids` and `filter`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"filter": {"channel": "telegram", "last_seen_to": "2026-01-01"}, "dry_run": true}))]
pub struct BulkDeleteRequest {
    /// Up to 1000 contact ids; ids that do not exist in the account are skipped.
    #[serde(default, deserialize_with = "crate::extract::integral_opt_vec")]
    pub ids: Option<Vec<i64>>,
    /// The list filters (`q`, `channel`, `chatbot_id`, `country_code`, `created_from`,
    /// `created_to`, `last_seen_from`, `last_seen_to`, `has_email`, `has_phone`, `returning`),
    /// with the same value formats as the list's query parameters. `{}` matches every contact;
    /// a null value is a 422 (leave the key out instead), so an unset variable cannot widen a
    /// delete.
    #[schema(schema_with = filter_schema)]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// Count the matching contacts without deleting them.
    #[serde(default)]
    pub dry_run: bool,
}

/// The filter object (null: none): values are strings, booleans or numbers, never null (a 422).
fn filter_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    let value: serde_json::Value = serde_json::json!({
        "type": ["object", "null"],
        "description": "The list filters, with the list's value formats; a null value inside is refused (leave the key out).",
        "additionalProperties": {"type": ["string", "boolean", "number"]}
    });
    utoipa::openapi::RefOr::T(serde_json::from_value(value).expect("a valid schema"))
}

/// What a bulk delete did (or would do).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"deleted": 1250}))]
pub struct BulkDeleteResponse {
    /// Contacts deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<i64>,
    /// Contacts that match (`dry_run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<i64>,
}

/// Turns the JSON filter object into the list's checked filter. The values take the list's
/// query-parameter formats (`"has_email": "true"` as well as `true`; a number is its text; null
/// is refused) and go through the list's own parser, so both accept exactly the same filters;
/// an error names `filter.<key>`.
fn parse_filter(
    obj: serde_json::Map<String, serde_json::Value>,
) -> Result<list::ContactFilter, ApiError> {
    use serde_json::Value;
    let known: Vec<String> = <FilterParams as utoipa::IntoParams>::into_params(|| None)
        .into_iter()
        .map(|p| p.name)
        .collect();
    if let Some(k) = obj.keys().find(|k| !known.contains(k)) {
        return Err(ApiError::UnknownField(format!("filter.{k}")));
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &obj {
        let text = match v {
            // Not "absent": a client's unset variable would widen a delete to every contact.
            Value::Null => {
                return Err(ApiError::field(
                    format!("filter.{k}"),
                    "null is not a filter value; leave the key out to not filter on it",
                ))
            }
            Value::String(s) => s.clone(),
            Value::Bool(b) if matches!(k.as_str(), "has_email" | "has_phone" | "returning") => {
                b.to_string()
            }
            Value::Bool(_) => {
                return Err(ApiError::field(
                    format!("filter.{k}"),
                    "expected a string (lists are comma-separated)",
                ))
            }
            // A number is the text of a search or a chatbot id; nothing else can be one.
            Value::Number(n) if matches!(k.as_str(), "q" | "chatbot_id") => n.to_string(),
            Value::Number(_) => {
                return Err(ApiError::field(
                    format!("filter.{k}"),
                    "expected a string (lists are comma-separated)",
                ))
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(ApiError::field(
                    format!("filter.{k}"),
                    "expected a string (lists are comma-separated) or a boolean",
                ))
            }
        };
        query.append_pair(k, &text);
    }
    crate::extract::parse_query::<FilterParams>(&query.finish())
        .and_then(|params| params.to_filter())
        .map_err(|e| match e {
            ApiError::InvalidParameter { field, message } => {
                ApiError::field(format!("filter.{field}"), message)
            }
            other => other,
        })
}

/// Delete many contacts.
///
/// By `ids` (up to 1000; ids unknown in this account are skipped) or by `filter` (the list
/// filters; `{}` matches every contact), permanently with their sessions. With
/// `"dry_run": true` nothing is deleted and the answer is `{"matched": n}`; otherwise
/// `{"deleted": n}`. A filter delete runs in transactions of 1000 contacts, so it never holds
/// long locks; contacts created while it runs may or may not be deleted.
#[utoipa::path(
    tag = "contacts",
    request_body(content = BulkDeleteRequest, content_type = "application/json"),
    responses((status = 200, description = "How many were deleted (or match).", body = BulkDeleteResponse)),
    security(("bearer" = ["contacts:delete"]))
)]
#[post("/contacts/bulk-delete")]
pub async fn bulk_delete_contacts(
    auth: Auth<Delete>,
    _preconditions: crate::routes::precondition::OnCollection,
    pool: web::Data<Pool>,
    body: Body<BulkDeleteRequest>,
) -> Result<HttpResponse, ApiError> {
    let r = body.0;
    let account = auth.0.account_id;
    let dry = r.dry_run;
    let actor = auth.0.sub.clone();
    let n = match (r.ids, r.filter) {
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > MAX_IDS {
                return Err(ApiError::field(
                    "ids",
                    format!("must hold 1 to {MAX_IDS} ids"),
                ));
            }
            let actor = actor.clone();
            with_conn(&pool, move |conn| {
                Ok(if dry {
                    bulk::count_ids(conn, account, &ids)?
                } else {
                    bulk::delete_ids(conn, account, &ids, &actor)?
                })
            })
            .await?
        }
        (None, Some(obj)) => {
            let filter = parse_filter(obj)?;
            if dry {
                with_conn(&pool, move |conn| Ok(list::count(conn, account, &filter)?)).await?
            } else {
                let mut total = 0;
                loop {
                    // One batch per pooled checkout: other requests get connections between.
                    let (f, actor) = (filter.clone(), actor.clone());
                    let (matched, deleted) = with_conn(&pool, move |conn| {
                        Ok(bulk::delete_filtered_batch(conn, account, &f, &actor)?)
                    })
                    .await?;
                    if matched == 0 {
                        break total;
                    }
                    total += deleted;
                }
            }
        }
        _ => {
            return Err(ApiError::field(
                "ids",
                "send exactly one of `ids` and `filter`",
            ))
        }
    };
    Ok(HttpResponse::Ok().json(if dry {
        BulkDeleteResponse {
            deleted: None,
            matched: Some(n),
        }
    } else {
        BulkDeleteResponse {
            deleted: Some(n),
            matched: None,
        }
    }))
}
