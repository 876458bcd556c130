//! Data-subject requests (GDPR articles 15, 17 and 20): access and erasure by email or phone.

use actix_web::{post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, PrivacyManage};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Body;
use crate::models::{AuditEvent, ConsentEvent, Contact, ContactSession};
use crate::repo::privacy::{self, Subject};
use crate::repo::{audit, consent, sessions};
use crate::validate::{self, Check};

/// The version of the access document's schema; bumped on any incompatible change.
pub const ACCESS_SCHEMA: &str = "contacts-api/privacy-access/v1";

/// Who the request is about: exactly one of `email` and `phone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "Ada@Example.com"}))]
pub struct SubjectRequest {
    /// Matched ignoring case.
    pub email: Option<String>,
    /// Any format: E.164, or national with `country_code`; matched as E.164.
    pub phone: Option<String>,
    /// Region hint for a national `phone`.
    pub country_code: Option<String>,
}

impl SubjectRequest {
    fn subject(&self) -> Result<Subject, ApiError> {
        let mut check = Check::default();
        let subject = match (&self.email, &self.phone) {
            (Some(e), None) => check
                .opt("email", Some(e), validate::email)
                .map(Subject::Email),
            (None, Some(p)) => {
                let region = check.opt(
                    "country_code",
                    self.country_code.as_deref(),
                    validate::country_code,
                );
                check
                    .opt("phone", Some(p), |p| validate::phone(p, region.as_deref()))
                    .map(Subject::Phone)
            }
            _ => {
                check.fail("email", "send exactly one of `email` and `phone`");
                None
            }
        };
        check.finish()?;
        subject.ok_or_else(|| ApiError::field("email", "send exactly one of `email` and `phone`"))
    }
}

/// What the request was about, echoed in the document.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectEcho {
    /// `email` or `phone`.
    pub selector: String,
    /// The normalised value matched (lower-cased email, E.164 phone).
    pub value: String,
}

/// Everything stored about one contact of the person.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRecord {
    /// The contact as the API shows it.
    pub contact: Contact,
    /// Its conversations, newest first.
    pub sessions: Vec<ContactSession>,
    /// Every consent statement, oldest first.
    pub consent_history: Vec<ConsentEvent>,
    /// Every audit event about it, oldest first.
    pub audit_events: Vec<AuditEvent>,
}

/// The answer to an access request (GDPR art. 15) in a portable form (art. 20).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "schema": "contacts-api/privacy-access/v1",
    "generated_at": "2026-11-24T10:15:00Z",
    "subject": {"selector": "email", "value": "ada@example.com"},
    "contacts": [{
        "contact": {"id": 1042, "name": "Ada Lovelace", "email": "ada@example.com", "phone": null, "avatar_url": null, "country_code": "GB", "ip_address": null, "channel": "whatsapp", "chatbot_id": "support-bot", "session_id": "wa-447700900123", "payload": {}, "sessions_count": 1, "created_at": "2026-11-01T09:00:00Z", "updated_at": "2026-11-20T17:03:11Z", "last_seen_at": "2026-11-20T17:03:11Z", "version": 3, "consent": {"status": "granted", "source": "whatsapp-optin", "text_version": "2026-01", "recorded_at": "2026-11-01T09:00:00Z"}},
        "sessions": [{"chatbot_id": "support-bot", "session_id": "wa-447700900123", "channel": "whatsapp", "ip_address": null, "first_seen_at": "2026-11-01T09:00:00Z", "last_seen_at": "2026-11-20T17:03:11Z"}],
        "consent_history": [{"id": 5, "contact_id": 1042, "status": "granted", "source": "whatsapp-optin", "text_version": "2026-01", "actor": "support-runtime", "recorded_at": "2026-11-01T09:00:00Z"}],
        "audit_events": [{"id": 9, "at": "2026-11-01T09:00:00Z", "actor": "support-runtime", "action": "contact.created", "contact_id": 1042, "changed_fields": [], "details": {}}]
    }]
}))]
pub struct AccessDocument {
    /// `contacts-api/privacy-access/v1`.
    pub schema: String,
    /// When the document was produced.
    pub generated_at: DateTime<Utc>,
    /// Who it is about.
    pub subject: SubjectEcho,
    /// Every matching contact of the account, oldest first.
    pub contacts: Vec<AccessRecord>,
}

/// Answer a data-subject access request.
///
/// Every contact of this account matching the person — by email ignoring case, or by phone in
/// any format (normalised to E.164; national numbers need `country_code`) — with its sessions,
/// consent history and audit events, as one JSON document with a versioned schema
/// (`schema`). Nothing about other people or accounts. The request itself is audited
/// (`privacy.accessed`, with the number of contacts, not the selector's value).
#[utoipa::path(
    tag = "privacy",
    request_body(content = SubjectRequest, content_type = "application/json"),
    responses((status = 200, description = "The access document (possibly with no contacts).", body = AccessDocument)),
    security(("bearer" = ["privacy:manage"]))
)]
#[post("/privacy/access")]
pub async fn create_privacy_access(
    auth: Auth<PrivacyManage>,
    _preconditions: crate::routes::precondition::OnCollection,
    pool: web::Data<Pool>,
    body: Body<SubjectRequest>,
) -> Result<HttpResponse, ApiError> {
    let subject = body.0.subject()?;
    let (account, actor) = (auth.0.account_id, auth.0.sub.clone());
    let echo = SubjectEcho {
        selector: subject.kind().into(),
        value: match &subject {
            Subject::Email(e) => e.to_lowercase(),
            Subject::Phone(p) => p.clone(),
        },
    };
    let contacts = with_conn(&pool, move |conn| {
        use diesel::Connection;
        Ok(conn.transaction(|conn| {
            let contacts = privacy::find(conn, account, &subject, false)?;
            let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
            let mut sessions = sessions::for_contacts(conn, account, &ids)?;
            let mut consents = consent::history(conn, account, &ids)?;
            let mut events = audit::for_contacts(conn, account, &ids)?;
            audit::record(
                conn,
                account,
                &audit::Event::new(&actor, "privacy.accessed", None).details(
                    serde_json::json!({"selector": subject.kind(), "contacts": ids.len()}),
                ),
            )?;
            let records = contacts
                .into_iter()
                .map(|c| {
                    let id = c.id;
                    AccessRecord {
                        contact: c,
                        sessions: take(&mut sessions, |s| s.contact_id == id),
                        consent_history: take(&mut consents, |e| e.contact_id == id),
                        audit_events: take(&mut events, |e| e.contact_id == Some(id)),
                    }
                })
                .collect::<Vec<_>>();
            Ok::<_, diesel::result::Error>(records)
        })?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(AccessDocument {
        schema: ACCESS_SCHEMA.into(),
        generated_at: Utc::now(),
        subject: echo,
        contacts,
    }))
}

/// Removes and returns the items matching `pred`, keeping the order.
fn take<T>(items: &mut Vec<T>, pred: impl Fn(&T) -> bool) -> Vec<T> {
    let (taken, kept): (Vec<T>, Vec<T>) = std::mem::take(items).into_iter().partition(|x| pred(x));
    *items = kept;
    taken
}

/// Result of an erasure.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"erased": 2}))]
pub struct ErasureResult {
    /// Contacts erased.
    pub erased: usize,
}

/// Erase a person's data.
///
/// Permanently deletes, in one transaction, every contact of this account matching the person
/// (same matching as access) with its sessions, consent history and merge redirects. Earlier
/// audit events about those contacts are kept but unlinked (`contact_id` becomes null), and the
/// erasure is audited (`privacy.erased`) with who, when and how many — never the erased values.
/// A later upsert of one of the person's sessions starts a fresh contact holding only the new
/// data.
#[utoipa::path(
    tag = "privacy",
    request_body(content = SubjectRequest, content_type = "application/json"),
    responses((status = 200, description = "How many contacts were erased (0 when none matched).", body = ErasureResult)),
    security(("bearer" = ["privacy:manage"]))
)]
#[post("/privacy/erasure")]
pub async fn create_privacy_erasure(
    auth: Auth<PrivacyManage>,
    _preconditions: crate::routes::precondition::OnCollection,
    pool: web::Data<Pool>,
    body: Body<SubjectRequest>,
) -> Result<HttpResponse, ApiError> {
    let subject = body.0.subject()?;
    let (account, actor) = (auth.0.account_id, auth.0.sub.clone());
    let erased = with_conn(&pool, move |conn| {
        Ok(crate::db::retry_transient(|| {
            use diesel::Connection;
            conn.transaction(|conn| privacy::erase(conn, account, &subject, &actor))
        })?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(ErasureResult { erased }))
}
