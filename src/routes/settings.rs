//! Account settings: the retention policy.

use actix_web::{get, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, PrivacyManage};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Body;
use crate::repo::retention;

/// The retention policy of the account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"days": 365}))]
pub struct Retention {
    /// Contacts not seen for this many days (1–36500) are deleted; null keeps them forever.
    #[schema(minimum = 1, maximum = 36500)]
    #[serde(default, deserialize_with = "crate::extract::integral_opt_i32")]
    pub days: Option<i32>,
}

/// Get the retention policy.
///
/// `{"days": n}` or `{"days": null}` (the default: keep forever).
#[utoipa::path(
    tag = "privacy",
    responses((status = 200, description = "The policy.", body = Retention)),
    security(("bearer" = ["privacy:manage"]))
)]
#[get("/settings/retention")]
pub async fn get_retention(
    auth: Auth<PrivacyManage>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let account = auth.0.account_id;
    let days = with_conn(&pool, move |conn| Ok(retention::get(conn, account)?)).await?;
    Ok(HttpResponse::Ok().json(Retention { days }))
}

/// Set the retention policy.
///
/// A background task of the server deletes, in batches of 1000, the contacts whose
/// `last_seen_at` is older than `days`, within minutes (`RETENTION_INTERVAL_SECONDS`, default
/// 300); each batch is audited as `contacts.retention_deleted` by `system:retention`. Several
/// server processes can run it at once. `null` switches retention off.
#[utoipa::path(
    tag = "privacy",
    request_body(content = Retention, content_type = "application/json"),
    responses((status = 200, description = "The stored policy.", body = Retention)),
    security(("bearer" = ["privacy:manage"]))
)]
#[put("/settings/retention")]
pub async fn update_retention(
    auth: Auth<PrivacyManage>,
    _preconditions: crate::routes::precondition::OnCollection,
    pool: web::Data<Pool>,
    body: Body<Retention>,
) -> Result<HttpResponse, ApiError> {
    let days = body.0.days;
    if days.is_some_and(|d| !(1..=36500).contains(&d)) {
        return Err(ApiError::field("days", "must be from 1 to 36500, or null"));
    }
    let account = auth.0.account_id;
    with_conn(&pool, move |conn| Ok(retention::set(conn, account, days)?)).await?;
    Ok(HttpResponse::Ok().json(Retention { days }))
}
