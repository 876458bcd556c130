//! Diesel rows and changesets, one file per table.

pub mod contact;
pub mod session;

pub use contact::{Contact, ContactChanges, NewContact};
pub use session::ContactSession;
