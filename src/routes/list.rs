//! `GET /contacts`: filtered, sorted, keyset-paginated list.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, Read};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Query2;
use crate::models::Contact;
use crate::repo::list::{self, Position, Sort};
use crate::routes::filters::{fingerprint, FilterParams};
use crate::routes::paging;

/// Paging of `GET /contacts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; valid only with the same `sort` and filters.
    #[param(schema_with = crate::openapi::fields::cursor)]
    pub cursor: Option<String>,
    /// `-id` (default), `id`, `created_at`, `-created_at`, `last_seen_at`, `-last_seen_at`,
    /// `name`, `-name`. Ties are broken by id; `name` is case-insensitive with unnamed contacts
    /// last, and `-name` is its exact reverse.
    #[param(schema_with = crate::openapi::fields::sort)]
    pub sort: Option<String>,
    /// Also count every matching contact (`total`); costs a count over the matches.
    pub include_total: Option<bool>,
}

/// A page of contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    /// The contacts of this page.
    pub data: Vec<Contact>,
    /// Cursor of the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Number of matching contacts (only with `include_total=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// What a list cursor holds: the order and filters it belongs to, and the last row.
#[derive(Serialize, Deserialize)]
pub struct ListCursor {
    /// Sort parameter.
    pub s: String,
    /// Filter fingerprint.
    pub f: String,
    /// Position of the last row.
    pub p: Position,
}

/// Parses `sort` (default `-id`).
pub fn parse_sort(sort: &Option<String>) -> Result<(String, Sort), ApiError> {
    let name = sort.clone().unwrap_or_else(|| "-id".into());
    let parsed = Sort::parse(&name).ok_or_else(|| ApiError::InvalidParameter {
        field: "sort".into(),
        message: "expected one of -id, id, created_at, -created_at, last_seen_at, \
                  -last_seen_at, name, -name"
            .into(),
    })?;
    Ok((name, parsed))
}

/// List contacts.
///
/// Filtered and sorted, keyset-paginated: pass `next_cursor` back as `cursor` (with the same
/// `sort` and filters, else 400) for the next page; a page costs the same at any depth. A
/// contact without name, email or phone is listed like any other. Unknown query parameters
/// are a 400.
#[utoipa::path(
    tag = "contacts",
    params(PageParams, FilterParams),
    responses((status = 200, description = "A page of contacts.", body = ContactPage)),
    security(("bearer" = ["contacts:read"]))
)]
#[get("/contacts")]
pub async fn list_contacts(
    auth: Auth<Read>,
    pool: web::Data<Pool>,
    params: Query2<PageParams, FilterParams>,
) -> Result<HttpResponse, ApiError> {
    let Query2(p, f) = params;
    let limit = paging::limit(p.limit)?;
    let (sort_name, sort) = parse_sort(&p.sort)?;
    let filter = f.to_filter()?;
    let fp = fingerprint(&filter);
    let after = match &p.cursor {
        None => None,
        Some(c) => {
            let cur: ListCursor = crate::cursor::decode(c)?;
            if cur.s != sort_name || cur.f != fp || !cur.p.fits(sort) {
                return Err(crate::cursor::invalid());
            }
            if let list::Key::Time(t) = &cur.p.key {
                crate::cursor::time(t)?;
            }
            Some(cur.p)
        }
    };
    let account = auth.0.account_id;
    let with_total = p.include_total.unwrap_or(false);
    let (mut rows, total) = with_conn(&pool, move |conn| {
        let rows = list::page(conn, account, &filter, sort, after.as_ref(), limit + 1)?;
        let total = if with_total {
            Some(list::count(conn, account, &filter)?)
        } else {
            None
        };
        Ok((rows, total))
    })
    .await?;
    let next_cursor = paging::cut(&mut rows, limit, |c| {
        crate::cursor::encode(&ListCursor {
            s: sort_name.clone(),
            f: fp.clone(),
            p: sort.position(c),
        })
    });
    Ok(HttpResponse::Ok().json(ContactPage {
        data: rows,
        next_cursor,
        total,
    }))
}
