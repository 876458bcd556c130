//! `GET /contacts/duplicates`: groups of contacts sharing an email or a phone.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, Read};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Query;
use crate::repo::duplicates::{groups, MatchKind};
use crate::routes::paging;

/// Query of the duplicates listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DuplicateParams {
    /// Groups per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = crate::openapi::fields::cursor)]
    pub cursor: Option<String>,
    /// Only `email` or only `phone` groups (default both: email groups first).
    #[serde(rename = "match")]
    #[param(rename = "match", schema_with = match_kind)]
    pub match_: Option<String>,
}

/// One group of duplicates.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"match": "email", "value": "ada@example.com", "contact_ids": [1042, 1077]}))]
pub struct DuplicateGroup {
    /// `email` (compared ignoring case; `value` is lower case) or `phone` (E.164).
    #[serde(rename = "match")]
    #[schema(rename = "match", value_type = String, example = "email")]
    pub match_: MatchKind,
    /// The shared value.
    pub value: String,
    /// The contacts sharing it, ascending.
    pub contact_ids: Vec<i64>,
}

fn match_kind() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .description(Some(
            "Only `email` or only `phone` groups (default both: email groups first).",
        ))
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["email", "phone"]))
        .build()
}

/// A page of groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicatePage {
    /// Email groups by value, then phone groups by value.
    pub data: Vec<DuplicateGroup>,
    /// Cursor of the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DupCursor {
    k: MatchKind,
    v: String,
    m: Option<MatchKind>,
}

/// List duplicate contacts.
///
/// Groups of two or more contacts of this account sharing an email (case-insensitive) or a
/// phone (E.164): email groups ordered by value, then phone groups. A contact can appear in an
/// email group and a phone group. Merge a group with `POST /contacts/{id}/merge`.
#[utoipa::path(
    tag = "contacts",
    params(DuplicateParams),
    responses((status = 200, description = "A page of duplicate groups.", body = DuplicatePage)),
    security(("bearer" = ["contacts:read"]))
)]
#[get("/contacts/duplicates")]
pub async fn list_duplicate_contacts(
    auth: Auth<Read>,
    pool: web::Data<Pool>,
    params: Query<DuplicateParams>,
) -> Result<HttpResponse, ApiError> {
    let p = params.0;
    let limit = paging::limit(p.limit)?;
    let only = match p.match_.as_deref() {
        None => None,
        Some("email") => Some(MatchKind::Email),
        Some("phone") => Some(MatchKind::Phone),
        Some(_) => {
            return Err(ApiError::InvalidParameter {
                field: "match".into(),
                message: "expected email or phone".into(),
            })
        }
    };
    let (start_kind, start_after) = match &p.cursor {
        None => (only.unwrap_or(MatchKind::Email), String::new()),
        Some(c) => {
            let cur: DupCursor = crate::cursor::decode(c)?;
            if cur.m != only {
                return Err(crate::cursor::invalid());
            }
            (cur.k, cur.v)
        }
    };
    let account = auth.0.account_id;
    let mut out: Vec<DuplicateGroup> = with_conn(&pool, move |conn| {
        let mut out = Vec::new();
        let kinds = match (only, start_kind) {
            (Some(k), _) => vec![k],
            (None, MatchKind::Email) => vec![MatchKind::Email, MatchKind::Phone],
            (None, MatchKind::Phone) => vec![MatchKind::Phone],
        };
        for (i, kind) in kinds.iter().enumerate() {
            let after = if i == 0 { start_after.as_str() } else { "" };
            let want = limit + 1 - out.len() as i64;
            if want <= 0 {
                break;
            }
            for g in groups(conn, account, *kind, after, want)? {
                out.push(DuplicateGroup {
                    match_: *kind,
                    value: g.value,
                    contact_ids: g.contact_ids,
                });
            }
        }
        Ok(out)
    })
    .await?;
    let next_cursor = paging::cut(&mut out, limit, |g| {
        crate::cursor::encode(&DupCursor {
            k: g.match_,
            v: g.value.clone(),
            m: only,
        })
    });
    Ok(HttpResponse::Ok().json(DuplicatePage {
        data: out,
        next_cursor,
    }))
}
