//! The `consent` object accepted by the session upsert, the batch upsert and create.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::repo::consent::ConsentInput;
use crate::validate::Check;

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

fn short_text(check: &mut Check, field: &str, v: &Option<String>) -> Option<String> {
    let t = v.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
    if t.chars().count() > 200 || t.chars().any(char::is_control) {
        check.fail(
            field,
            "must be 1 to 200 characters without control characters",
        );
        return None;
    }
    Some(t.to_string())
}

impl ConsentRequest {
    /// Checks the statement; failures are recorded in `check` under `consent.*`.
    pub fn to_input(&self, check: &mut Check) -> ConsentInput {
        if !matches!(self.status.as_str(), "granted" | "withdrawn") {
            check.fail("consent.status", "must be granted or withdrawn");
        }
        ConsentInput {
            status: self.status.clone(),
            source: short_text(check, "consent.source", &self.source),
            text_version: short_text(check, "consent.text_version", &self.text_version),
        }
    }
}
