//! Framework-level failures: every one is `application/problem+json` with a stable `code` (never
//! `text/plain`), carries `X-Request-Id`, and `/api/v1` answers carry `Cache-Control: no-store`.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::test::TestRequest;
use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

use crate::helpers::*;

const CONTACTS: &str = "/api/v1/contacts";
const UPSERT_PATH: &str = "/api/v1/chatbots/bot/sessions/s/contact";
const LIMIT: usize = 64 * 1024;
/// Every scope an operation here needs.
const ALL_SCOPES: &str = "contacts:read contacts:write contacts:delete contacts:upsert";

fn rows<S>(app: &TestApp<S>) -> i64 {
    app.db.count("SELECT count(*) AS n FROM contacts")
}

/// A request with a bearer token for every scope.
fn authed(method: Method, path: &str) -> TestRequest {
    TestRequest::default()
        .method(method)
        .uri(path)
        .insert_header(("authorization", format!("Bearer {}", token(1, ALL_SCOPES))))
}

/// A request with a raw body and content type.
fn raw(method: Method, path: &str, content_type: Option<&str>, body: &[u8]) -> TestRequest {
    let mut req = authed(method, path).set_payload(body.to_vec());
    if let Some(ct) = content_type {
        req = req.insert_header(("content-type", ct));
    }
    req
}

/// The three operations with a JSON body (upsert, create, patch of contact `id`), each with a
/// valid body.
fn bodied(id: i64) -> [(Method, String, &'static str); 3] {
    [
        (
            Method::PUT,
            UPSERT_PATH.to_string(),
            r#"{"channel": "api"}"#,
        ),
        (
            Method::POST,
            CONTACTS.to_string(),
            r#"{"channel": "api", "chatbot_id": "bot"}"#,
        ),
        (
            Method::PATCH,
            format!("{CONTACTS}/{id}"),
            r#"{"name": "Ada"}"#,
        ),
    ]
}

/// A contact to patch.
async fn seed<S, B>(app: &TestApp<S>) -> i64
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    app.upsert_ok(
        &token(1, ALL_SCOPES),
        "seed",
        "seed",
        json!({"channel": "api"}),
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

/// Asserts a problem naming `field` in `errors[0]`.
#[track_caller]
fn problem_on(r: &Resp, status: u16, code: &str, field: &str) -> Value {
    let p = r.problem(status, code);
    assert_eq!(p["errors"][0]["field"], field, "{p}");
    assert!(p["errors"][0]["message"].is_string(), "{p}");
    p
}

#[actix_web::test]
async fn malformed_json_is_a_400() {
    let app = spawn().await;
    let id = seed(&app).await;
    for (method, path, _) in bodied(id) {
        for body in [
            &br#"{"channel": "api","#[..],
            br#"{channel: api}"#,
            br#"{"channel": "api"} trailing"#,
            br#"{"channel": 'api'}"#,
            b"{\"channel\": \"\xff\xfe\"}",
            b"\xef\xbb\xbf{}",
            b"nope",
            b"[",
        ] {
            let r = app
                .send(raw(method.clone(), &path, Some("application/json"), body))
                .await;
            let p = r.problem(400, "malformed_json");
            assert!(!p["detail"].as_str().unwrap().contains("line "), "{p}");
        }
    }
    assert_eq!(rows(&app), 1);
}

#[actix_web::test]
async fn an_empty_body_is_a_400() {
    let app = spawn().await;
    let id = seed(&app).await;
    for (method, path, _) in bodied(id) {
        for body in [&b""[..], b"  \n"] {
            app.send(raw(method.clone(), &path, Some("application/json"), body))
                .await
                .problem(400, "malformed_json");
        }
    }
    assert_eq!(rows(&app), 1);
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn().await;
    let id = seed(&app).await;
    for (method, path, valid) in bodied(id) {
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some("json"),
            None,
        ] {
            app.send(raw(method.clone(), &path, ct, valid.as_bytes()))
                .await
                .problem(415, "unsupported_media_type");
        }
        // Parameters and case do not matter.
        let r = app
            .send(raw(
                method.clone(),
                &path,
                Some("Application/JSON; charset=utf-8"),
                valid.as_bytes(),
            ))
            .await;
        assert!(r.status.is_success(), "{method} {path}: {}", r.status);
    }
}

#[actix_web::test]
async fn a_body_over_64_kib_is_a_413() {
    let app = spawn().await;
    let id = seed(&app).await;
    // Valid JSON padded with spaces: exactly at the limit passes, one byte more does not.
    for (method, path, valid) in bodied(id) {
        let padded = |len: usize| {
            let mut b = valid.as_bytes().to_vec();
            b.resize(len, b' ');
            b
        };
        let r = app
            .send(raw(
                method.clone(),
                &path,
                Some("application/json"),
                &padded(LIMIT),
            ))
            .await;
        assert!(r.status.is_success(), "{method} {path}: {}", r.status);
        let big = padded(LIMIT + 1);
        // Declared by Content-Length.
        app.send(raw(method.clone(), &path, Some("application/json"), &big))
            .await
            .problem(413, "payload_too_large");
        // Declared as small, or not parseable: the limit holds while reading.
        for declared in ["10", "chunked"] {
            let r = app
                .send(
                    raw(method.clone(), &path, Some("application/json"), &big)
                        .insert_header(("content-length", declared)),
                )
                .await;
            r.problem(413, "payload_too_large");
        }
        // Much larger bodies and a Content-Length alone.
        app.send(raw(
            method.clone(),
            &path,
            Some("application/json"),
            &padded(4 * 1024 * 1024),
        ))
        .await
        .problem(413, "payload_too_large");
        app.send(
            raw(method.clone(), &path, Some("application/json"), b"{}")
                .insert_header(("content-length", "1000000000")),
        )
        .await
        .problem(413, "payload_too_large");
    }
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE chatbot_id = 'bot'"),
        2,
        "only the bodies at the limit (one upsert, one create) were stored"
    );
}

#[actix_web::test]
async fn a_value_of_the_wrong_type_is_a_422_naming_the_field() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    let id = seed(&app).await;
    let patch_path = format!("{CONTACTS}/{id}");
    for (field, value) in [
        ("name", json!(5)),
        ("email", json!(["a@b.co"])),
        ("phone", json!(447700900123_i64)),
        ("country_code", json!({"code": "GB"})),
        ("avatar_url", json!(true)),
    ] {
        let r = app
            .upsert(
                &t,
                "bot",
                "s",
                json!({"channel": "api", field: value.clone()}),
            )
            .await;
        problem_on(&r, 422, "invalid_body", field);
        let body = json!({"chatbot_id": "bot", "channel": "api", field: value.clone()});
        let r = app.call(Method::POST, CONTACTS, &t, Some(body)).await;
        problem_on(&r, 422, "invalid_body", field);
        let r = app
            .call(
                Method::PATCH,
                &patch_path,
                &t,
                Some(json!({ field: value })),
            )
            .await;
        problem_on(&r, 422, "invalid_body", field);
    }
    for body in [json!({"channel": 5}), json!({"channel": null})] {
        let r = app.upsert(&t, "bot", "s", body).await;
        problem_on(&r, 422, "invalid_body", "channel");
    }
    let r = app
        .call(
            Method::POST,
            CONTACTS,
            &t,
            Some(json!({"chatbot_id": 42, "channel": "api"})),
        )
        .await;
    problem_on(&r, 422, "invalid_body", "chatbot_id");
    assert_eq!(rows(&app), 1);
}

#[actix_web::test]
async fn a_missing_required_field_is_a_422_naming_it() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    let r = app.upsert(&t, "bot", "s", json!({"name": "Ada"})).await;
    problem_on(&r, 422, "invalid_body", "channel");
    for (body, field) in [
        (json!({"chatbot_id": "bot"}), "channel"),
        (json!({"channel": "api"}), "chatbot_id"),
    ] {
        let r = app.call(Method::POST, CONTACTS, &t, Some(body)).await;
        problem_on(&r, 422, "invalid_body", field);
    }
    assert_eq!(rows(&app), 0);
}

#[actix_web::test]
async fn a_body_that_is_not_an_object_is_a_422() {
    let app = spawn().await;
    let id = seed(&app).await;
    // Serde would fill a struct from an array by position; the contract takes objects only.
    let positional_upsert = json!(["api", "Ada", null, null, null, null, null, null]);
    let positional_create = json!(["bot", "api", null, "Ada", null, null, null, null, null, null]);
    for (method, path, _) in bodied(id) {
        for body in [
            json!([]),
            json!([{"channel": "api", "chatbot_id": "bot"}]),
            positional_upsert.clone(),
            positional_create.clone(),
            json!("channel=api"),
            json!(5),
            json!(true),
            Value::Null,
        ] {
            let r = app
                .send(authed(method.clone(), &path).set_json(&body))
                .await;
            r.problem(422, "invalid_body");
        }
    }
    assert_eq!(rows(&app), 1);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE name IS NOT NULL"),
        0
    );
}

#[actix_web::test]
async fn an_unknown_field_is_a_422_naming_it() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    let id = seed(&app).await;
    for field in ["nickname", "Name", "e_mail", "a\u{0}b", ""] {
        let r = app
            .upsert(&t, "bot", "s", json!({"channel": "api", field: "x"}))
            .await;
        problem_on(&r, 422, "unknown_field", field);
        let body = json!({"chatbot_id": "bot", "channel": "api", field: "x"});
        let r = app.call(Method::POST, CONTACTS, &t, Some(body)).await;
        problem_on(&r, 422, "unknown_field", field);
        let r = app
            .call(
                Method::PATCH,
                &format!("{CONTACTS}/{id}"),
                &t,
                Some(json!({"name": "Eve", field: "x"})),
            )
            .await;
        problem_on(&r, 422, "unknown_field", field);
    }
    assert_eq!(rows(&app), 1);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE name IS NOT NULL"),
        0
    );
}

#[actix_web::test]
async fn mass_assignment_of_server_fields_is_refused_and_writes_nothing() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    for (field, value) in [
        ("id", json!(1)),
        ("account_id", json!(2)),
        ("created_at", json!("2000-01-01T00:00:00Z")),
        ("updated_at", json!("2000-01-01T00:00:00Z")),
        ("last_seen_at", json!("2000-01-01T00:00:00Z")),
        ("version", json!(99)),
        ("sessions_count", json!(1000)),
    ] {
        let r = app
            .upsert(
                &t,
                "bot",
                "s",
                json!({"channel": "api", field: value.clone()}),
            )
            .await;
        problem_on(&r, 422, "unknown_field", field);
        let body = json!({"chatbot_id": "bot", "channel": "api", field: value});
        let r = app.call(Method::POST, CONTACTS, &t, Some(body)).await;
        problem_on(&r, 422, "unknown_field", field);
    }
    // The session's coordinates come from the path of the upsert, never its body.
    for field in ["chatbot_id", "session_id"] {
        let r = app
            .upsert(&t, "bot", "s", json!({"channel": "api", field: "other"}))
            .await;
        problem_on(&r, 422, "unknown_field", field);
    }
    assert_eq!(rows(&app), 0);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM contact_sessions"),
        0
    );
}

#[actix_web::test]
async fn an_unknown_route_is_a_404() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    for path in [
        "/api/v1/nope",
        "/api/v1",
        "/api/v1/",
        "/api/v2/contacts",
        "/api/v1/contacts/1/nope",
        "/api/v1/chatbots/bot/sessions/s",
        "/nope",
        "/",
    ] {
        for tok in [Some(&t), None] {
            let mut req = TestRequest::get().uri(path);
            if let Some(tok) = tok {
                req = req.insert_header(("authorization", format!("Bearer {tok}")));
            }
            let r = app.send(req).await;
            let p = r.problem(404, "not_found");
            assert!(p.get("errors").is_none(), "{p}");
        }
    }
}

#[actix_web::test]
async fn a_wrong_method_is_a_405_with_allow() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    for (method, path, allowed) in [
        (
            Method::POST,
            "/api/v1/contacts/1",
            &["GET", "PATCH", "DELETE"][..],
        ),
        (
            Method::PUT,
            "/api/v1/contacts/1",
            &["GET", "PATCH", "DELETE"],
        ),
        (Method::PUT, "/api/v1/contacts", &["GET", "POST"]),
        (Method::DELETE, "/api/v1/contacts", &["GET", "POST"]),
        (Method::PATCH, "/api/v1/contacts", &["GET", "POST"]),
        (Method::GET, UPSERT_PATH, &["PUT"]),
        (Method::POST, UPSERT_PATH, &["PUT"]),
        (Method::DELETE, "/api/v1/contacts/1/sessions", &["GET"]),
    ] {
        for tok in [Some(&t), None] {
            let mut req = TestRequest::default().method(method.clone()).uri(path);
            if let Some(tok) = tok {
                req = req.insert_header(("authorization", format!("Bearer {tok}")));
            }
            let r = app.send(req).await;
            r.problem(405, "method_not_allowed");
            let allow = r.header("allow").expect("Allow header");
            let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
            got.sort();
            let mut want = allowed.to_vec();
            want.sort();
            assert_eq!(got, want, "{method} {path}");
        }
    }
}

#[actix_web::test]
async fn a_bad_path_parameter_is_a_400_naming_it() {
    let app = spawn().await;
    for (method, path) in [
        (Method::GET, "/api/v1/contacts/abc"),
        (Method::GET, "/api/v1/contacts/1.5"),
        (Method::GET, "/api/v1/contacts/99999999999999999999"),
        (Method::GET, "/api/v1/contacts/%00"),
        (Method::DELETE, "/api/v1/contacts/abc"),
        (Method::GET, "/api/v1/contacts/abc/sessions"),
    ] {
        let r = app.send(authed(method, path)).await;
        problem_on(&r, 400, "invalid_parameter", "id");
    }
    let r = app
        .send(authed(Method::PATCH, "/api/v1/contacts/abc").set_json(json!({"name": "x"})))
        .await;
    problem_on(&r, 400, "invalid_parameter", "id");
}

#[actix_web::test]
async fn a_bad_query_parameter_is_a_400_naming_it() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    let mut ids = Vec::new();
    for s in ["s1", "s2"] {
        ids.push(
            app.upsert_ok(&t, "bot", s, json!({"channel": "api"})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let page = app.get("/api/v1/contacts?limit=1", &t).await.ok(200);
    let list_cursor = page["next_cursor"].as_str().unwrap().to_string();
    let sessions = format!("/api/v1/contacts/{}/sessions", ids[0]);
    for base in ["/api/v1/contacts", sessions.as_str()] {
        for (query, field) in [
            ("limit=abc", "limit"),
            ("limit=", "limit"),
            ("limit=1.5", "limit"),
            ("limit=0", "limit"),
            ("limit=-1", "limit"),
            ("limit=201", "limit"),
            ("limit=99999999999999999999", "limit"),
            ("foo=1", "foo"),
            ("account_id=2", "account_id"),
            ("cursor=garbage", "cursor"),
            ("cursor=%00", "cursor"),
            ("cursor=eyJ4IjoxfQ", "cursor"),
        ] {
            let r = app.get(&format!("{base}?{query}"), &t).await;
            problem_on(&r, 400, "invalid_parameter", field);
        }
        for ok in ["limit=1", "limit=200", ""] {
            app.get(&format!("{base}?{ok}"), &t).await.ok(200);
        }
    }
    // A cursor of one listing is refused by another.
    let r = app
        .get(&format!("{sessions}?cursor={list_cursor}"), &t)
        .await;
    problem_on(&r, 400, "invalid_parameter", "cursor");
}

#[actix_web::test]
async fn a_malformed_if_match_is_a_400() {
    let app = spawn().await;
    let id = seed(&app).await;
    let path = format!("{CONTACTS}/{id}");
    for value in ["1", "\"1", "1\"", "abc", "\"1\" \"2\"", ""] {
        let r = app
            .send(
                authed(Method::PATCH, &path)
                    .insert_header(("if-match", value))
                    .set_json(json!({"name": "Eve"})),
            )
            .await;
        r.problem(400, "invalid_header");
        let r = app
            .send(authed(Method::DELETE, &path).insert_header(("if-match", value)))
            .await;
        r.problem(400, "invalid_header");
    }
    let c = app.get(&path, &token(1, ALL_SCOPES)).await.ok(200);
    assert_eq!((&c["name"], &c["version"]), (&Value::Null, &json!(1)));
    // Well-formed values are accepted.
    let r = app
        .send(
            authed(Method::PATCH, &path)
                .insert_header(("if-match", "\"1\""))
                .set_json(json!({"name": "Eve"})),
        )
        .await;
    assert_eq!(r.ok(200)["name"], "Eve");
}

#[actix_web::test]
async fn x_request_id_is_echoed_when_sane_and_generated_otherwise() {
    let app = spawn().await;
    let with_id = |method: Method, path: &str, id: &str| {
        authed(method, path).insert_header(("x-request-id", id.to_string()))
    };
    // Echoed: on success, on errors of every kind, and in problem bodies.
    let sane = "abc-123";
    let r = app.send(with_id(Method::GET, CONTACTS, sane)).await;
    r.ok(200);
    assert_eq!(r.header("x-request-id").as_deref(), Some(sane));
    for req in [
        with_id(Method::GET, "/api/v1/nope", sane),
        with_id(Method::POST, "/api/v1/contacts/1", sane),
        with_id(Method::GET, "/api/v1/contacts/abc", sane),
        with_id(Method::GET, "/api/v1/contacts/1", sane),
        with_id(Method::POST, CONTACTS, sane).set_json(json!({"nope": 1})),
        TestRequest::get()
            .uri(CONTACTS)
            .insert_header(("x-request-id", sane)),
    ] {
        let r = app.send(req).await;
        assert_eq!(
            r.header("x-request-id").as_deref(),
            Some(sane),
            "{}",
            r.status
        );
        assert_eq!(r.json()["request_id"], sane);
    }
    let r = app
        .send(
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("x-request-id", sane)),
        )
        .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some(sane));

    // Generated when absent or not sane; a fresh one each time.
    let mut seen = std::collections::HashSet::new();
    let long = "a".repeat(129);
    for sent in [
        None,
        Some(""),
        Some("has space"),
        Some("<script>"),
        Some("line\tbreak"),
        Some(long.as_str()),
        Some("é"),
    ] {
        for path in [CONTACTS, "/api/v1/nope", "/healthz"] {
            let mut req = authed(Method::GET, path);
            if let Some(s) = sent {
                req = req.insert_header(("x-request-id", s.to_string()));
            }
            let r = app.send(req).await;
            let id = r.header("x-request-id").expect("X-Request-Id");
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{sent:?} -> {id}");
            assert!(seen.insert(id), "request ids are unique");
        }
    }
}

#[actix_web::test]
async fn api_responses_are_not_cached() {
    let app = spawn().await;
    let id = seed(&app).await;
    let requests = [
        authed(Method::GET, CONTACTS),
        authed(Method::GET, &format!("{CONTACTS}/{id}")),
        authed(Method::GET, &format!("{CONTACTS}/{id}/sessions")),
        authed(Method::PUT, UPSERT_PATH).set_json(json!({"channel": "api"})),
        authed(Method::POST, CONTACTS).set_json(json!({"chatbot_id": "b", "channel": "api"})),
        authed(Method::PATCH, &format!("{CONTACTS}/{id}")).set_json(json!({"name": "A"})),
        // Errors too.
        authed(Method::GET, &format!("{CONTACTS}/999999")),
        authed(Method::GET, "/api/v1/nope"),
        authed(Method::PUT, CONTACTS),
        authed(Method::GET, "/api/v1/contacts?limit=0"),
        authed(Method::POST, CONTACTS).set_json(json!({"id": 1})),
        raw(Method::POST, CONTACTS, Some("text/plain"), b"{}"),
        TestRequest::get().uri(CONTACTS),
        TestRequest::get().uri(CONTACTS).insert_header((
            "authorization",
            format!("Bearer {}", token(1, "audit:read")),
        )),
        authed(Method::DELETE, &format!("{CONTACTS}/{id}")),
    ];
    for req in requests {
        let r = app.send(req).await;
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if !r.status.is_success() {
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/problem+json")
            );
        }
    }
}

#[actix_web::test]
async fn a_500_is_a_problem_without_internals() {
    let app = spawn().await;
    let t = token(1, ALL_SCOPES);
    let id = seed(&app).await;
    // Break the schema under the running app.
    app.db
        .conn()
        .batch_execute("ALTER TABLE contacts RENAME COLUMN payload TO payload_gone")
        .unwrap();
    for r in [
        app.get(CONTACTS, &t).await,
        app.get(&format!("{CONTACTS}/{id}"), &t).await,
        app.upsert(&t, "bot", "s", json!({"channel": "api"})).await,
        app.call(
            Method::POST,
            CONTACTS,
            &t,
            Some(json!({"chatbot_id": "b", "channel": "api"})),
        )
        .await,
    ] {
        let p = r.problem(500, "internal_error");
        let text = String::from_utf8_lossy(&r.body).to_lowercase();
        for leak in [
            "payload",
            "column",
            "select",
            "insert",
            "contacts.",
            "database",
            "diesel",
            "error:",
            "does not exist",
        ] {
            assert!(!text.contains(leak), "{leak} in {p}");
        }
        assert!(p.get("errors").is_none());
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    }
}
