//! `GET /contacts/duplicates`: groups by case-insensitive email and E.164 phone, keyset pages,
//! filters, tenancy, and groups vanishing once merged.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const RW: &str = "contacts:read contacts:write";

/// Creates a contact by hand in `account`; returns its id.
async fn create<S, B>(app: &TestApp<S>, account: i64, fields: Value) -> i64
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut body = json!({"chatbot_id": "bot", "channel": "api"});
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.call(
        Method::POST,
        "/api/v1/contacts",
        &token(account, RW),
        Some(body),
    )
    .await
    .ok(201)["id"]
        .as_i64()
        .unwrap()
}

/// The contacts of the tests, by name.
struct Seeded {
    ada1: i64,
    ada2: i64,
    bob: i64,
    zed1: i64,
    zed2: i64,
    ada3: i64,
    fr1: i64,
    fr2: i64,
    other_only: Vec<i64>,
}

async fn seed<S, B>(app: &TestApp<S>) -> Seeded
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    // Account 2 first: its rows hold the same values, so a leak would join account 1's groups.
    let other_ada = create(
        app,
        2,
        json!({"email": "ADA@example.com", "phone": "+447700900123"}),
    )
    .await;
    let ada1 = create(
        app,
        1,
        json!({"email": "Ada@Example.com", "phone": "+44 7700 900123"}),
    )
    .await;
    let ada2 = create(
        app,
        1,
        json!({"email": "ada@example.COM", "phone": "07700 900123", "country_code": "GB"}),
    )
    .await;
    let bob = create(
        app,
        1,
        json!({"email": "bob@example.com", "phone": "00447700900123"}),
    )
    .await;
    let zed1 = create(app, 1, json!({"email": "zed@example.com"})).await;
    let zed2 = create(
        app,
        1,
        json!({"email": "ZED@EXAMPLE.COM", "phone": "+1 202 555 0100"}),
    )
    .await;
    let ada3 = create(app, 1, json!({"email": "  ada@example.com "})).await;
    let fr1 = create(app, 1, json!({"phone": "+33 6 12 34 56 78"})).await;
    let other_fr = create(app, 2, json!({"phone": "+33612345678"})).await;
    let fr2 = create(
        app,
        1,
        json!({"phone": "06 12 34 56 78", "country_code": "FR"}),
    )
    .await;
    // Singletons and an empty contact: never groups.
    create(
        app,
        1,
        json!({"email": "mia@example.com", "phone": "+4915112345678"}),
    )
    .await;
    create(app, 1, json!({"name": "Nobody"})).await;
    let o1 = create(app, 2, json!({"email": "only2@example.com"})).await;
    let o2 = create(app, 2, json!({"email": "Only2@Example.com"})).await;
    let _ = (other_ada, other_fr);
    Seeded {
        ada1,
        ada2,
        bob,
        zed1,
        zed2,
        ada3,
        fr1,
        fr2,
        other_only: vec![o1, o2],
    }
}

fn group(kind: &str, value: &str, ids: &[i64]) -> Value {
    json!({"match": kind, "value": value, "contact_ids": ids})
}

/// The groups account 1 should see.
fn expected(s: &Seeded) -> Vec<Value> {
    vec![
        group("email", "ada@example.com", &[s.ada1, s.ada2, s.ada3]),
        group("email", "zed@example.com", &[s.zed1, s.zed2]),
        group("phone", "+33612345678", &[s.fr1, s.fr2]),
        group("phone", "+447700900123", &[s.ada1, s.ada2, s.bob]),
    ]
}

/// Every group of `query` walked with `limit`, checking each page's shape.
async fn walk<S, B>(app: &TestApp<S>, tok: &str, query: &str, limit: usize) -> Vec<Value>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("/api/v1/contacts/duplicates?limit={limit}{query}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = app.get(&url, tok).await;
        let body = r.ok(200);
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        let data = body["data"].as_array().expect("data").clone();
        assert!(data.len() <= limit, "{url}: {body}");
        match &body["next_cursor"] {
            Value::Null => {
                out.extend(data);
                return out;
            }
            Value::String(c) => {
                assert_eq!(data.len(), limit, "{url}: a page with a cursor is full");
                cursor = Some(c.clone());
                out.extend(data);
            }
            other => panic!("{url}: next_cursor {other}"),
        }
    }
    panic!("{query}: paging does not end");
}

#[actix_web::test]
async fn groups_ignore_email_case_and_phone_formats_and_skip_singletons() {
    let app = spawn().await;
    let s = seed(&app).await;
    let r = app
        .get("/api/v1/contacts/duplicates", &token(1, "contacts:read"))
        .await;
    let body = r.ok(200);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(body["data"], json!(expected(&s)), "{body}");
    assert_eq!(body["next_cursor"], Value::Null);

    // Account 2 sees its own group only; account 1's rows never join it.
    let body = app
        .get("/api/v1/contacts/duplicates", &token(2, "contacts:read"))
        .await
        .ok(200);
    assert_eq!(
        body["data"],
        json!([group("email", "only2@example.com", &s.other_only)]),
        "{body}"
    );
    // An account without contacts: no groups.
    let body = app
        .get("/api/v1/contacts/duplicates", &token(3, "contacts:read"))
        .await
        .ok(200);
    assert_eq!(body, json!({"data": [], "next_cursor": null}));
}

#[actix_web::test]
async fn pages_walk_every_group_once_and_match_filters() {
    let app = spawn().await;
    let s = seed(&app).await;
    let t = token(1, "contacts:read");
    let all = expected(&s);
    for limit in [1, 2, 3, 4, 5, 200] {
        assert_eq!(walk(&app, &t, "", limit).await, all, "limit {limit}");
        assert_eq!(
            walk(&app, &t, "&match=email", limit).await,
            all[..2],
            "limit {limit}"
        );
        assert_eq!(
            walk(&app, &t, "&match=phone", limit).await,
            all[2..],
            "limit {limit}"
        );
    }
    // limit=2 ends the first page exactly on the last email group; the next page is the phones.
    let p1 = app
        .get("/api/v1/contacts/duplicates?limit=2", &t)
        .await
        .ok(200);
    assert_eq!(p1["data"], json!(all[..2]));
    let c = p1["next_cursor"].as_str().expect("a next page").to_string();
    let p2 = app
        .get(
            &format!("/api/v1/contacts/duplicates?limit=2&cursor={c}"),
            &t,
        )
        .await
        .ok(200);
    assert_eq!(p2["data"], json!(all[2..]));
    assert_eq!(p2["next_cursor"], Value::Null);
}

#[actix_web::test]
async fn bad_parameters_and_foreign_cursors_are_400() {
    let app = spawn().await;
    seed(&app).await;
    let t = token(1, "contacts:read");
    let cursor_of = |v: Value| v["next_cursor"].as_str().expect("cursor").to_string();
    let plain = cursor_of(
        app.get("/api/v1/contacts/duplicates?limit=1", &t)
            .await
            .ok(200),
    );
    let email = cursor_of(
        app.get("/api/v1/contacts/duplicates?limit=1&match=email", &t)
            .await
            .ok(200),
    );
    let phone = cursor_of(
        app.get("/api/v1/contacts/duplicates?limit=1&match=phone", &t)
            .await
            .ok(200),
    );
    // A cursor is bound to its `match`.
    for (cursor, query) in [
        (&plain, "&match=email"),
        (&plain, "&match=phone"),
        (&email, ""),
        (&email, "&match=phone"),
        (&phone, ""),
        (&phone, "&match=email"),
    ] {
        let body = app
            .get(
                &format!("/api/v1/contacts/duplicates?limit=1&cursor={cursor}{query}"),
                &t,
            )
            .await
            .problem(400, "invalid_parameter");
        assert_eq!(body["errors"][0]["field"], "cursor", "{body}");
    }
    // Cursors of other listings and garbage.
    let list_cursor = cursor_of(app.get("/api/v1/contacts?limit=1", &t).await.ok(200));
    for cursor in [list_cursor.as_str(), "not-a-cursor", "e30"] {
        app.get(&format!("/api/v1/contacts/duplicates?cursor={cursor}"), &t)
            .await
            .problem(400, "invalid_parameter");
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("match=name", "match"),
        ("match=EMAIL", "match"),
        ("match=", "match"),
    ] {
        let body = app
            .get(&format!("/api/v1/contacts/duplicates?{query}"), &t)
            .await
            .problem(400, "invalid_parameter");
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
    app.get("/api/v1/contacts/duplicates?sort=id", &t)
        .await
        .problem(400, "invalid_parameter");
    // Scope.
    app.get(
        "/api/v1/contacts/duplicates",
        &token(1, "contacts:write contacts:upsert"),
    )
    .await
    .problem(403, "insufficient_scope");
}

#[actix_web::test]
async fn a_merged_group_disappears_from_the_listing() {
    let app = spawn().await;
    let s = seed(&app).await;
    let t = token(1, RW);
    let list =
        || async { app.get("/api/v1/contacts/duplicates", &t).await.ok(200)["data"].clone() };
    let merge = |target: i64, sources: Vec<i64>| {
        let t = t.clone();
        let app = &app;
        async move {
            app.call(
                Method::POST,
                &format!("/api/v1/contacts/{target}/merge"),
                &t,
                Some(json!({ "source_ids": sources })),
            )
            .await
            .ok(200)
        }
    };

    merge(s.zed1, vec![s.zed2]).await;
    let all = expected(&s);
    assert_eq!(list().await, json!([all[0], all[2], all[3]]));

    // Merging the email group keeps the target's phone: the phone group shrinks to two.
    merge(s.ada1, vec![s.ada2, s.ada3]).await;
    assert_eq!(
        list().await,
        json!([all[2], group("phone", "+447700900123", &[s.ada1, s.bob])])
    );

    // The phone group's last pair: the target's email stays, bob's does not create a group.
    let m = merge(s.bob, vec![s.ada1]).await;
    assert_eq!(m["email"], "bob@example.com");
    assert_eq!(list().await, json!([all[2]]));

    merge(s.fr2, vec![s.fr1]).await;
    assert_eq!(list().await, json!([]));
}
