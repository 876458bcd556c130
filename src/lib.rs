//! contacts-api: the contacts of everyone who talks to a business's AI chatbots.
//!
//! Who owns what: `config` reads the environment; `db` owns the pool, migrations and the one
//! blocking bridge (`with_conn`); `auth` verifies tokens and enforces scopes; `error` renders
//! every failure as problem+json; `extract` and `validate` turn input into checked values;
//! `repo` holds the SQL (plain functions on a connection, always given the account); `routes`
//! holds the handlers and wires the app; `openapi` builds the contract from the route table; `limits` holds the per-account budgets
//! and export slots; `metrics` the Prometheus registry; `request_id` the outermost middleware.

pub mod auth;
pub mod bench;
pub mod coalesce;
pub mod config;
pub mod cursor;
pub mod db;
pub mod encoding;
pub mod error;
pub mod extract;
pub mod http_limits;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod repo;
pub mod request_id;
pub mod routes;
pub mod schema;
pub mod seed;
pub mod validate;
