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

/// A token from a raw header and raw claims (JSON text, so duplicates and odd members survive),
/// signed HS256 with `secret`.
fn raw_token(header: &str, claims: &str, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

/// `raw_token` with the test app's secret.
fn raw(header: &str, claims: &str) -> String {
    raw_token(header, claims, SECRET.as_bytes())
}

/// 401 `invalid_token` whose detail mentions `needle`.
#[track_caller]
fn assert_refused_for(r: &Resp, needle: &str) {
    assert_invalid_token(r);
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains(needle),
        "detail {detail:?} lacks {needle:?}"
    );
}

#[actix_web::test]
async fn header_parameters_that_change_the_reading_are_refused() {
    let app = spawn().await;
    let c = claims().to_string();
    for (header, needle) in [
        // RFC 7515 §4.1.11: extensions marked critical must be understood; none is.
        (r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#, "crit"),
        (
            r#"{"alg":"HS256","crit":["x-tenant"],"x-tenant":"2"}"#,
            "crit",
        ),
        (r#"{"alg":"HS256","crit":[]}"#, "crit"),
        // RFC 7797: an unencoded payload, with or without `crit`.
        (r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#, "crit"),
        (r#"{"alg":"HS256","b64":false}"#, "b64"),
        (r#"{"alg":"HS256","b64":true}"#, "b64"),
        (r#"{"alg":"HS256","zip":"DEF"}"#, "zip"),
        (r#"{"alg":"HS256","enc":"A256GCM"}"#, "enc"),
        (r#"{"alg":"HS256","cty":"JWT"}"#, "cty"),
    ] {
        assert_refused_for(&app.get(LIST, &raw(header, &c)).await, needle);
    }
    // Unknown parameters that are not critical, and key hints, are ignored (RFC 7515 §4).
    let plain = r#"{"alg":"HS256","typ":"JWT","kid":"key-1","x-trace":"abc"}"#;
    assert_accepted(&app.get(LIST, &raw(plain, &c)).await);
}

#[actix_web::test]
async fn only_jwt_and_access_token_types_are_accepted() {
    let app = spawn().await;
    let c = claims().to_string();
    for typ in [
        "JWT",
        "jwt",
        "application/jwt",
        "at+jwt",
        "application/at+JWT",
    ] {
        let header = json!({"alg": "HS256", "typ": typ}).to_string();
        assert_accepted(&app.get(LIST, &raw(&header, &c)).await);
    }
    for typ in [
        json!("secevent+jwt"),
        json!("dpop+jwt"),
        json!("logout+jwt"),
        json!("JOSE+JSON"),
        json!(""),
        json!(1),
        Value::Null,
    ] {
        let header = json!({"alg": "HS256", "typ": typ}).to_string();
        assert_refused_for(&app.get(LIST, &raw(&header, &c)).await, "typ");
    }
}

#[actix_web::test]
async fn duplicate_members_are_refused_not_resolved() {
    let app = spawn().await;
    let exp = now() + 600;
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    for (claims, name) in [
        (
            format!(
                r#"{{"sub":"x","account_id":1,"account_id":2,"scope":"contacts:read","exp":{exp}}}"#
            ),
            "account_id",
        ),
        (
            format!(
                r#"{{"sub":"x","account_id":2,"scope":"contacts:read","exp":{exp},"account_id":1}}"#
            ),
            "account_id",
        ),
        (
            format!(
                r#"{{"sub":"x","account_id":1,"scope":"","scope":"contacts:read","exp":{exp}}}"#
            ),
            "scope",
        ),
        (
            format!(r#"{{"sub":"x","account_id":1,"scope":"contacts:read","exp":1,"exp":{exp}}}"#),
            "exp",
        ),
    ] {
        let r = app.get(LIST, &raw(header, &claims)).await;
        assert_refused_for(&r, "duplicate member");
        assert_refused_for(&r, name);
    }
    let c = claims().to_string();
    let r = app
        .get(LIST, &raw(r#"{"alg":"none","alg":"HS256"}"#, &c))
        .await;
    assert_refused_for(&r, "duplicate member `alg`");
    // A duplicate name that is not a plain identifier is not repeated in the answer, and the
    // challenge header stays valid.
    let odd = format!(r#"{{"sub":"x","account_id":1,"exp":{exp},"\u00e9\"\n":1,"\u00e9\"\n":2}}"#);
    let r = app.get(LIST, &raw(header, &odd)).await;
    assert_refused_for(&r, "duplicate member");
}

#[actix_web::test]
async fn key_hints_in_the_token_are_never_followed() {
    let app = spawn().await;
    let c = claims().to_string();
    let attacker = b"attacker-secret-attacker-secret-01234";
    let k = b64(attacker);
    for header in [
        r#"{"alg":"HS256","jku":"https://evil.test/jwks.json","kid":"evil"}"#.to_string(),
        r#"{"alg":"HS256","x5u":"https://evil.test/cert.pem"}"#.to_string(),
        format!(r#"{{"alg":"HS256","jwk":{{"kty":"oct","k":"{k}"}}}}"#),
    ] {
        // Signed with the key the token points to: refused.
        let forged = raw_token(&header, &c, attacker);
        assert_refused_for(&app.get(LIST, &forged).await, "signature");
        // Signed with the server's key: accepted, the hint ignored.
        assert_accepted(&app.get(LIST, &raw(&header, &c)).await);
    }
}

#[actix_web::test]
async fn ambiguous_credentials_are_400_invalid_request() {
    let app = spawn().await;
    let valid = token(1, "contacts:read");
    let other = token(2, "contacts:read");
    let check = |r: Resp| {
        r.problem(400, "invalid_request");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_request\""),
            "WWW-Authenticate: {challenge}"
        );
    };
    // Two Authorization fields, whichever comes first.
    let r = app
        .send(
            TestRequest::get()
                .uri(LIST)
                .append_header(("authorization", format!("Bearer {valid}")))
                .append_header(("authorization", format!("Bearer {other}"))),
        )
        .await;
    check(r);
    let r = app
        .send(
            TestRequest::get()
                .uri(LIST)
                .append_header(("authorization", format!("Bearer {valid}")))
                .append_header(("authorization", "Basic dXNlcjpwYXNz")),
        )
        .await;
    check(r);
    // Comma-joined credentials, extra words, a header and a query-string token.
    for value in [
        format!("Bearer {valid}, Bearer {other}"),
        format!("Bearer {valid},"),
        format!("Basic dXNlcjpwYXNz, Bearer {valid}"),
        format!("Bearer {valid} {other}"),
        format!("Bearer {valid} extra"),
    ] {
        let r = app
            .send(
                TestRequest::get()
                    .uri(LIST)
                    .insert_header(("authorization", value.as_str())),
            )
            .await;
        check(r);
    }
    let r = app
        .send(
            TestRequest::get()
                .uri(&format!("{LIST}?access_token={other}"))
                .insert_header(("authorization", format!("Bearer {valid}"))),
        )
        .await;
    check(r);
    // Several spaces after the scheme are still one credential (RFC 9110 §11.4: 1*SP).
    let r = app
        .send(
            TestRequest::get()
                .uri(LIST)
                .insert_header(("authorization", format!("Bearer   {valid}"))),
        )
        .await;
    assert_accepted(&r);
}

/// Claims that verify but carry values the database cannot store or the contract forbids.
fn unstorable_claims() -> Vec<(&'static str, Value)> {
    let far = 253_402_300_800i64; // 10000-01-01T00:00:00Z
    vec![
        ("sub", with("sub", json!("ali\u{0}ce"))),
        ("sub", with("sub", json!("ali\u{1}ce"))),
        ("sub", with("sub", json!("line\nbreak"))),
        ("sub", with("sub", json!("x".repeat(256)))),
        ("sub", with("sub", json!(""))),
        ("sub", with("sub", json!(42))),
        ("chatbot_id", with("chatbot_id", json!("bot\u{0}"))),
        ("chatbot_id", with("chatbot_id", json!("bo/t"))),
        ("chatbot_id", with("chatbot_id", json!("bot,other"))),
        ("chatbot_id", with("chatbot_id", json!(" bot"))),
        ("chatbot_id", with("chatbot_id", json!("bot "))),
        ("chatbot_id", with("chatbot_id", json!(""))),
        ("chatbot_id", with("chatbot_id", json!("b".repeat(129)))),
        ("chatbot_id", with("chatbot_id", Value::Null)),
        ("chatbot_id", with("chatbot_id", json!(["bot"]))),
        ("account_id", with("account_id", json!(0))),
        ("account_id", with("account_id", json!(-1))),
        (
            "account_id",
            with("account_id", json!(9_223_372_036_854_775_808u64)),
        ),
        ("account_id", with("account_id", json!(1.5))),
        ("account_id", with("account_id", json!(1.0))),
        ("account_id", with("account_id", json!("1"))),
        ("account_id", with("account_id", json!(true))),
        (
            "scope",
            with("scope", json!(["contacts:upsert", "contacts:write"])),
        ),
        (
            "scope",
            with("scope", json!("contacts:upsert\tcontacts:write")),
        ),
        ("scope", with("scope", json!("contacts:write\u{0}"))),
        ("scope", with("scope", Value::Null)),
        ("exp", with("exp", json!(far))),
        ("exp", with("exp", json!(now() as f64 + 600.5))),
        ("exp", with("exp", json!(1e300))),
        ("exp", with("exp", json!(-1))),
        ("nbf", with("nbf", json!(far))),
        ("nbf", with("nbf", json!(-5))),
        ("iat", with("iat", json!(far))),
        ("iat", with("iat", json!("yesterday"))),
    ]
}

#[actix_web::test]
async fn unstorable_claim_values_are_401_on_writes_and_audited_operations() {
    let app = spawn().await;
    for (name, mut c) in unstorable_claims() {
        c["scope"] = match &c["scope"] {
            Value::String(s) if s == "contacts:read" => json!("contacts:upsert contacts:write"),
            other => other.clone(),
        };
        let t = hs(&c);
        let r = app
            .upsert(&t, "bot", "s-1", json!({"channel": "web", "name": "Ada"}))
            .await;
        assert_refused_for(&r, name);
        let r = app
            .call(
                actix_web::http::Method::POST,
                "/api/v1/contacts",
                &t,
                Some(json!({"chatbot_id": "bot", "channel": "api", "name": "Ada"})),
            )
            .await;
        assert_refused_for(&r, name);
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM audit_events"), 0);
    // The same claims within the rules write normally.
    let mut c = with("sub", json!("bot-runtime é 🤖"));
    c["scope"] = json!("contacts:upsert contacts:write");
    c["chatbot_id"] = json!("bot");
    c["iat"] = json!(now());
    c["nbf"] = json!(now() - 10);
    let r = app
        .upsert(
            &hs(&c),
            "bot",
            "s-1",
            json!({"channel": "web", "name": "Ada"}),
        )
        .await;
    r.ok(201);
}
