//! `GET /audit-events`: who did what, newest first.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{AuditRead, Auth};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Query;
use crate::models::AuditEvent;
use crate::repo::audit::{self, AuditFilter};
use crate::routes::paging;

/// Query of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (same filters).
    #[param(schema_with = crate::openapi::fields::cursor)]
    pub cursor: Option<String>,
    /// Only events about this contact.
    pub contact_id: Option<i64>,
    /// Only this action.
    #[param(schema_with = audit_action)]
    pub action: Option<String>,
    /// Only this actor (a token's `sub`).
    #[param(min_length = 1, pattern = "^[^\\x00]+$")]
    pub actor: Option<String>,
}

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Events, newest first.
    pub data: Vec<AuditEvent>,
    /// Cursor of the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Every action the audit log records.
pub const ACTIONS: &[&str] = &[
    "contact.created",
    "contact.updated",
    "contact.deleted",
    "contact.merged",
    "contacts.exported",
    "contacts.bulk_deleted",
    "contacts.retention_deleted",
    "privacy.accessed",
    "privacy.erased",
];

fn audit_action() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .description(Some("Only this action."))
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(ACTIONS.iter().copied()))
        .build()
}

#[derive(Serialize, Deserialize)]
struct AuditCursor {
    id: i64,
    f: (Option<i64>, Option<String>, Option<String>),
}

/// List audit events.
///
/// Who did what and when, newest first: `contact.created`, `contact.updated` (with the names of
/// the changed fields), `contact.deleted`, `contact.merged`, `contacts.exported`,
/// `contacts.bulk_deleted`, `contacts.retention_deleted`, `privacy.accessed`, `privacy.erased`.
/// Values are never recorded. Session upserts are audited when they create a contact or change
/// a profile field; an interaction that changes nothing else is not.
#[utoipa::path(
    tag = "privacy",
    params(AuditParams),
    responses((status = 200, description = "A page of events.", body = AuditPage)),
    security(("bearer" = ["audit:read"]))
)]
#[get("/audit-events")]
pub async fn list_audit_events(
    auth: Auth<AuditRead>,
    pool: web::Data<Pool>,
    params: Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let p = params.0;
    let limit = paging::limit(p.limit)?;
    if let Some(action) = &p.action {
        if !ACTIONS.contains(&action.as_str()) {
            return Err(ApiError::InvalidParameter {
                field: "action".into(),
                message: format!("expected one of {}", ACTIONS.join(", ")),
            });
        }
    }
    if p.actor.as_deref() == Some("") {
        return Err(ApiError::InvalidParameter {
            field: "actor".into(),
            message: "must not be empty".into(),
        });
    }
    let filter = AuditFilter {
        contact_id: p.contact_id,
        action: p.action,
        actor: p.actor,
    };
    let key = (
        filter.contact_id,
        filter.action.clone(),
        filter.actor.clone(),
    );
    let before = match &p.cursor {
        None => None,
        Some(c) => {
            let cur: AuditCursor = crate::cursor::decode(c)?;
            if cur.f != key {
                return Err(crate::cursor::invalid());
            }
            Some(cur.id)
        }
    };
    let account = auth.0.account_id;
    let mut rows = with_conn(&pool, move |conn| {
        Ok(audit::page(conn, account, &filter, before, limit + 1)?)
    })
    .await?;
    let next_cursor = paging::cut(&mut rows, limit, |e| {
        crate::cursor::encode(&AuditCursor {
            id: e.id,
            f: key.clone(),
        })
    });
    Ok(HttpResponse::Ok().json(AuditPage {
        data: rows,
        next_cursor,
    }))
}
