//! Plain synchronous queries on `&mut PgConnection`. Nothing here knows HTTP, the pool or async;
//! every function takes the account explicitly, so no query can cross tenants. Every write path
//! takes its row locks in the one order that `locks` documents.

pub mod activity;
pub mod audit;
pub mod batch;
pub mod bulk;
pub mod consent;
pub mod contacts;
pub mod duplicates;
pub mod fragments;
pub mod list;
pub mod locks;
pub mod merge;
pub mod privacy;
pub mod retention;
pub mod rollups;
pub mod sessions;
pub mod stats;
