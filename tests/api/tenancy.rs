//! Another account's contacts are invisible and untouchable: answered exactly as unknown ids.

use actix_web::http::Method;
use serde_json::json;

use crate::helpers::*;

const ALL: &str = "contacts:read contacts:write contacts:delete contacts:upsert";

#[actix_web::test]
async fn another_accounts_contact_cannot_be_read_written_listed_or_deleted() {
    let app = spawn().await;
    let owner = token(1, ALL);
    let intruder = token(2, ALL);
    let c = app
        .upsert_ok(
            &owner,
            "bot",
            "s",
            json!({"channel": "api", "name": "Secret", "email": "s@example.com"}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    let path = format!("/api/v1/contacts/{id}");

    let missing = app.get("/api/v1/contacts/987654321", &intruder).await;
    let foreign = app.get(&path, &intruder).await;
    let a = missing.problem(404, "not_found");
    let b = foreign.problem(404, "not_found");
    assert_eq!(
        a["detail"].as_str().unwrap().replace("987654321", "ID"),
        b["detail"].as_str().unwrap().replace(&id.to_string(), "ID"),
        "a foreign id reads exactly like a missing one"
    );

    app.call(
        Method::PATCH,
        &path,
        &intruder,
        Some(json!({"name": "pwned"})),
    )
    .await
    .problem(404, "not_found");
    app.call(Method::DELETE, &path, &intruder, None)
        .await
        .problem(404, "not_found");
    app.get(&format!("{path}/sessions"), &intruder)
        .await
        .problem(404, "not_found");
    let list = app.get("/api/v1/contacts", &intruder).await.ok(200);
    assert_eq!(list["data"], json!([]));

    // The intruder's upsert of the same session creates its own contact.
    let own = app
        .upsert_ok(
            &intruder,
            "bot",
            "s",
            json!({"channel": "api", "name": "Mine"}),
        )
        .await;
    assert_ne!(own["id"], id);

    // Creating with the owner's session in the intruder's account does not conflict.
    app.call(
        Method::POST,
        "/api/v1/contacts",
        &token(3, ALL),
        Some(json!({"chatbot_id": "bot", "channel": "api", "session_id": "s"})),
    )
    .await
    .ok(201);

    let after = app.get(&path, &owner).await.ok(200);
    assert_eq!(after, c, "the owner's contact is untouched");
    assert_eq!(
        app.get("/api/v1/contacts", &owner).await.ok(200)["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_web::test]
async fn the_account_comes_from_the_token_only() {
    let app = spawn().await;
    let t = token(5, ALL);
    // account_id in the body is refused (no mass assignment), in the query it is an unknown parameter.
    app.upsert(&t, "bot", "s", json!({"channel": "api", "account_id": 6}))
        .await
        .problem(422, "unknown_field");
    app.get("/api/v1/contacts?account_id=6", &t)
        .await
        .problem(400, "invalid_parameter");
    app.upsert_ok(&t, "bot", "s", json!({"channel": "api"}))
        .await;
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id = 5"),
        1
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM contacts WHERE account_id <> 5"),
        0
    );
}
