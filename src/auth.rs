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
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let bad = |m: &str| ApiError::Unauthorized(m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed token"))?;
        // The key is chosen by the algorithm the server allows, never trusted from the token:
        // an HS256 token is checked only against JWT_SECRET, RS/ES only against the public key.
        let key = match (header.alg, &self.hmac, &self.public) {
            (Algorithm::HS256, Some(k), _) => k,
            (alg, _, Some((allowed, k))) if alg == *allowed => k,
            _ => return Err(bad("token algorithm not accepted")),
        };
        let mut v = Validation::new(header.alg);
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
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => bad("token expired"),
                K::ImmatureSignature => bad("token not yet valid (nbf)"),
                K::InvalidIssuer => bad("wrong token issuer"),
                K::InvalidAudience => bad("wrong token audience"),
                K::MissingRequiredClaim(c) => bad(&format!("token lacks the {c} claim")),
                K::InvalidSignature => bad("invalid token signature"),
                K::Json(_) => bad("token claims are malformed"),
                _ => bad("invalid token"),
            }
        })?;
        let c = data.claims;
        if c.account_id < 1 {
            return Err(bad("account_id must be a positive integer"));
        }
        if c.sub.is_empty() {
            return Err(bad("sub must not be empty"));
        }
        Ok(Principal {
            sub: c.sub,
            account_id: c.account_id,
            scopes: c.scope.split_whitespace().map(str::to_string).collect(),
            chatbot_id: c.chatbot_id,
        })
    }
}

/// Reads `Authorization: Bearer <token>`; tokens anywhere else (query string, cookies) are
/// ignored on purpose: URLs end up in logs.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("expected: Authorization: Bearer <token>".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "expected: Authorization: Bearer <token>".into(),
        ));
    }
    Ok(token.trim())
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
