//! Diesel rows and changesets, one file per table.

pub mod audit;
pub mod contact;
pub mod session;

pub use audit::{AuditEvent, ConsentEvent};
pub use contact::{ConsentState, Contact, ContactChanges, NewContact};
pub use session::ContactSession;
