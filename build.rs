//! Rebuild when a migration changes, so `embed_migrations!` embeds new directories.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
