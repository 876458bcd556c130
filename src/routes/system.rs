//! Liveness and readiness probes.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{self, Pool};

/// Probe answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness.
///
/// 200 while the process serves, whatever the state of the database.
#[utoipa::path(tag = "system", responses((status = 200, description = "The process serves.", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness.
///
/// 200 when the database answers a query, 503 otherwise.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "The database answers.", body = Health),
        (status = 503, description = "The database does not answer.", body = Health),
    )
)]
#[get("/readyz")]
pub async fn readyz(pool: web::Data<Pool>) -> HttpResponse {
    let ok = db::with_conn(&pool, |conn| Ok(db::ping(conn)))
        .await
        .unwrap_or(false);
    if ok {
        HttpResponse::Ok().json(Health { status: "ok" })
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
            .json(Health {
                status: "unavailable",
            })
    }
}
