//! `PATCH /contacts/{id}`: JSON Merge Patch (RFC 7396) of a contact's editable fields.

use actix_web::{patch, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::auth::{Auth, Write};
use crate::db::{with_conn, Pool};
use crate::error::{ApiError, Problem};
use crate::extract::Body;
use crate::models::{Contact, ContactChanges};
use crate::repo::audit;
use crate::repo::contacts as repo;
use crate::routes::contacts::{contact_response, missing};
use crate::routes::precondition::Preconditions;
use crate::validate::{self, Check};

/// Present-but-null (`Some(None)`) differs from absent (`None`) in a merge patch.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PATCH /contacts/{id}` (JSON Merge Patch, RFC 7396).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada King", "phone": null, "payload": {"plan": "enterprise", "trial": null}}))]
pub struct ContactPatch {
    /// New name; null clears.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::fields::name)]
    pub name: Option<Option<String>>,
    /// New email; null clears.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::fields::email)]
    pub email: Option<Option<String>>,
    /// New phone (national numbers use the new or stored `country_code`); null clears.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::fields::phone)]
    pub phone: Option<Option<String>>,
    /// New avatar URL; null clears.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::fields::avatar_url)]
    pub avatar_url: Option<Option<String>>,
    /// New country; null clears.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::fields::country_code)]
    pub country_code: Option<Option<String>>,
    /// Merge patch applied to the stored payload; null clears it to `{}`.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::fields::payload)]
    pub payload: Option<Option<serde_json::Value>>,
}

/// Applies a patch to the current values; `hint` is the stored country for national phones.
fn apply_patch(p: &ContactPatch, current: &Contact) -> Result<ContactChanges, ApiError> {
    let mut next = ContactChanges::from_contact(current).map_err(|e| {
        ApiError::internal(format!("stored payload of contact {}: {e}", current.id))
    })?;
    let mut check = Check::default();
    fn set<T>(
        check: &mut Check,
        field: &str,
        value: &Option<Option<String>>,
        slot: &mut Option<T>,
        rule: impl FnOnce(&str) -> Result<Option<T>, String>,
    ) {
        match value {
            None => {}
            Some(None) => *slot = None,
            Some(Some(v)) => match rule(v) {
                Ok(v) => *slot = v,
                Err(m) => check.fail(field, m),
            },
        }
    }
    set(&mut check, "name", &p.name, &mut next.name, validate::name);
    set(
        &mut check,
        "email",
        &p.email,
        &mut next.email,
        validate::email,
    );
    set(
        &mut check,
        "avatar_url",
        &p.avatar_url,
        &mut next.avatar_url,
        validate::avatar_url,
    );
    set(
        &mut check,
        "country_code",
        &p.country_code,
        &mut next.country_code,
        validate::country_code,
    );
    let hint = next.country_code.clone();
    set(&mut check, "phone", &p.phone, &mut next.phone, |v| {
        validate::phone(v, hint.as_deref())
    });
    match &p.payload {
        None => {}
        Some(None) => next.payload = serde_json::json!({}),
        Some(Some(patch)) => {
            if !patch.is_object() {
                check.fail("payload", "must be a JSON object or null");
            } else if validate::has_nul(patch) {
                check.fail("payload", "must not contain NUL characters");
            } else {
                validate::merge_patch(&mut next.payload, patch);
                if let Err(m) = validate::payload(&next.payload) {
                    check.fail("payload", m);
                }
            }
        }
    }
    check.finish()?;
    Ok(next)
}

/// Edit a contact (JSON Merge Patch).
///
/// RFC 7396 merge patch of `name`, `email`, `phone`, `avatar_url`, `country_code` and `payload`
/// (`application/merge-patch+json` or `application/json`). `null` clears a field; inside
/// `payload` merge-patch rules apply recursively. Any other field is a 422 (`unknown_field`).
/// With `If-Match`, a stale version is a 412. A patch that changes nothing leaves `version`
/// as it is.
#[utoipa::path(
    tag = "contacts",
    params(
        ("id" = i64, Path, description = "Contact id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)$"#, description = "`\"<version>\"` (or `*`, or a list of tags): apply only to that version"),
    ),
    request_body(
        description = "A merge patch: `application/merge-patch+json` or `application/json`.",
        content(
            (ContactPatch = "application/merge-patch+json"),
            (ContactPatch = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "The updated contact.", body = Contact,
         headers(("ETag" = String, description = "Quoted new version"))),
        (status = 404, description = "No such contact in this account.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The contact was merged into another (`contact_merged`); `Link: </api/v1/contacts/{target}>; rel=\"canonical\"`.", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` or `If-None-Match` does not hold at the current version (`precondition_failed`).", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["contacts:write"]))
)]
#[patch("/contacts/{id}", guard = "crate::routes::fallback::not_literal")]
pub async fn update_contact(
    auth: Auth<Write>,
    pool: web::Data<Pool>,
    id: web::Path<i64>,
    req: HttpRequest,
    body: Body<ContactPatch>,
) -> Result<HttpResponse, ApiError> {
    let (account, id) = (auth.0.account_id, id.into_inner());
    let cond = Preconditions::from_request(&req)?;
    let patch = body.0;
    let actor = auth.0.sub.clone();
    let contact = with_conn(&pool, move |conn| {
        use diesel::Connection;
        conn.transaction(|conn| {
            let Some(current) = repo::find_for_update(conn, account, id)? else {
                return Err(missing(conn, account, id));
            };
            if !cond.allows(Some(current.version)) {
                return Err(Preconditions::failed(Some(current.version)));
            }
            let next = apply_patch(&patch, &current)?;
            let changed = next.changed_fields(&current);
            if changed.is_empty() {
                return Ok(current);
            }
            let updated = repo::update(conn, account, id, &next)?;
            let mut event = audit::Event::new(&actor, "contact.updated", Some(id));
            event.changed_fields = changed;
            audit::record(conn, account, &event)?;
            Ok(updated)
        })
    })
    .await?;
    Ok(contact_response(actix_web::http::StatusCode::OK, &contact))
}
