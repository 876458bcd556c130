//! The schemas of `fields` against the validators: for strings built to sit on every edge
//! (whitespace that is or is not trimmed, controls at the ends, lengths at the limits), the
//! document accepts a value exactly when the service does. The contract fuzzer found one such
//! gap by chance (a name starting with U+0085, trimmed by `str::trim`, refused by the pattern);
//! this enumerates the class.

use regex_lite::Regex;
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};

use super::fields;
use crate::validate;

fn doc(s: RefOr<Schema>) -> Value {
    serde_json::to_value(s).expect("serialisable")
}

/// The subset of JSON Schema these fields use: anyOf, type string/null, pattern, min/maxLength
/// (in characters).
fn accepts(schema: &Value, v: &str) -> bool {
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        return alts.iter().any(|a| accepts(a, v));
    }
    if schema.get("type") == Some(&json!("null")) {
        return false;
    }
    let n = v.chars().count() as u64;
    let len_ok = schema["maxLength"].as_u64().is_none_or(|m| n <= m)
        && schema["minLength"].as_u64().is_none_or(|m| n >= m);
    let pattern = schema["pattern"].as_str().expect("a pattern");
    len_ok && Regex::new(pattern).expect("a valid pattern").is_match(v)
}

const EDGES: &[&str] = &[
    "", " ", "  ", "\t", "\n", "\r\n", "\u{b}", "\u{c}", "\u{85}", "\u{a0}", "\u{3000}", "\u{1}",
];

fn cores(long: usize) -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "Bob",
        "a b",
        "web",
        "WEB_1",
        "bo/t",
        "a,b",
        ",",
        "\u{2003}x",
        "caf\u{e9}",
        "x\u{85}y",
        "\u{fdd0}",
        "https://a.example/x",
        "http://a.example:80/p?q=1#f",
        "https://1.2.3.4/",
        "ftp://a.b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [long - 1, long, long + 1] {
        v.push("x".repeat(n));
        v.push(format!(
            "https://a.example/{}",
            "y".repeat(n.saturating_sub(18))
        ));
    }
    v
}

fn check(what: &str, schema: RefOr<Schema>, long: usize, service: impl Fn(&str) -> bool) {
    let schema = doc(schema);
    let mut gaps = Vec::new();
    for core in cores(long) {
        for pre in EDGES {
            for post in EDGES {
                let v = format!("{pre}{core}{post}");
                if accepts(&schema, &v) != service(&v) {
                    gaps.push(format!("{v:?}: schema {}", accepts(&schema, &v)));
                }
            }
        }
    }
    assert!(
        gaps.is_empty(),
        "{what}: schema and service disagree on {gaps:#?}"
    );
}

#[test]
fn name_short_text_channel_and_avatar_url_schemas_match_the_validators() {
    check("name", fields::name(), 200, |v| validate::name(v).is_ok());
    check("short_text", fields::short_text(), 200, |v| {
        validate::short_text(v).is_ok()
    });
    check("channel", fields::channel(), 32, |v| {
        validate::channel(v).is_ok()
    });
    check("avatar_url", fields::avatar_url(), 2048, |v| {
        validate::avatar_url(v).is_ok()
    });
    check("chatbot_id", fields::chatbot_id(), 128, |v| {
        validate::chatbot_id(v).is_ok()
    });
}

/// The upsert's path parameter states the same `chatbot_id` rule as the bodies.
#[test]
fn the_upsert_path_states_the_chatbot_id_rule() {
    let doc = serde_json::to_value(crate::openapi::document()).expect("serialisable");
    let params = &doc["paths"]["/api/v1/chatbots/{chatbot_id}/sessions/{session_id}/contact"]
        ["put"]["parameters"];
    let chatbot = params
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "chatbot_id")
        .expect("chatbot_id parameter");
    assert_eq!(
        chatbot["schema"]["pattern"],
        doc_pattern(fields::chatbot_id())
    );
}

fn doc_pattern(s: RefOr<Schema>) -> Value {
    doc(s)["pattern"].clone()
}

#[test]
fn query_schemas_match_the_filters() {
    let item = |s: RefOr<Schema>| doc(s)["items"].clone();
    let as_schema = |v: Value| serde_json::from_value::<RefOr<Schema>>(v).expect("schema");
    check(
        "channel item",
        as_schema(item(fields::channel_list())),
        32,
        |v| validate::channel(validate::trim_blank(v)).is_ok(),
    );
    check(
        "chatbot item",
        as_schema(item(fields::chatbot_list())),
        128,
        |v| {
            // A comma separates items: no item can hold one; items are never trimmed.
            validate::chatbot_id(v).is_ok()
        },
    );
    let q = |v: &str| {
        let f = crate::routes::filters::FilterParams {
            q: Some(v.to_string()),
            ..Default::default()
        };
        f.to_filter().is_ok()
    };
    check("q", fields::search(), 200, q);
}
