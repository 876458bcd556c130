//! The `consent` object accepted by the session upsert, the batch upsert and create.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::repo::consent::ConsentInput;
use crate::validate::{self, Check};

/// A consent statement (GDPR art. 7(1)): every change is appended to the contact's history
/// with its time and the token's `sub`; repeating the current consent records nothing.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "granted", "source": "whatsapp-optin", "text_version": "2026-01"}))]
pub struct ConsentRequest {
    /// `granted` or `withdrawn`.
    #[schema(schema_with = crate::openapi::fields::consent_status)]
    pub status: String,
    /// Where it was given or withdrawn (1–200 characters).
    #[schema(schema_with = crate::openapi::fields::short_text)]
    pub source: Option<String>,
    /// Version of the consent text shown (1–200 characters).
    #[schema(schema_with = crate::openapi::fields::short_text)]
    pub text_version: Option<String>,
}

impl ConsentRequest {
    /// Checks the statement; failures are recorded in `check` under `consent.*`.
    pub fn to_input(&self, check: &mut Check) -> ConsentInput {
        if !matches!(self.status.as_str(), "granted" | "withdrawn") {
            check.fail("consent.status", "must be granted or withdrawn");
        }
        ConsentInput {
            status: self.status.clone(),
            source: check.opt(
                "consent.source",
                self.source.as_deref(),
                validate::short_text,
            ),
            text_version: check.opt(
                "consent.text_version",
                self.text_version.as_deref(),
                validate::short_text,
            ),
        }
    }
}
