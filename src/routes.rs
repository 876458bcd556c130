//! The route table and the application wiring shared by `main` and the tests.

pub mod audit;
pub mod batch;
pub mod bulk;
pub mod consent;
pub mod contacts;
pub mod duplicates;
pub mod export;
pub mod fallback;
pub mod filters;
pub mod list;
pub mod merge;
pub mod paging;
pub mod patch;
pub mod precondition;
pub mod privacy;
pub mod sessions;
pub mod settings;
pub mod stats;
pub mod system;
pub mod target;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App};
use utoipa_actix_web::{scope, service_config::ServiceConfig, AppExt};
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::TokenVerifier;
use crate::config::Limits;
use crate::db::Pool;
use crate::error::ApiError;
use crate::limits::Limiter;
use crate::metrics::Metrics;

/// Every documented operation. Literal paths come before `{id}` paths so they win the match.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(system::healthz)
        .service(system::readyz)
        .service(crate::metrics::metrics)
        .service(
            scope::scope("/api/v1")
                // Everything under /api/v1 is personal data or about it.
                .wrap(DefaultHeaders::new().add((header::CACHE_CONTROL, "no-store")))
                .service(sessions::upsert_session_contact)
                .service(list::list_contacts)
                .service(export::export_contacts)
                .service(duplicates::list_duplicate_contacts)
                .service(stats::get_contact_stats)
                .service(batch::batch_upsert_contacts)
                .service(bulk::bulk_delete_contacts)
                .service(contacts::create_contact)
                .service(contacts::get_contact)
                .service(patch::update_contact)
                .service(contacts::delete_contact)
                .service(sessions::list_contact_sessions)
                .service(privacy::create_privacy_access)
                .service(privacy::create_privacy_erasure)
                .service(settings::get_retention)
                .service(settings::update_retention)
                .service(audit::list_audit_events)
                .service(merge::merge_contacts),
        );
}

/// Process-wide state, built once and shared by every worker.
#[derive(Clone)]
pub struct AppState {
    /// Database pool.
    pub pool: Pool,
    /// Token verification keys.
    pub verifier: web::Data<TokenVerifier>,
    /// The OpenAPI document, served at `/api/openapi.json`.
    pub openapi: utoipa::openapi::OpenApi,
    /// Path patterns and their methods, for 405 answers.
    pub routes: web::Data<fallback::RouteTable>,
    /// Limits as configured (body read timeout, export cap, budgets).
    pub limits: web::Data<Limits>,
    /// Per-account budgets and export slots.
    pub limiter: web::Data<Limiter>,
    /// Prometheus metrics.
    pub metrics: web::Data<Metrics>,
    /// Group commit of the session upserts.
    pub coalescer: web::Data<crate::coalesce::Coalescer>,
}

impl AppState {
    /// Builds the state from a pool and verifier, with the default limits.
    pub fn new(pool: Pool, verifier: TokenVerifier) -> Self {
        Self::with_limits(pool, verifier, Limits::default())
    }

    /// Builds the state with the given limits.
    pub fn with_limits(pool: Pool, verifier: TokenVerifier, limits: Limits) -> Self {
        let openapi = crate::openapi::document();
        let routes = fallback::RouteTable::from_openapi(&openapi);
        let metrics = Metrics::default();
        let coalescer =
            crate::coalesce::Coalescer::new(limits.upsert_lanes, metrics.upsert_groups());
        Self {
            pool,
            verifier: web::Data::new(verifier),
            openapi,
            routes: web::Data::new(routes),
            limiter: web::Data::new(Limiter::new(&limits)),
            coalescer: web::Data::new(coalescer),
            limits: web::Data::new(limits),
            metrics: web::Data::new(metrics),
        }
    }
}

fn path_error(err: actix_web::error::PathError, req: &actix_web::HttpRequest) -> actix_web::Error {
    let field = req
        .match_info()
        .iter()
        .next()
        .map(|(k, _)| k.to_string())
        .unwrap_or_else(|| "path".into());
    ApiError::InvalidParameter {
        field,
        message: err.to_string(),
    }
    .into()
}

/// The application: routes, shared state, error handlers and middleware.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .into_utoipa_app()
        .configure(configure)
        .into_app()
        .app_data(web::Data::new(state.pool))
        .app_data(state.verifier)
        .app_data(state.routes)
        .app_data(state.limits)
        .app_data(state.limiter)
        .app_data(state.metrics)
        .app_data(state.coalescer)
        .app_data(web::PathConfig::default().error_handler(path_error))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/api/openapi.json", state.openapi))
        .default_service(web::to(fallback::unmatched))
        // Innermost first: the body's coding, the target's encoding, then the head's limits,
        // then the request id (outermost, so every refusal above carries it).
        .wrap(from_fn(crate::encoding::middleware))
        .wrap(from_fn(target::middleware))
        .wrap(from_fn(crate::http_limits::middleware))
        .wrap(from_fn(crate::request_id::middleware))
}
