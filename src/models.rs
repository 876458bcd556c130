//! Diesel rows and changesets, one file per table, and `rfc3339`, how their timestamps are
//! written.

pub mod audit;
pub mod contact;
pub mod json_text;
pub mod rfc3339;
pub mod session;

pub use audit::{AuditEvent, ConsentEvent};
pub use contact::{ConsentState, Contact, ContactChanges, NewContact};
pub use json_text::JsonText;
pub use session::ContactSession;
