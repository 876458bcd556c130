//! Bearer tokens: key setup, verification, the `Auth<S>` extractor that enforces a scope, and
//! minting for the `token` subcommand. The account comes from the verified token, nowhere else.

use std::future::{ready, Ready};
use std::marker::PhantomData;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
use crate::error::ApiError;
use crate::limits::{Budget, Limiter};

/// Leeway for `exp` and `nbf`, in seconds (API.md allows up to 60).
const LEEWAY_SECS: u64 = 30;

/// The claims the service reads (and `token` writes).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The acting principal.
    pub sub: String,
    /// The tenant.
    pub account_id: i64,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Restricts an upsert token to one chatbot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatbot_id: Option<String>,
    /// Issuer (checked by the library when configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, a string or an array of strings (RFC 7519); checked by the library when
    /// configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

/// Who is acting, for which account, with which rights.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub` of the token.
    pub sub: String,
    /// The tenant every query is restricted to.
    pub account_id: i64,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When set, upserts are allowed for this chatbot only.
    pub chatbot_id: Option<String>,
}

impl Principal {
    /// True when the token grants `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Refuses a chatbot other than the one the token is restricted to (403).
    pub fn check_chatbot(&self, chatbot_id: &str) -> Result<(), ApiError> {
        match &self.chatbot_id {
            Some(allowed) if allowed != chatbot_id => Err(ApiError::InsufficientScope(format!(
                "for chatbot {chatbot_id} (this token is restricted to another chatbot)"
            ))),
            _ => Ok(()),
        }
    }
}

/// The latest instant a token's time claims may name: 9999-12-31T23:59:59Z, the end of what
/// RFC 3339 (and so every timestamp the service writes or reads back) can express.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Longest `sub`, in characters: it is stored as the audit log's actor.
const MAX_SUB_CHARS: usize = 255;

/// The `account_id` rule, stated once for every way the claim can break it.
const ACCOUNT_ID_RULE: &str = "account_id must be an integer from 1 to 9223372036854775807";

/// A JSON object whose member names are unique. RFC 7515 §4 and RFC 7519 §4 let a recipient
/// either reject duplicate names or take the last one; taking one would let a forged token
/// carry two `account_id`s that two JSON parsers read differently, so the service rejects.
struct Members(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value::<serde_json::Value>()?;
                    if out.insert(name.clone(), value).is_some() {
                        return Err(serde::de::Error::custom(Duplicate(name)));
                    }
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// The duplicate-name error of [`Members`], told apart from other JSON errors by its prefix.
struct Duplicate(String);

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "duplicate member {}", printable(&self.0))
    }
}

/// `name` quoted when it is a short plain identifier; attacker-chosen text otherwise never
/// reaches a detail (or the `WWW-Authenticate` header that repeats it).
fn printable(name: &str) -> String {
    let plain = name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-#".contains(&b));
    if plain {
        format!("`{name}`")
    } else {
        "(a name that is not a plain identifier)".into()
    }
}

/// Base64url (no padding, canonical) of a JSON object with unique member names.
fn json_object(
    segment: &str,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    use base64::Engine;
    let bad = |m: String| Err(ApiError::Unauthorized(m));
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment) else {
        return bad(format!("malformed token: the {what} is not base64url"));
    };
    match serde_json::from_slice::<Members>(&bytes) {
        Ok(Members(map)) => Ok(map),
        Err(e) => {
            let message = e.to_string();
            match message.strip_prefix("duplicate member ") {
                Some(rest) => {
                    let name = rest.split(" at line ").next().unwrap_or(rest);
                    bad(format!("the token {what} has a duplicate member {name}"))
                }
                None => bad(format!("malformed token: the {what} is not a JSON object")),
            }
        }
    }
}

/// The header and claims segments of a JWS in compact serialization: exactly three parts.
fn segments(token: &str) -> Result<(&str, &str), ApiError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(_), None) => Ok((h, c)),
        _ => Err(ApiError::Unauthorized(
            "malformed token: expected three dot-separated parts (JWS compact)".into(),
        )),
    }
}

/// Header parameters that change how the token must be read. None is understood here, so a
/// token that uses one is rejected instead of read as if it were absent.
const REFUSED_HEADER_PARAMETERS: &[(&str, &str)] = &[
    // RFC 7515 §4.1.11: a recipient must reject a JWS naming extensions it does not
    // understand as critical; this service implements no extension.
    (
        "crit",
        "the token header marks extensions as critical (crit); none is supported",
    ),
    // RFC 7797: `b64: false` means the payload is not base64url (and must then be in `crit`).
    (
        "b64",
        "the token header parameter b64 (unencoded payload, RFC 7797) is not supported",
    ),
    // JWE parameters: an encrypted or compressed token is not a signed one.
    (
        "enc",
        "encrypted tokens (JWE, header parameter enc) are not supported",
    ),
    (
        "zip",
        "compressed tokens (header parameter zip) are not supported",
    ),
    // RFC 7519 §5.2: `cty: JWT` announces a nested token.
    (
        "cty",
        "nested tokens (header parameter cty) are not supported",
    ),
];

/// `typ` values of a token meant for this service: a JWT (RFC 7519 §5.1) or an OAuth access
/// token (RFC 9068 §2.1), with or without the `application/` prefix, case-insensitively.
/// Other types (ID tokens, logout or DPoP proofs, security events) signed by the same issuer
/// are not access tokens.
fn accepted_type(typ: &str) -> bool {
    let t = typ.to_ascii_lowercase();
    let t = t.strip_prefix("application/").unwrap_or(&t);
    t == "jwt" || t == "at+jwt"
}

/// A NumericDate claim: an integer from 0 to [`MAX_NUMERIC_DATE`], when present.
fn numeric_date(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<i64>, ApiError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(t) if (0..=MAX_NUMERIC_DATE).contains(&t) => Ok(Some(t)),
            _ => Err(ApiError::Unauthorized(format!(
                "{name} must be an integer number of seconds from 1970 to the end of year 9999"
            ))),
        },
    }
}

/// A string claim, when present (`null` is not absent: it is refused).
fn string_claim<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match claims.get(name) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::Unauthorized(format!("{name} must be a string"))),
    }
}

/// RFC 6749 §3.3: `scope = scope-token *( SP scope-token )`, a scope-token being printable
/// ASCII without `"` or `\`. Tabs, newlines or other separators are refused rather than read
/// as separators (or as part of a scope name).
fn scopes(scope: &str) -> Result<Vec<String>, ApiError> {
    let token_char = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
    if !scope.bytes().all(|b| b == b' ' || token_char(b)) {
        return Err(ApiError::Unauthorized(
            "scope must be space-separated scope tokens of printable ASCII (RFC 6749 section 3.3)"
                .into(),
        ));
    }
    Ok(scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

/// The `chatbot_id` claim follows the rule of the path's chatbot id (API.md: 1–128 characters,
/// no control characters, no `/`), plus what a list filter needs to name it: no `,` and no
/// leading or trailing whitespace. A token naming a chatbot no request can name is refused at
/// the door instead of granting nothing.
fn chatbot_claim(id: &str) -> Result<String, ApiError> {
    // The same rule as every chatbot id the service stores (`validate::chatbot_id`).
    crate::validate::chatbot_id(id).map_err(|m| {
        ApiError::Unauthorized(format!(
            "chatbot_id {m} (1 to 128 characters without control characters, '/', ',' or \
             leading or trailing whitespace)"
        ))
    })
}

/// The principal of verified claims; every value is checked here, so nothing a token carries
/// reaches the database unless it can be stored.
fn principal(claims: &serde_json::Map<String, serde_json::Value>) -> Result<Principal, ApiError> {
    let bad = |m: &str| ApiError::Unauthorized(m.to_string());
    let account_id = match claims.get("account_id") {
        None => return Err(bad("token lacks the account_id claim")),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad(ACCOUNT_ID_RULE))?,
    };
    let sub = string_claim(claims, "sub")?.ok_or_else(|| bad("token lacks the sub claim"))?;
    let sub_chars = sub.chars().count();
    if sub_chars == 0 || sub_chars > MAX_SUB_CHARS || sub.chars().any(char::is_control) {
        return Err(bad(
            "sub must be 1 to 255 characters without control characters",
        ));
    }
    if numeric_date(claims, "exp")?.is_none() {
        return Err(bad("token lacks the exp claim"));
    }
    numeric_date(claims, "nbf")?;
    numeric_date(claims, "iat")?;
    let scopes = scopes(string_claim(claims, "scope")?.unwrap_or(""))?;
    let chatbot_id = string_claim(claims, "chatbot_id")?
        .map(chatbot_claim)
        .transpose()?;
    Ok(Principal {
        sub: sub.to_string(),
        account_id,
        scopes,
        chatbot_id,
    })
}

/// Verifies tokens with the configured keys; built once at start.
pub struct TokenVerifier {
    hmac: Option<DecodingKey>,
    public: Option<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl TokenVerifier {
    /// Builds the keys; a PEM that is neither an RSA nor an EC public key is an error.
    pub fn new(cfg: &JwtConfig) -> Result<Self, String> {
        let hmac = cfg
            .secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let public = match &cfg.public_key_pem {
            None => None,
            Some(pem) => Some(if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (Algorithm::RS256, k)
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                (Algorithm::ES256, k)
            } else {
                return Err(
                    "JWT_PUBLIC_KEY_FILE: not a PEM RSA or EC (P-256) public key".to_string(),
                );
            }),
        };
        Ok(Self {
            hmac,
            public,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
    }

    /// Verifies a compact JWT and returns its principal.
    ///
    /// The header and the claims are read strictly first (unique member names, no parameter
    /// that changes how the token must be read), then the library checks the signature and
    /// `exp`, `nbf`, `iss`, `aud`, then every claim the service uses is checked to be storable.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let bad = |m: &str| ApiError::Unauthorized(m.to_string());
        let (header, claims) = segments(token)?;
        let header = json_object(header, "header")?;
        let claims = json_object(claims, "claims")?;
        for (name, refusal) in REFUSED_HEADER_PARAMETERS {
            if header.contains_key(*name) {
                return Err(bad(refusal));
            }
        }
        match header.get("typ") {
            None => {}
            Some(serde_json::Value::String(t)) if accepted_type(t) => {}
            Some(_) => return Err(bad("token type (typ) not accepted: expected JWT or at+jwt")),
        }
        // The key is chosen by the algorithm the server allows, never trusted from the token:
        // an HS256 token is checked only against JWT_SECRET, RS/ES only against the public key.
        // `kid`, `jku`, `jwk`, `x5u` and `x5c` are never followed: there is one key per algorithm.
        let alg = match header.get("alg").and_then(|a| a.as_str()) {
            Some("HS256") => Algorithm::HS256,
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            _ => return Err(bad("token algorithm not accepted")),
        };
        let key = match (alg, &self.hmac, &self.public) {
            (Algorithm::HS256, Some(k), _) => k,
            (alg, _, Some((allowed, k))) if alg == *allowed => k,
            _ => return Err(bad("token algorithm not accepted")),
        };
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        jsonwebtoken::decode::<serde::de::IgnoredAny>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => bad("token expired"),
                K::ImmatureSignature => bad("token not yet valid (nbf)"),
                K::InvalidIssuer => bad("wrong token issuer"),
                K::InvalidAudience => bad("wrong token audience"),
                K::MissingRequiredClaim(c) => bad(&format!("token lacks the {c} claim")),
                K::InvalidClaimFormat(c) => bad(&format!("the {c} claim is malformed")),
                K::InvalidSignature => bad("invalid token signature"),
                K::Base64(_) => bad("malformed token: the signature is not base64url"),
                K::Json(_) => bad("the token header is malformed"),
                _ => bad("invalid token"),
            }
        })?;
        principal(&claims)
    }
}

/// Reads `Authorization: Bearer <token>`, the one place a token is accepted (RFC 6750 §2.1).
///
/// A request that carries its credentials ambiguously is refused with 400 `invalid_request`
/// (RFC 6750 §3.1) rather than resolved by picking one: two `Authorization` fields,
/// comma-joined credentials, extra words after the token, or a token both in the header and in
/// the `access_token` query parameter (RFC 6750 §2: one method per request). A token in the
/// query string alone is not read: URLs end up in logs.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let expected = || ApiError::Unauthorized("expected: Authorization: Bearer <token>".into());
    let mut fields = req.headers().get_all(header::AUTHORIZATION);
    let field = fields.next();
    if fields.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "more than one Authorization header".into(),
        ));
    }
    let in_query = url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(name, _)| name == "access_token");
    let Some(field) = field else {
        return Err(ApiError::Unauthorized(if in_query {
            "a token in the access_token query parameter is not accepted; send              Authorization: Bearer <token>"
                .into()
        } else {
            "missing bearer token".into()
        }));
    };
    if in_query {
        return Err(ApiError::InvalidRequest(
            "a token is sent both in the Authorization header and in the access_token query              parameter"
                .into(),
        ));
    }
    let value = field.to_str().map_err(|_| {
        ApiError::InvalidRequest("the Authorization header is not printable ASCII".into())
    })?;
    if value.contains(',') {
        return Err(ApiError::InvalidRequest(
            "the Authorization header holds more than one credential".into(),
        ));
    }
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(expected());
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(expected());
    }
    if token.contains([' ', '\t']) {
        return Err(ApiError::InvalidRequest(
            "the Authorization header must hold exactly one bearer token".into(),
        ));
    }
    if !is_b64token(token) {
        return Err(ApiError::Unauthorized(
            "malformed token: not a bearer token (RFC 6750 section 2.1)".into(),
        ));
    }
    Ok(token)
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A scope requirement: the token must grant at least one of `ANY_OF`.
pub trait Requirement {
    /// Accepted scopes.
    const ANY_OF: &'static [&'static str];
    /// The rate-limit budget the request spends.
    const BUDGET: Budget = Budget::Requests;
}

macro_rules! requirement {
    ($name:ident, $($scope:literal),+) => {
        /// Scope requirement marker.
        pub struct $name;
        impl Requirement for $name {
            const ANY_OF: &'static [&'static str] = &[$($scope),+];
        }
    };
}

/// Scope requirement marker of session upserts, which spend their own budget.
pub struct Upsert;
impl Requirement for Upsert {
    const ANY_OF: &'static [&'static str] = &["contacts:upsert", "contacts:write"];
    const BUDGET: Budget = Budget::Upserts;
}
requirement!(Read, "contacts:read");
requirement!(Write, "contacts:write");
requirement!(Delete, "contacts:delete");
requirement!(Export, "contacts:export");
requirement!(PrivacyManage, "privacy:manage");
requirement!(AuditRead, "audit:read");

/// Extractor: a verified principal holding one of `R`'s scopes. Runs before the body is read,
/// so a request without rights learns nothing about its body's validity.
pub struct Auth<R>(pub Principal, PhantomData<R>);

impl<R: Requirement> FromRequest for Auth<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize::<R>(req))
    }
}

fn authorize<R: Requirement>(req: &HttpRequest) -> Result<Auth<R>, ApiError> {
    let verifier = req
        .app_data::<web::Data<TokenVerifier>>()
        .ok_or_else(|| ApiError::internal("TokenVerifier not configured"))?;
    let principal = verifier.verify(bearer(req)?)?;
    req.extensions_mut().insert(principal.clone());
    if !R::ANY_OF.iter().any(|s| principal.has(s)) {
        return Err(ApiError::InsufficientScope(R::ANY_OF.join(" or ")));
    }
    // Only requests that passed authentication spend (and can exhaust) an account's budget.
    if let Some(limiter) = req.app_data::<web::Data<Limiter>>() {
        if let Some((info, verdict)) = limiter.check(principal.account_id, R::BUDGET) {
            req.extensions_mut().insert(info);
            verdict?;
        }
    }
    Ok(Auth(principal, PhantomData))
}

/// Options of `contacts-api token`.
pub struct MintRequest<'a> {
    /// Signing secret (`JWT_SECRET`).
    pub secret: &'a str,
    /// Account claim.
    pub account_id: i64,
    /// Subject claim.
    pub sub: &'a str,
    /// Space-separated scopes.
    pub scope: &'a str,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
    /// Optional chatbot restriction.
    pub chatbot_id: Option<&'a str>,
    /// Issuer claim, when the service requires one.
    pub issuer: Option<&'a str>,
    /// Audience claim, when the service requires one.
    pub audience: Option<&'a str>,
}

/// Signs an HS256 token.
pub fn mint(r: &MintRequest) -> Result<String, String> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: r.sub.to_string(),
        account_id: r.account_id,
        scope: r.scope.to_string(),
        exp: now + r.ttl_secs,
        nbf: None,
        iat: Some(now),
        chatbot_id: r.chatbot_id.map(str::to_string),
        iss: r.issuer.map(str::to_string),
        aud: r.audience.map(|a| serde_json::Value::String(a.to_string())),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(r.secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}
