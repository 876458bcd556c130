//! Integration tests: real PostgreSQL, one fresh database per test, the app driven in-process
//! (plus one test of the real binary).

mod helpers;

mod activity;
mod audit_log;
mod auth;
mod batch;
mod binary;
mod bulk;
mod contacts;
mod contract;
mod cursors;
mod deadlocks;
mod duplicates;
mod encoding;
mod errors;
mod export;
mod faults;
mod group_commit;
mod identity;
mod lifecycle;
mod limits;
mod list;
mod merge;
mod migrations;
mod plans;
mod preconditions;
mod prepared;
mod privacy;
mod sessions;
mod settings_db;
mod stats;
mod stats_rollups;
mod tenancy;
mod upsert;
mod validation;
