//! Bearer-token verification: schemes, algorithms (none, HS/RS confusion, RS256, ES256), time
//! claims, issuer and audience, token placement, scopes and the `account_id` claim.

use actix_web::test::TestRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use contacts_api::auth::{mint, MintRequest};
use contacts_api::config::JwtConfig;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use crate::helpers::{fixture, now, sign, spawn, spawn_with, token, Resp, SECRET};

/// A route that needs `contacts:read`.
const LIST: &str = "/api/v1/contacts";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "contacts-api";

/// Valid claims for crafted tokens.
fn claims() -> Value {
    json!({
        "sub": "x",
        "account_id": 1,
        "scope": "contacts:read",
        "exp": now() + 600,
    })
}

/// `claims()` with `key` set to `value`.
fn with(key: &str, value: Value) -> Value {
    let mut c = claims();
    c[key] = value;
    c
}

/// `claims()` without `key`.
fn without(key: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(key);
    c
}

/// HS256 with the test app's secret.
fn hs(claims: &Value) -> String {
    sign(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("read fixture {name}: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A server that verifies with the public key `name` only (no HMAC secret).
fn public_key_config(name: &str) -> JwtConfig {
    JwtConfig {
        public_key_pem: Some(read_fixture(name)),
        ..Default::default()
    }
}

/// A server that requires `iss` and `aud`.
fn iss_aud_config() -> JwtConfig {
    JwtConfig {
        secret: Some(SECRET.into()),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        ..Default::default()
    }
}

/// 401 `invalid_token` with the RFC 6750 challenge.
#[track_caller]
fn assert_invalid_token(r: &Resp) {
    r.problem(401, "invalid_token");
    let challenge = r
        .header("www-authenticate")
        .expect("a 401 carries WWW-Authenticate");
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "WWW-Authenticate: {challenge}"
    );
}

/// 200 with a page of contacts.
#[track_caller]
fn assert_accepted(r: &Resp) {
    let body = r.ok(200);
    assert!(body["data"].is_array(), "body: {body}");
}

#[actix_web::test]
async fn missing_authorization_header_is_401() {
    let app = spawn().await;
    let r = app.send(TestRequest::get().uri(LIST)).await;
    assert_invalid_token(&r);
}

#[actix_web::test]
async fn non_bearer_schemes_are_401() {
    let app = spawn().await;
    let valid = token(1, "contacts:read");
    for value in [
        "Basic dXNlcjpwYXNz".to_string(),
        format!("Basic {valid}"),
        format!("Token {valid}"),
        valid.clone(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
    ] {
        let r = app
            .send(
                TestRequest::get()
                    .uri(LIST)
                    .insert_header(("authorization", value.as_str())),
            )
            .await;
        assert_invalid_token(&r);
    }
}

#[actix_web::test]
async fn garbage_tokens_are_401() {
    let app = spawn().await;
    for t in [
        "garbage",
        "a.b.c",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.not-base64!.sig",
    ] {
        let r = app.get(LIST, t).await;
        assert_invalid_token(&r);
    }
}

#[actix_web::test]
async fn alg_none_is_401() {
    let app = spawn().await;
    let body = b64(claims().to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None","typ":"JWT"}"#,
        r#"{"alg":"NONE","typ":"JWT"}"#,
    ] {
        let unsigned = format!("{}.{body}.", b64(header.as_bytes()));
        let r = app.get(LIST, &unsigned).await;
        assert_invalid_token(&r);
    }
    // A valid token whose header is swapped for alg=none, signature kept.
    let valid = hs(&claims());
    let mut parts = valid.split('.');
    let (_, payload, sig) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
    let swapped = format!("{}.{payload}.{sig}", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_invalid_token(&app.get(LIST, &swapped).await);
    // The unmodified token is accepted, so the rejections above are about the algorithm.
    assert_accepted(&app.get(LIST, &valid).await);
}

#[actix_web::test]
async fn hs256_with_wrong_secret_is_401() {
    let app = spawn().await;
    let wrong = sign(
        &claims(),
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret-0123456"),
    );
    assert_invalid_token(&app.get(LIST, &wrong).await);
}

#[actix_web::test]
async fn tampered_claims_are_401() {
    let app = spawn().await;
    let valid = hs(&claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = b64(with("account_id", json!(2)).to_string().as_bytes());
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_invalid_token(&app.get(LIST, &tampered).await);
}

#[actix_web::test]
async fn rsa_public_key_as_hmac_secret_is_401() {
    let public = read_fixture("rsa_public.pem");
    let forged = sign(
        &claims(),
        Algorithm::HS256,
        &EncodingKey::from_secret(&public),
    );
    // Public key only: no HMAC verification at all.
    let app = spawn_with(public_key_config("rsa_public.pem")).await;
    assert_invalid_token(&app.get(LIST, &forged).await);
    // An HS256 token with the real secret means nothing to a server without that secret.
    assert_invalid_token(&app.get(LIST, &hs(&claims())).await);

    // Secret and public key: HS256 is checked against the secret, never the public key.
    let both = spawn_with(JwtConfig {
        secret: Some(SECRET.into()),
        public_key_pem: Some(public),
        ..Default::default()
    })
    .await;
    assert_invalid_token(&both.get(LIST, &forged).await);
    assert_accepted(&both.get(LIST, &hs(&claims())).await);
}

#[actix_web::test]
async fn rs256_with_the_configured_key_is_accepted() {
    let app = spawn_with(public_key_config("rsa_public.pem")).await;
    let key = EncodingKey::from_rsa_pem(&read_fixture("rsa_private.pem")).unwrap();
    let t = sign(&claims(), Algorithm::RS256, &key);
    assert_accepted(&app.get(LIST, &t).await);
    // Same key, expired: the signature alone is not enough.
    let expired = sign(&with("exp", json!(now() - 120)), Algorithm::RS256, &key);
    assert_invalid_token(&app.get(LIST, &expired).await);
}

#[actix_web::test]
async fn es256_with_the_configured_key_is_accepted() {
    let app = spawn_with(public_key_config("ec_public.pem")).await;
    let key = EncodingKey::from_ec_pem(&read_fixture("ec_private.pem")).unwrap();
    let t = sign(&claims(), Algorithm::ES256, &key);
    assert_accepted(&app.get(LIST, &t).await);
}

#[actix_web::test]
async fn rs256_on_an_hs_only_server_is_401() {
    let app = spawn().await;
    let key = EncodingKey::from_rsa_pem(&read_fixture("rsa_private.pem")).unwrap();
    let t = sign(&claims(), Algorithm::RS256, &key);
    assert_invalid_token(&app.get(LIST, &t).await);
}

#[actix_web::test]
async fn algorithm_of_the_other_key_type_is_401() {
    let rsa = EncodingKey::from_rsa_pem(&read_fixture("rsa_private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&read_fixture("ec_private.pem")).unwrap();

    let ec_server = spawn_with(public_key_config("ec_public.pem")).await;
    let rs_token = sign(&claims(), Algorithm::RS256, &rsa);
    assert_invalid_token(&ec_server.get(LIST, &rs_token).await);

    let rsa_server = spawn_with(public_key_config("rsa_public.pem")).await;
    let es_token = sign(&claims(), Algorithm::ES256, &ec);
    assert_invalid_token(&rsa_server.get(LIST, &es_token).await);
    // RS384/RS512 with the right key are not the configured algorithm either.
    let rs512 = sign(&claims(), Algorithm::RS512, &rsa);
    assert_invalid_token(&rsa_server.get(LIST, &rs512).await);
}

#[actix_web::test]
async fn expired_token_is_401() {
    let app = spawn().await;
    let t = hs(&with("exp", json!(now() - 120)));
    assert_invalid_token(&app.get(LIST, &t).await);
}

#[actix_web::test]
async fn expiry_within_the_leeway_is_accepted() {
    let app = spawn().await;
    let t = hs(&with("exp", json!(now() - 5)));
    assert_accepted(&app.get(LIST, &t).await);
}

#[actix_web::test]
async fn missing_exp_is_401() {
    let app = spawn().await;
    let t = hs(&without("exp"));
    assert_invalid_token(&app.get(LIST, &t).await);
}

#[actix_web::test]
async fn future_nbf_is_401() {
    let app = spawn().await;
    let t = hs(&with("nbf", json!(now() + 300)));
    assert_invalid_token(&app.get(LIST, &t).await);
}

#[actix_web::test]
async fn past_nbf_is_accepted() {
    let app = spawn().await;
    let t = hs(&with("nbf", json!(now() - 60)));
    assert_accepted(&app.get(LIST, &t).await);
}

#[actix_web::test]
async fn wrong_issuer_is_401() {
    let app = spawn_with(iss_aud_config()).await;
    let mut c = with("iss", json!("https://evil.test"));
    c["aud"] = json!(AUDIENCE);
    assert_invalid_token(&app.get(LIST, &hs(&c)).await);
}

#[actix_web::test]
async fn missing_issuer_is_401() {
    let app = spawn_with(iss_aud_config()).await;
    let c = with("aud", json!(AUDIENCE));
    assert_invalid_token(&app.get(LIST, &hs(&c)).await);
}

#[actix_web::test]
async fn wrong_audience_is_401() {
    let app = spawn_with(iss_aud_config()).await;
    let mut c = with("iss", json!(ISSUER));
    c["aud"] = json!("another-api");
    assert_invalid_token(&app.get(LIST, &hs(&c)).await);
}

#[actix_web::test]
async fn missing_audience_is_401() {
    let app = spawn_with(iss_aud_config()).await;
    let c = with("iss", json!(ISSUER));
    assert_invalid_token(&app.get(LIST, &hs(&c)).await);
}

#[actix_web::test]
async fn right_issuer_and_audience_are_accepted() {
    let app = spawn_with(iss_aud_config()).await;
    let mut c = with("iss", json!(ISSUER));
    c["aud"] = json!(AUDIENCE);
    assert_accepted(&app.get(LIST, &hs(&c)).await);
    // A minted token carrying both is accepted too; one without them is not.
    let minted = mint(&MintRequest {
        secret: SECRET,
        account_id: 1,
        sub: "alice",
        scope: "contacts:read",
        ttl_secs: 600,
        chatbot_id: None,
        issuer: Some(ISSUER),
        audience: Some(AUDIENCE),
    })
    .unwrap();
    assert_accepted(&app.get(LIST, &minted).await);
    assert_invalid_token(&app.get(LIST, &token(1, "contacts:read")).await);
}

#[actix_web::test]
async fn token_in_the_query_string_is_ignored() {
    let app = spawn().await;
    let valid = token(1, "contacts:read");
    let r = app
        .send(TestRequest::get().uri(&format!("{LIST}?access_token={valid}")))
        .await;
    assert_invalid_token(&r);
}

#[actix_web::test]
async fn valid_token_without_the_scope_is_403() {
    let app = spawn().await;
    for scopes in [
        "",
        "contacts:write",
        "contacts:reader contacts:write",
        "CONTACTS:READ",
    ] {
        let r = app.get(LIST, &token(1, scopes)).await;
        r.problem(403, "insufficient_scope");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\""),
            "scopes {scopes:?}: WWW-Authenticate: {challenge}"
        );
    }
    // The scope may sit anywhere in the list.
    let r = app
        .get(LIST, &token(1, "contacts:write contacts:read"))
        .await;
    assert_accepted(&r);
}

#[actix_web::test]
async fn account_id_must_be_a_positive_integer() {
    let app = spawn().await;
    assert_invalid_token(&app.get(LIST, &token(0, "contacts:read")).await);
    assert_invalid_token(&app.get(LIST, &token(-1, "contacts:read")).await);
    for account in [json!(0), json!(-5), json!("1"), json!(1.5), Value::Null] {
        let t = hs(&with("account_id", account));
        let r = app.get(LIST, &t).await;
        assert_invalid_token(&r);
    }
    assert_invalid_token(&app.get(LIST, &hs(&without("account_id"))).await);
}

#[actix_web::test]
async fn minted_token_is_accepted() {
    let app = spawn().await;
    assert_accepted(&app.get(LIST, &token(1, "contacts:read")).await);
    // The lower-case scheme is the same scheme.
    let r = app
        .send(TestRequest::get().uri(LIST).insert_header((
            "authorization",
            format!("bearer {}", token(1, "contacts:read")),
        )))
        .await;
    assert_accepted(&r);
}
