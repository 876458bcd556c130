//! Group commit of the session upsert (`coalesce`): concurrent upserts of one account and token
//! are written together, and each request is still answered as if it had been written alone.

use actix_web::test::TestRequest;
use serde_json::json;

use crate::helpers::*;

/// `name_sum` and `name_count` of a histogram in the metrics text.
fn histogram(text: &str, name: &str) -> (f64, u64) {
    let value = |suffix: &str| -> String {
        let prefix = format!("{name}_{suffix} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {name}_{suffix} in {text}"))
    };
    (
        value("sum").parse().expect("a sum"),
        value("count").parse().expect("a count"),
    )
}

#[actix_web::test]
async fn concurrent_upserts_are_grouped_and_each_answered_as_if_alone() {
    let app = spawn().await;
    let subs = ["bot-a", "bot-b", "other-account"];
    let tokens = [
        token_for(7, subs[0], "contacts:upsert", None),
        token_for(7, subs[1], "contacts:upsert", None),
        token_for(8, subs[2], "contacts:upsert", None),
    ];
    // 120 calls, 8 sessions per account, two tokens of account 7 (their audit actors differ,
    // so they are never written in one group), and one call per session that fails alone.
    let (app, tokens) = (&app, &tokens);
    let calls = (0..120).map(|i| async move {
        let t = &tokens[i % 3];
        let session = format!("s{}", i % 8);
        let body = if i == 77 {
            json!({"channel": "website", "email": "not-an-email"})
        } else {
            json!({"channel": "website", "payload": {format!("k{i}"): i}})
        };
        app.upsert(t, "bot", &session, body).await
    });
    let results = futures::future::join_all(calls).await;

    let failed: Vec<usize> = (0..120)
        .filter(|&i| !matches!(results[i].status.as_u16(), 200 | 201))
        .collect();
    assert_eq!(failed, vec![77], "only the invalid call fails");
    // Each answer is this call's own: its session, and its payload key merged.
    for (i, r) in results.iter().enumerate().filter(|(i, _)| *i != 77) {
        let c = r.json();
        assert_eq!(c["session_id"], format!("s{}", i % 8), "call {i}");
        assert_eq!(c["payload"][format!("k{i}")], i, "call {i}: {c}");
    }
    results[77].problem(422, "validation_failed");
    for account in [7, 8] {
        assert_eq!(
            app.db.count(&format!(
                "SELECT count(*) AS n FROM contacts WHERE account_id = {account}"
            )),
            8
        );
    }
    // Per session: one 201, every payload key kept, one version per successful call.
    for (account, owners) in [(7, vec![0usize, 1]), (8, vec![2])] {
        for s in 0..8 {
            let calls: Vec<usize> = (0..120)
                .filter(|i| i % 8 == s && owners.contains(&(i % 3)) && *i != 77)
                .collect();
            let created: Vec<usize> = calls
                .iter()
                .copied()
                .filter(|&i| results[i].status.as_u16() == 201)
                .collect();
            assert_eq!(created.len(), 1, "one creation for account {account} s{s}");
            let where_ = format!("account_id = {account} AND session_id = 's{s}'");
            assert_eq!(
                app.db.count(&format!(
                    "SELECT count(*) AS n FROM contacts, jsonb_object_keys(payload) WHERE {where_}"
                )),
                calls.len() as i64,
                "no payload merge lost for account {account} s{s}"
            );
            assert_eq!(
                app.db.count(&format!(
                    "SELECT max(version) AS n FROM contacts WHERE {where_}"
                )),
                calls.len() as i64
            );
            // The creation is audited under the token that created it.
            let creator = subs[created[0] % 3];
            assert_eq!(
                app.db.count(&format!(
                    "SELECT count(*) AS n FROM audit_events e JOIN contacts c ON c.id = e.contact_id \
                     WHERE c.{where_} AND e.action = 'contact.created' AND e.actor = '{creator}'"
                )),
                1,
                "account {account} s{s} created by {creator}"
            );
        }
    }
    // Written in groups: fewer transactions than calls, every call counted once.
    let metrics = app.send(TestRequest::get().uri("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let (sum, count) = histogram(&text, "contacts_upsert_group_size");
    assert_eq!(sum, 119.0, "every valid call goes through a group");
    assert!(
        count < 119,
        "some calls were written together ({count} groups)"
    );
}

#[actix_web::test]
async fn a_grouped_upsert_whose_merged_payload_is_too_large_fails_alone() {
    let app = spawn().await;
    let t = token(1, "contacts:upsert contacts:read");
    // Two 8 KB payloads of distinct keys: about 16,000 bytes stored, under the 16 KiB limit.
    for key in ["a", "b"] {
        let payload = json!({ key: key.repeat(8_000) });
        app.upsert_ok(
            &t,
            "bot",
            "big",
            json!({"channel": "website", "payload": payload}),
        )
        .await;
    }
    // 40 calls at once; one of them would push the stored payload past 16 KiB.
    let (app, t) = (&app, &t);
    let calls = (0..40).map(|i| async move {
        let (session, payload) = if i == 20 {
            ("big".to_string(), json!({"c": "c".repeat(5_000)}))
        } else {
            (format!("s{i}"), json!({"i": i}))
        };
        app.upsert(
            t,
            "bot",
            &session,
            json!({"channel": "api", "payload": payload}),
        )
        .await
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.iter().enumerate() {
        if i == 20 {
            let p = r.problem(422, "validation_failed");
            assert_eq!(p["errors"][0]["field"], "payload", "{p}");
        } else {
            r.ok(201);
        }
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 40);
    assert_eq!(
        app.db
            .count("SELECT max(version) AS n FROM contacts WHERE session_id = 'big'"),
        2,
        "the failed call changed nothing"
    );
}

#[actix_web::test]
async fn a_group_blocked_by_one_locked_row_is_rewritten_one_by_one_and_only_that_one_fails() {
    use diesel::connection::SimpleConnection;
    let limits = contacts_api::config::Limits {
        lock_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let app = spawn_custom(limits, |_| {}).await;
    let t = token(1, "contacts:upsert contacts:read");
    let held = app
        .upsert_ok(&t, "bot", "held", json!({"channel": "website"}))
        .await;
    // Another transaction holds the contact of session "held" for the whole test.
    let mut blocker = app.db.conn();
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM contacts WHERE account_id = 1 AND id = {} FOR UPDATE",
            held["id"]
        ))
        .unwrap();
    let (app, t) = (&app, &t);
    let calls = (0..40).map(|i| async move {
        let session = if i == 20 {
            "held".to_string()
        } else {
            format!("s{i}")
        };
        app.upsert(
            t,
            "bot",
            &session,
            json!({"channel": "api", "payload": {"i": i}}),
        )
        .await
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.iter().enumerate() {
        if i == 20 {
            r.problem(503, "service_unavailable");
        } else {
            r.ok(201);
        }
    }
    blocker.batch_execute("ROLLBACK").unwrap();
    // The group that held call 20 failed as a whole and was rewritten request by request.
    let metrics = app
        .send(TestRequest::get().uri("/metrics"))
        .await
        .body
        .clone();
    let (_, groups) = histogram(
        &String::from_utf8_lossy(&metrics),
        "contacts_upsert_group_size",
    );
    assert!(groups >= 2, "{groups}");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 40);
}
