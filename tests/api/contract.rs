//! The OpenAPI contract: committed file = served document, Swagger UI renders, and every
//! operation is documented and routed.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::Value;

use crate::helpers::*;

const REGENERATE: &str = "cargo run -- openapi > openapi/openapi.json";

fn committed() -> String {
    std::fs::read_to_string(format!(
        "{}/openapi/openapi.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_default()
}

#[actix_web::test]
async fn the_committed_document_is_the_generated_one() {
    assert!(
        contacts_api::openapi::document_json() == committed(),
        "openapi/openapi.json is stale: regenerate it with `{REGENERATE}` and commit it"
    );
}

#[actix_web::test]
async fn the_served_document_equals_the_committed_one_and_docs_render() {
    let app = spawn().await;
    let r = app.send(TestRequest::get().uri("/api/openapi.json")).await;
    let served = r.ok(200);
    let file: Value = serde_json::from_str(&committed()).expect("openapi/openapi.json is JSON");
    assert_eq!(served, file, "served spec differs: run `{REGENERATE}`");
    assert_eq!(served["openapi"], "3.1.0");

    let r = app.send(TestRequest::get().uri("/docs/")).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let html = String::from_utf8_lossy(&r.body);
    assert!(html.contains("swagger-ui"), "{html}");
    let init = app
        .send(TestRequest::get().uri("/docs/swagger-initializer.js"))
        .await;
    assert_eq!(init.status.as_u16(), 200);
    assert!(String::from_utf8_lossy(&init.body).contains("/api/openapi.json"));
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

#[actix_web::test]
async fn every_operation_is_documented_with_tag_summary_scopes_errors_and_examples() {
    let doc: Value = serde_json::from_str(&contacts_api::openapi::document_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let shared = &doc["components"]["responses"];
    for (method, path, op) in operations(&doc) {
        let name = format!("{method} {path}");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{name}: tag"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: summary"
        );
        assert!(op["operationId"].is_string(), "{name}: operationId");
        for (status, response) in op["responses"].as_object().unwrap() {
            let described = match response["$ref"].as_str() {
                Some(r) => shared[r.rsplit('/').next().unwrap()]["description"].is_string(),
                None => response["description"].is_string(),
            };
            assert!(described, "{name} {status}: description");
        }
        if !path.starts_with("/api/v1") {
            continue;
        }
        let scopes = op["security"][0]["bearer"].as_array();
        assert!(
            scopes.is_some_and(|s| !s.is_empty()),
            "{name}: security scopes"
        );
        assert!(
            op["description"]
                .as_str()
                .unwrap()
                .contains("Required scope"),
            "{name}"
        );
        for status in ["401", "403", "500", "503"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{name}: {status} documented"
            );
        }
        if let Some(body) = op.get("requestBody") {
            for status in ["413", "415", "422"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{name}: {status} documented"
                );
            }
            for (_, content) in body["content"].as_object().unwrap() {
                let schema = content["schema"]["$ref"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap();
                assert!(
                    schemas[schema].get("example").is_some(),
                    "{name}: request example"
                );
            }
        }
    }
    assert!(schemas["Contact"].get("example").is_some());
    assert!(schemas["Problem"].get("example").is_some());
}

#[actix_web::test]
async fn every_documented_operation_is_routed_and_authenticated() {
    let app = spawn().await;
    let doc: Value = serde_json::from_str(&contacts_api::openapi::document_json()).unwrap();
    for (method, path, _) in operations(&doc) {
        let uri = path
            .replace("{id}", "1")
            .replace("{chatbot_id}", "bot")
            .replace("{session_id}", "s");
        let req = TestRequest::default()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri);
        let r = app.send(req).await;
        if path.starts_with("/api/v1") {
            r.problem(401, "invalid_token");
            assert!(r
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\""));
        } else {
            assert_eq!(r.status.as_u16(), 200, "{method} {path}");
        }
    }
}
