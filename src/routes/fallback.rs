//! Requests no route took: 405 with `Allow` when the path exists under another method, 404
//! otherwise; both as problem+json.

use actix_web::dev::ResourceDef;
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

    /// The methods allowed on `path`, merged over every pattern that matches it.
    pub fn allowed(&self, path: &str) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (def, methods) in &self.0 {
            if def.is_match(path) {
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
