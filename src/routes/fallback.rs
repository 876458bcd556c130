//! Requests no route took: 405 with `Allow` when the path exists under another method, 404
//! otherwise; both as problem+json.

use actix_web::dev::ResourceDef;
use actix_web::guard::GuardContext;
use actix_web::{web, HttpRequest};

use crate::error::ApiError;

/// Documented path patterns and the methods each accepts.
pub struct RouteTable(Vec<(ResourceDef, Vec<&'static str>)>);

impl RouteTable {
    /// Builds the table from the OpenAPI paths (the route table itself), plus the docs routes.
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = vec![
            (ResourceDef::new("/api/openapi.json"), vec!["GET"]),
            (ResourceDef::new("/docs/{_:.*}"), vec!["GET"]),
        ];
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, present)| present.then_some(m))
            .collect();
            routes.push((ResourceDef::new(path.as_str()), methods));
        }
        Self(routes)
    }

    /// True when a pattern without parameters (`/api/v1/contacts/export`) matches `path`: such
    /// a path names that route, never an `{id}` of a sibling pattern.
    pub fn is_literal(&self, path: &str) -> bool {
        self.0
            .iter()
            .any(|(def, _)| !def.pattern().unwrap_or("").contains('{') && def.is_match(path))
    }

    /// The methods allowed on `path`, merged over every pattern that matches it (only the
    /// literal pattern's when one matches, as the router prefers it).
    pub fn allowed(&self, path: &str) -> Vec<&'static str> {
        let literal = self.is_literal(path);
        let mut out: Vec<&'static str> = Vec::new();
        for (def, methods) in &self.0 {
            let parametric = def.pattern().unwrap_or("").contains('{');
            if def.is_match(path) && !(literal && parametric) {
                for m in methods {
                    if !out.contains(m) {
                        out.push(m);
                    }
                }
            }
        }
        out
    }
}

/// Default service: 405 or 404.
pub async fn unmatched(
    req: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = table.allowed(req.path());
    Err(if allowed.is_empty() {
        ApiError::NotFound(format!("no route for {} {}", req.method(), req.path()))
    } else {
        ApiError::MethodNotAllowed(allowed.join(", "))
    })
}

/// Guard of the `/contacts/{id}` routes: they do not take a path that names a literal route
/// (`PATCH /contacts/export` is a 405 with `Allow: GET`, not a 400 about the id `export`).
pub fn not_literal(ctx: &GuardContext<'_>) -> bool {
    ctx.app_data::<web::Data<RouteTable>>()
        .is_none_or(|table| !table.is_literal(ctx.head().uri.path()))
}
