//! Field rules of the contact (API.md "The contact"), on the session upsert, on create and on
//! the merge patch: normalisation of what is accepted, a 422 naming every rejected field, and
//! nothing written by a rejected request.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Map, Value};

use crate::helpers::*;

const UPSERT: &str = "contacts:upsert";
const WRITE: &str = "contacts:write contacts:read";
const CONTACTS: &str = "/api/v1/contacts";

/// The `field` of every entry of a problem's `errors`, in order.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {problem}"))
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            e["field"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Asserts a 422 `validation_failed` naming exactly `expected` (in any order).
#[track_caller]
fn rejected(r: &Resp, expected: &[&str]) -> Value {
    let p = r.problem(422, "validation_failed");
    let mut got = fields(&p);
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "problem: {p}");
    p
}

fn rows<S>(app: &TestApp<S>) -> i64 {
    app.db.count("SELECT count(*) AS n FROM contacts")
}

fn session_rows<S>(app: &TestApp<S>) -> i64 {
    app.db.count("SELECT count(*) AS n FROM contact_sessions")
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `base` with the keys of `extra` set.
fn with(base: Value, extra: &Value) -> Value {
    let mut map: Map<String, Value> = base.as_object().unwrap().clone();
    for (k, v) in extra.as_object().unwrap() {
        map.insert(k.clone(), v.clone());
    }
    Value::Object(map)
}

fn contact_path(id: &Value) -> String {
    format!("{CONTACTS}/{}", id.as_i64().unwrap())
}

/// A fresh contact made by hand with `body` merged into the required fields; returns it.
async fn create<S, B>(app: &TestApp<S>, body: Value) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let body = with(json!({"chatbot_id": "bot", "channel": "api"}), &body);
    app.call(Method::POST, CONTACTS, &token(1, WRITE), Some(body))
        .await
        .ok(201)
}

async fn patch<S, B>(app: &TestApp<S>, id: &Value, body: Value) -> Resp
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    app.call(
        Method::PATCH,
        &contact_path(id),
        &token(1, WRITE),
        Some(body),
    )
    .await
}

async fn get<S, B>(app: &TestApp<S>, id: &Value) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    app.get(&contact_path(id), &token(1, WRITE)).await.ok(200)
}

/// What one input should give.
enum Want {
    /// Accepted, stored as this value.
    Stored(Value),
    /// Rejected with a 422 naming the field.
    Rejected,
}
use Want::{Rejected, Stored};

/// Sends `{field: input}` plus `extra` through the session upsert, create and (when `patchable`)
/// the merge patch, and checks the outcome of each: the stored value, or a 422 naming `field`
/// with nothing written.
async fn check_field<S, B>(
    app: &TestApp<S>,
    field: &str,
    input: Value,
    extra: Value,
    want: Want,
    patchable: bool,
) where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let sent = with(json!({ field: input.clone() }), &extra);
    let before = (rows(app), session_rows(app));

    // Session upsert.
    let body = with(json!({"channel": "api"}), &sent);
    let r = app.upsert(&token(1, UPSERT), "bot", &unique(), body).await;
    match &want {
        Stored(v) => assert_eq!(&r.ok(201)[field], v, "upsert {field}: {input}"),
        Rejected => {
            rejected(&r, &[field]);
            assert_eq!((rows(app), session_rows(app)), before, "upsert wrote");
        }
    }

    // Create by hand.
    let before = (rows(app), session_rows(app));
    let body = with(json!({"chatbot_id": "bot", "channel": "api"}), &sent);
    let r = app
        .call(Method::POST, CONTACTS, &token(1, WRITE), Some(body))
        .await;
    match &want {
        Stored(v) => assert_eq!(&r.ok(201)[field], v, "create {field}: {input}"),
        Rejected => {
            rejected(&r, &[field]);
            assert_eq!((rows(app), session_rows(app)), before, "create wrote");
        }
    }

    // Merge patch of a contact holding other values.
    if patchable {
        let c = create(
            app,
            json!({"name": "Before", "email": "before@example.com"}),
        )
        .await;
        let r = patch(app, &c["id"], sent.clone()).await;
        match &want {
            Stored(v) => assert_eq!(&r.ok(200)[field], v, "patch {field}: {input}"),
            Rejected => {
                rejected(&r, &[field]);
                assert_eq!(
                    get(app, &c["id"]).await,
                    c,
                    "a rejected patch changed the contact"
                );
            }
        }
    }
}

#[actix_web::test]
async fn name_is_trimmed_at_most_200_characters_and_empty_means_null() {
    let app = spawn().await;
    let none = json!({});
    for (input, want) in [
        (json!(" Ada Lovelace "), Stored(json!("Ada Lovelace"))),
        (json!("é".repeat(200)), Stored(json!("é".repeat(200)))),
        (
            json!(format!("  {}  ", "a".repeat(200))),
            Stored(json!("a".repeat(200))),
        ),
        (json!("a".repeat(201)), Rejected),
        (json!("é".repeat(201)), Rejected),
        (json!("Ada\u{7}"), Rejected),
        // Only JSON whitespace is trimmed (as the schema's pattern says): other controls at
        // the edges are refused (the contract fuzzer's find: U+0085 was trimmed by
        // `str::trim`), other Unicode spaces are kept.
        (json!("\tAda\r\n"), Stored(json!("Ada"))),
        (json!("\u{85}Ada"), Rejected),
        (json!("Ada\u{b}"), Rejected),
        (json!("\u{3000}Ada"), Stored(json!("\u{3000}Ada"))),
    ] {
        check_field(&app, "name", input, none.clone(), want, true).await;
    }
    // Empty or blank is null: on create and in a patch (which clears).
    for blank in ["", "   "] {
        let c = create(&app, json!({ "name": blank })).await;
        assert_eq!(c["name"], Value::Null);
        let c = create(&app, json!({"name": "Ada"})).await;
        let p = patch(&app, &c["id"], json!({ "name": blank }))
            .await
            .ok(200);
        assert_eq!(p["name"], Value::Null, "an empty name in a patch clears it");
    }
    // The upsert keeps the stored value when the name is empty.
    let t = token(1, UPSERT);
    app.upsert_ok(&t, "bot", "keep", json!({"channel": "api", "name": "Ada"}))
        .await;
    let c = app
        .upsert_ok(&t, "bot", "keep", json!({"channel": "api", "name": "  "}))
        .await;
    assert_eq!(c["name"], "Ada");
}

#[actix_web::test]
async fn email_is_trimmed_syntax_checked_and_at_most_254_characters() {
    let app = spawn().await;
    let none = json!({});
    // 64 + 1 + 189 = 254 characters.
    let longest = format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(57)
    );
    assert_eq!(longest.len(), 254);
    let too_long = longest.replacen('d', "dd", 1);
    for (input, want) in [
        (
            json!("  ada@example.com "),
            Stored(json!("ada@example.com")),
        ),
        (
            json!("Ada.King+cb@Example.co.uk"),
            Stored(json!("Ada.King+cb@Example.co.uk")),
        ),
        (json!(longest.clone()), Stored(json!(longest))),
        (json!(too_long), Rejected),
        (json!("not-an-email"), Rejected),
        (json!("ada@"), Rejected),
        (json!("@example.com"), Rejected),
        (json!("ada@example"), Rejected),
        (json!("ada lovelace@example.com"), Rejected),
        (json!("ada@@example.com"), Rejected),
        (json!("a..b@example.com"), Rejected),
    ] {
        check_field(&app, "email", input, none.clone(), want, true).await;
    }
}

#[actix_web::test]
async fn phone_is_normalised_to_e164_with_the_country_code_as_hint() {
    let app = spawn().await;
    let gb = json!({"country_code": "GB"});
    let none = json!({});
    let e164 = json!("+447700900123");
    for (input, extra, want) in [
        (json!("07700 900123"), gb.clone(), Stored(e164.clone())),
        (
            json!("07700 900123"),
            json!({"country_code": "gb"}),
            Stored(e164.clone()),
        ),
        (json!("+44 7700 900123"), none.clone(), Stored(e164.clone())),
        (
            json!("00 44 7700 900123"),
            none.clone(),
            Stored(e164.clone()),
        ),
        (json!("0044 7700 900123"), gb.clone(), Stored(e164.clone())),
        (
            json!("+447700900123"),
            json!({"country_code": "FR"}),
            Stored(e164.clone()),
        ),
        (
            json!("06 12 34 56 78"),
            json!({"country_code": "FR"}),
            Stored(json!("+33612345678")),
        ),
        // A national number without a country cannot be placed.
        (json!("07700 900123"), none.clone(), Rejected),
        (json!("not a phone"), gb.clone(), Rejected),
        (json!("not a phone"), none.clone(), Rejected),
        (json!("+"), none.clone(), Rejected),
        (json!("12"), gb.clone(), Rejected),
        (
            json!(format!("+44{}", "1".repeat(70))),
            none.clone(),
            Rejected,
        ),
    ] {
        check_field(&app, "phone", input, extra, want, true).await;
    }
}

#[actix_web::test]
async fn a_national_phone_in_a_patch_uses_the_stored_country_code() {
    let app = spawn().await;
    let c = create(&app, json!({"country_code": "GB"})).await;
    let p = patch(&app, &c["id"], json!({"phone": "07700 900124"}))
        .await
        .ok(200);
    assert_eq!(p["phone"], "+447700900124");
    // A country sent in the same patch wins over the stored one.
    let p = patch(
        &app,
        &c["id"],
        json!({"country_code": "fr", "phone": "06 12 34 56 78"}),
    )
    .await
    .ok(200);
    assert_eq!(
        (&p["country_code"], &p["phone"]),
        (&json!("FR"), &json!("+33612345678"))
    );
    // Without a stored country a national number is a 422 and nothing changes.
    let bare = create(&app, json!({})).await;
    rejected(
        &patch(&app, &bare["id"], json!({"phone": "07700 900123"})).await,
        &["phone"],
    );
    assert_eq!(get(&app, &bare["id"]).await, bare);
    // Clearing the country in the same patch removes the hint.
    rejected(
        &patch(
            &app,
            &c["id"],
            json!({"country_code": null, "phone": "07700 900125"}),
        )
        .await,
        &["phone"],
    );
    assert_eq!(get(&app, &c["id"]).await["country_code"], "FR");
}

#[actix_web::test]
async fn country_code_is_an_assigned_alpha_2_code_stored_upper_case() {
    let app = spawn().await;
    let none = json!({});
    for (input, want) in [
        (json!("GB"), Stored(json!("GB"))),
        (json!("gb"), Stored(json!("GB"))),
        (json!(" fr "), Stored(json!("FR"))),
        (json!("XX"), Rejected),
        (json!("GBR"), Rejected),
        (json!("G"), Rejected),
        (json!("UK"), Rejected),
        (json!("g1"), Rejected),
    ] {
        check_field(&app, "country_code", input, none.clone(), want, true).await;
    }
}

#[actix_web::test]
async fn ip_address_is_v4_or_v6_in_canonical_form() {
    let app = spawn().await;
    let none = json!({});
    for (input, want) in [
        (json!("203.0.113.9"), Stored(json!("203.0.113.9"))),
        (json!(" 203.0.113.9 "), Stored(json!("203.0.113.9"))),
        (json!("2001:DB8:0:0:0:0:0:1"), Stored(json!("2001:db8::1"))),
        (json!("::1"), Stored(json!("::1"))),
        (json!("999.1.1.1"), Rejected),
        (json!("203.0.113"), Rejected),
        (json!("not-an-ip"), Rejected),
        (json!("2001:db8::1::2"), Rejected),
        (json!("203.0.113.9/24"), Rejected),
    ] {
        // Not editable by hand: the patch refuses the field (see below).
        check_field(&app, "ip_address", input, none.clone(), want, false).await;
    }
}

#[actix_web::test]
async fn avatar_url_is_an_absolute_http_or_https_url_of_at_most_2048_characters() {
    let app = spawn().await;
    let none = json!({});
    let prefix = "https://cdn.example.com/";
    let longest = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    for (input, want) in [
        (
            json!("https://cdn.example.com/a.png"),
            Stored(json!("https://cdn.example.com/a.png")),
        ),
        (
            json!("http://example.com/a.png?size=64"),
            Stored(json!("http://example.com/a.png?size=64")),
        ),
        (json!(longest.clone()), Stored(json!(longest.clone()))),
        (json!(format!("{longest}a")), Rejected),
        (json!("ftp://example.com/a.png"), Rejected),
        (json!("javascript:alert(1)"), Rejected),
        (json!("data:image/png;base64,AAAA"), Rejected),
        (json!("/a.png"), Rejected),
        (json!("cdn.example.com/a.png"), Rejected),
        (json!("https://"), Rejected),
    ] {
        check_field(&app, "avatar_url", input, none.clone(), want, true).await;
    }
}

#[actix_web::test]
async fn channel_is_a_lower_case_slug() {
    let app = spawn().await;
    let none = json!({});
    for (input, want) in [
        (json!("whatsapp"), Stored(json!("whatsapp"))),
        (json!("WhatsApp"), Stored(json!("whatsapp"))),
        (json!("web_chat-2"), Stored(json!("web_chat-2"))),
        (json!("a".repeat(32)), Stored(json!("a".repeat(32)))),
        (json!("a".repeat(33)), Rejected),
        (json!("web site"), Rejected),
        (json!(""), Rejected),
        (json!("wa!"), Rejected),
        (json!("wéb"), Rejected),
    ] {
        // Not editable by hand: the patch refuses the field.
        check_field(&app, "channel", input, none.clone(), want, false).await;
    }
}

#[actix_web::test]
async fn channel_and_chatbot_id_are_required_on_create() {
    let app = spawn().await;
    let t = token(1, WRITE);
    for (body, field) in [
        (json!({"chatbot_id": "bot"}), "channel"),
        (json!({"channel": "api"}), "chatbot_id"),
        (json!({"chatbot_id": "bot", "channel": null}), "channel"),
        (json!({"chatbot_id": null, "channel": "api"}), "chatbot_id"),
    ] {
        let r = app.call(Method::POST, CONTACTS, &t, Some(body)).await;
        let p = r.problem(422, "invalid_body");
        assert_eq!(fields(&p), [field], "{p}");
    }
    // The upsert requires the channel too.
    for body in [json!({"name": "Ada"}), json!({"channel": null})] {
        let r = app.upsert(&token(1, UPSERT), "bot", "s", body).await;
        let p = r.problem(422, "invalid_body");
        assert_eq!(fields(&p), ["channel"], "{p}");
    }
    assert_eq!((rows(&app), session_rows(&app)), (0, 0));
}

#[actix_web::test]
async fn chatbot_id_and_session_id_in_the_path_are_1_to_128_characters_without_control_characters()
{
    let app = spawn().await;
    let t = token(1, UPSERT);
    let body = json!({"channel": "api"});
    let max = "b".repeat(128);
    let c = app.upsert_ok(&t, &max, &max, body.clone()).await;
    assert_eq!(
        (c["chatbot_id"].as_str(), c["session_id"].as_str()),
        (Some(&*max), Some(&*max))
    );
    // Percent-encoded characters are decoded before the check.
    let c = app
        .upsert_ok(&t, "support%20bot", "s%C3%A9", body.clone())
        .await;
    assert_eq!(
        (&c["chatbot_id"], &c["session_id"]),
        (&json!("support bot"), &json!("sé"))
    );
    let stored = rows(&app);

    let long = "b".repeat(129);
    for (chatbot, session, bad) in [
        (long.as_str(), "s", vec!["chatbot_id"]),
        ("bot", long.as_str(), vec!["session_id"]),
        (
            long.as_str(),
            long.as_str(),
            vec!["chatbot_id", "session_id"],
        ),
        ("bot", "line%0Abreak", vec!["session_id"]),
        ("bot%09tab", "s", vec!["chatbot_id"]),
        ("bot", "nul%00", vec!["session_id"]),
        ("bot%00", "nul%00", vec!["chatbot_id", "session_id"]),
        ("bot", "del%7F", vec!["session_id"]),
    ] {
        let r = app.upsert(&t, chatbot, session, body.clone()).await;
        rejected(&r, &bad);
    }
    // The path is checked before the body, so a bad body does not hide it.
    let r = app
        .upsert(&t, &long, "s", json!({"channel": "bad channel"}))
        .await;
    rejected(&r, &["chatbot_id"]);
    assert_eq!(rows(&app), stored, "a rejected upsert wrote nothing");
}

#[actix_web::test]
async fn chatbot_id_and_session_id_in_a_create_body_follow_the_same_rules() {
    let app = spawn().await;
    let t = token(1, WRITE);
    let ok = app
        .call(
            Method::POST,
            CONTACTS,
            &t,
            Some(json!({"chatbot_id": "b".repeat(128), "session_id": "s".repeat(128), "channel": "api"})),
        )
        .await
        .ok(201);
    assert_eq!(ok["sessions_count"], 1);
    for (body, bad) in [
        (
            json!({"chatbot_id": "b".repeat(129), "channel": "api"}),
            vec!["chatbot_id"],
        ),
        (
            json!({"chatbot_id": "", "channel": "api"}),
            vec!["chatbot_id"],
        ),
        (
            json!({"chatbot_id": "a/b", "channel": "api"}),
            vec!["chatbot_id"],
        ),
        (
            json!({"chatbot_id": "a\nb", "channel": "api"}),
            vec!["chatbot_id"],
        ),
        (
            json!({"chatbot_id": "bot", "session_id": "s".repeat(129), "channel": "api"}),
            vec!["session_id"],
        ),
        (
            json!({"chatbot_id": "bot", "session_id": "a/b", "channel": "api"}),
            vec!["session_id"],
        ),
        (
            json!({"chatbot_id": "bot", "session_id": "", "channel": "api"}),
            vec!["session_id"],
        ),
        (
            json!({"chatbot_id": "", "session_id": "\u{1b}", "channel": "Not A Slug"}),
            vec!["chatbot_id", "session_id", "channel"],
        ),
    ] {
        rejected(
            &app.call(Method::POST, CONTACTS, &t, Some(body)).await,
            &bad,
        );
    }
    assert_eq!((rows(&app), session_rows(&app)), (1, 1));
}

#[actix_web::test]
async fn payload_is_an_object_of_at_most_16_kib() {
    let app = spawn().await;
    let none = json!({});
    // `{"k":"…"}` is 8 bytes plus the value.
    let at_limit = json!({"k": "x".repeat(16 * 1024 - 8)});
    assert_eq!(serde_json::to_vec(&at_limit).unwrap().len(), 16 * 1024);
    let over = json!({"k": "x".repeat(16 * 1024 - 7)});
    for (input, want) in [
        (
            json!({"plan": "pro", "n": [1, {"a": true}]}),
            Stored(json!({"plan": "pro", "n": [1, {"a": true}]})),
        ),
        (json!({}), Stored(json!({}))),
        (at_limit.clone(), Stored(at_limit)),
        (over, Rejected),
        (json!([1, 2]), Rejected),
        (json!("plan=pro"), Rejected),
        (json!(42), Rejected),
        (json!(true), Rejected),
    ] {
        check_field(&app, "payload", input, none.clone(), want, true).await;
    }
    // Null on create and upsert means an empty payload.
    let c = app
        .upsert_ok(
            &token(1, UPSERT),
            "bot",
            "s",
            json!({"channel": "api", "payload": null}),
        )
        .await;
    assert_eq!(c["payload"], json!({}));
}

#[actix_web::test]
async fn the_upsert_merges_the_payload_key_by_key() {
    let app = spawn().await;
    let t = token(1, UPSERT);
    let body = |p: Value| json!({"channel": "api", "payload": p});
    app.upsert_ok(
        &t,
        "bot",
        "s",
        body(json!({"plan": "pro", "prefs": {"lang": "en", "tz": "UTC"}})),
    )
    .await;
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s",
            body(json!({"seats": 3, "prefs": {"lang": "fr"}})),
        )
        .await;
    assert_eq!(
        c["payload"],
        json!({"plan": "pro", "seats": 3, "prefs": {"lang": "fr"}}),
        "top-level keys are merged, each value replaced whole"
    );
    let c = app.upsert_ok(&t, "bot", "s", body(json!({}))).await;
    assert_eq!(c["payload"]["plan"], "pro");
}

#[actix_web::test]
async fn a_payload_grown_past_the_limit_by_merging_is_a_422_and_the_contact_stays_editable() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:write");
    let chunk = "x".repeat(16_000);
    let c = app
        .upsert_ok(
            &t,
            "bot",
            "s",
            json!({"channel": "api", "payload": {"a": chunk}}),
        )
        .await;
    // Issue #14: the second 16,000-byte payload merged into 32 KB, after which the contact
    // could no longer be edited. The limit is the stored contact's.
    let r = app
        .upsert(
            &t,
            "bot",
            "s",
            json!({"channel": "api", "payload": {"b": chunk}}),
        )
        .await;
    let p = rejected(&r, &["payload"]);
    assert!(!p.to_string().contains("constraint"), "{p}");
    assert!(p.to_string().contains("16384"), "{p}");
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts, jsonb_object_keys(payload)"),
        1,
        "the rejected merge was not stored"
    );
    assert_eq!(app.db.count("SELECT max(version) AS n FROM contacts"), 1);
    // A one-key PATCH still works, and so does an upsert that fits.
    let path = format!("/api/v1/contacts/{}", c["id"]);
    let r = app
        .call(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"payload": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(r.ok(200)["payload"]["plan"], "pro");
    app.upsert_ok(
        &t,
        "bot",
        "s",
        json!({"channel": "api", "payload": {"n": 1}}),
    )
    .await;
    // Exactly at the limit is fine; one byte more is not (compact JSON, as stored).
    let room = 16_384 - "{\"a\":\"\"}".len();
    let at = json!({"channel": "api", "payload": {"a": "y".repeat(room)}});
    let fresh = app.upsert_ok(&t, "bot", "edge", at).await;
    let over = json!({"channel": "api", "payload": {"b": 1}});
    rejected(&app.upsert(&t, "bot", "edge", over).await, &["payload"]);
    assert_eq!(fresh["version"], 1);
    assert_eq!(
        app.db
            .count("SELECT max(contacts_payload_bytes(payload))::bigint AS n FROM contacts"),
        16_384
    );
}

#[actix_web::test]
async fn nul_characters_are_a_422_in_every_string_field_never_a_500() {
    let app = spawn().await;
    let nul = "a\u{0}b";
    for field in [
        "name",
        "email",
        "phone",
        "avatar_url",
        "country_code",
        "ip_address",
        "channel",
    ] {
        let patchable = !matches!(field, "ip_address" | "channel");
        check_field(&app, field, json!(nul), json!({}), Rejected, patchable).await;
        check_field(&app, field, json!("\u{0}"), json!({}), Rejected, patchable).await;
    }
    for payload in [
        json!({"k": nul}),
        json!({nul: "v"}),
        json!({"deep": {"list": [1, {"x": nul}]}}),
        json!({"deep": {nul: null}}),
    ] {
        check_field(&app, "payload", payload, json!({}), Rejected, true).await;
    }
    let t = token(1, WRITE);
    for (body, field) in [
        (json!({"chatbot_id": nul, "channel": "api"}), "chatbot_id"),
        (
            json!({"chatbot_id": "bot", "session_id": nul, "channel": "api"}),
            "session_id",
        ),
    ] {
        rejected(
            &app.call(Method::POST, CONTACTS, &t, Some(body)).await,
            &[field],
        );
    }
    // A phone hint holding a NUL is itself the error.
    let r = app
        .upsert(
            &token(1, UPSERT),
            "bot",
            "s",
            json!({"channel": "api", "country_code": "G\u{0}B", "phone": "+447700900123"}),
        )
        .await;
    rejected(&r, &["country_code"]);
    assert_eq!(
        rows(&app),
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE name = 'Before'"),
        "the only rows are the contacts made to be patched"
    );
    assert_eq!(session_rows(&app), 0);
}

#[actix_web::test]
async fn every_invalid_field_is_reported_at_once_and_nothing_is_written() {
    let app = spawn().await;
    let bad = json!({
        "channel": "Web Site",
        "name": "x".repeat(201),
        "email": "not-an-email",
        "phone": "not a phone",
        "avatar_url": "javascript:alert(1)",
        "country_code": "XX",
        "ip_address": "999.1.1.1",
        "payload": [1],
    });
    let all = [
        "channel",
        "name",
        "email",
        "phone",
        "avatar_url",
        "country_code",
        "ip_address",
        "payload",
    ];
    let r = app.upsert(&token(1, UPSERT), "bot", "s", bad.clone()).await;
    rejected(&r, &all);
    let body = with(bad.clone(), &json!({"chatbot_id": "", "session_id": "a/b"}));
    let r = app
        .call(Method::POST, CONTACTS, &token(1, WRITE), Some(body))
        .await;
    let mut with_ids = all.to_vec();
    with_ids.extend(["chatbot_id", "session_id"]);
    rejected(&r, &with_ids);
    assert_eq!((rows(&app), session_rows(&app)), (0, 0));

    let c = create(&app, json!({"name": "Ada", "country_code": "GB"})).await;
    let mut patch_body = bad;
    let m = patch_body.as_object_mut().unwrap();
    m.remove("channel");
    m.remove("ip_address");
    let r = patch(&app, &c["id"], patch_body).await;
    rejected(
        &r,
        &[
            "name",
            "email",
            "phone",
            "avatar_url",
            "country_code",
            "payload",
        ],
    );
    assert_eq!(get(&app, &c["id"]).await, c);
}

#[actix_web::test]
async fn null_in_a_patch_clears_the_field() {
    let app = spawn().await;
    let c = create(
        &app,
        json!({"name": "Ada", "email": "ada@example.com", "phone": "+447700900123",
               "avatar_url": "https://cdn.example.com/a.png", "country_code": "GB",
               "ip_address": "203.0.113.9", "payload": {"plan": "pro"}}),
    )
    .await;
    let p = patch(
        &app,
        &c["id"],
        json!({"name": null, "email": null, "phone": null, "avatar_url": null,
               "country_code": null, "payload": null}),
    )
    .await
    .ok(200);
    for f in ["name", "email", "phone", "avatar_url", "country_code"] {
        assert_eq!(p[f], Value::Null, "{f}");
    }
    assert_eq!(p["payload"], json!({}), "a null payload clears it to {{}}");
    assert_eq!(p["ip_address"], "203.0.113.9", "absent fields are kept");
    assert_eq!(p["channel"], "api");
    assert_eq!(p["version"], c["version"].as_i64().unwrap() + 1);
    // Absent fields stay as they are.
    let p2 = patch(&app, &c["id"], json!({"name": "Ada King"}))
        .await
        .ok(200);
    assert_eq!(
        (&p2["name"], &p2["email"]),
        (&json!("Ada King"), &Value::Null)
    );
}

#[actix_web::test]
async fn a_patch_merges_the_payload_with_merge_patch_semantics() {
    let app = spawn().await;
    let c = create(
        &app,
        json!({"payload": {"plan": "pro", "trial": true,
                           "prefs": {"lang": "en", "tz": "UTC", "ui": {"theme": "light"}}}}),
    )
    .await;
    let p = patch(
        &app,
        &c["id"],
        json!({"payload": {"trial": null, "seats": 3,
                           "prefs": {"tz": null, "ui": {"theme": "dark", "dense": true}}}}),
    )
    .await
    .ok(200);
    assert_eq!(
        p["payload"],
        json!({"plan": "pro", "seats": 3,
               "prefs": {"lang": "en", "ui": {"theme": "dark", "dense": true}}})
    );
    // A non-object value replaces; `{}` changes nothing.
    let p = patch(&app, &c["id"], json!({"payload": {"prefs": "none"}}))
        .await
        .ok(200);
    assert_eq!(
        p["payload"],
        json!({"plan": "pro", "seats": 3, "prefs": "none"})
    );
    let same = patch(&app, &c["id"], json!({"payload": {}})).await.ok(200);
    assert_eq!(
        same["version"], p["version"],
        "an empty patch changes nothing"
    );
    // The payload itself must be an object or null.
    for bad in [json!([1]), json!("x"), json!(1)] {
        rejected(
            &patch(&app, &c["id"], json!({ "payload": bad })).await,
            &["payload"],
        );
    }
    // The merged payload must stay within 16 KiB.
    let r = patch(
        &app,
        &c["id"],
        json!({"payload": {"big": "x".repeat(16 * 1024 - 20)}}),
    )
    .await;
    rejected(&r, &["payload"]);
    assert_eq!(get(&app, &c["id"]).await, p);
}

#[actix_web::test]
async fn a_patch_accepts_application_merge_patch_json() {
    let app = spawn().await;
    let c = create(&app, json!({"name": "Ada"})).await;
    let req = TestRequest::default()
        .method(Method::PATCH)
        .uri(&contact_path(&c["id"]))
        .insert_header(("authorization", format!("Bearer {}", token(1, WRITE))))
        .insert_header(("content-type", "application/merge-patch+json"))
        .set_payload(r#"{"name": "Ada King"}"#);
    let p = app.send(req).await.ok(200);
    assert_eq!(p["name"], "Ada King");
}

#[actix_web::test]
async fn a_patch_of_fields_that_are_not_editable_is_a_422_and_changes_nothing() {
    let app = spawn().await;
    let c = create(&app, json!({"name": "Ada", "session_id": "s1"})).await;
    for (field, value) in [
        ("id", json!(999)),
        ("account_id", json!(2)),
        ("created_at", json!("2020-01-01T00:00:00Z")),
        ("updated_at", json!("2020-01-01T00:00:00Z")),
        ("last_seen_at", json!("2020-01-01T00:00:00Z")),
        ("version", json!(100)),
        ("sessions_count", json!(42)),
        ("channel", json!("whatsapp")),
        ("chatbot_id", json!("other-bot")),
        ("session_id", json!("s2")),
        ("ip_address", json!("203.0.113.9")),
        ("consent", json!({"status": "granted"})),
    ] {
        // Alone, and next to an editable field that must not be applied either.
        for body in [
            json!({ field: value.clone() }),
            json!({"name": "Eve", field: value}),
        ] {
            let r = patch(&app, &c["id"], body).await;
            let p = r.problem(422, "unknown_field");
            assert_eq!(p["errors"][0]["field"], field, "{p}");
            assert_eq!(get(&app, &c["id"]).await, c, "{field}: the contact changed");
        }
    }
    assert_eq!(rows(&app), 1);
}

#[actix_web::test]
async fn a_payload_stored_over_the_limit_by_a_former_version_can_shrink_but_not_grow() {
    use diesel::connection::SimpleConnection;
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:write");
    let c = app
        .upsert_ok(&t, "bot", "old", json!({"channel": "api"}))
        .await;
    // What a version with the 32 KB bound could store; replica mode skips the trigger.
    app.db
        .conn()
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE contacts SET payload = jsonb_build_object('a', repeat('x', 20000)); \
             SET session_replication_role = origin",
        )
        .unwrap();
    // An interaction without payload, and one that rewrites a value, keep working.
    app.upsert_ok(&t, "bot", "old", json!({"channel": "web", "name": "Ada"}))
        .await;
    let grow = json!({"channel": "web", "payload": {"b": 1}});
    rejected(&app.upsert(&t, "bot", "old", grow).await, &["payload"]);
    let path = format!("/api/v1/contacts/{}", c["id"]);
    let r = app
        .call(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"payload": {"a": "short"}})),
        )
        .await;
    assert_eq!(r.ok(200)["payload"], json!({"a": "short"}));
}

#[actix_web::test]
async fn a_payload_small_as_sent_but_large_as_stored_is_refused_alone() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:write");
    // 1e300 is 5 bytes as sent and 301 digits as PostgreSQL stores it: 60 of them are ~18 KB.
    let big: Vec<f64> = vec![1e300; 60];
    let r = app
        .call(
            Method::POST,
            "/api/v1/contacts/batch-upsert",
            &t,
            Some(json!({"items": [
                {"chatbot_id": "bot", "session_id": "a", "channel": "web"},
                {"chatbot_id": "bot", "session_id": "b", "channel": "web", "payload": {"n": big}},
                {"chatbot_id": "bot", "session_id": "c", "channel": "web", "payload": {"n": [1e300]}}
            ]})),
        )
        .await;
    let body = r.ok(207);
    let statuses: Vec<_> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 422, 201], "{body}");
    assert_eq!(body["results"][1]["error"]["errors"][0]["field"], "payload");
    let r = app
        .upsert(
            &t,
            "bot",
            "d",
            json!({"channel": "web", "payload": {"n": big}}),
        )
        .await;
    rejected(&r, &["payload"]);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 2);
}
