//! Concurrent writers of the same rows never deadlock (issue #14, finding 4): overlapping batch
//! upserts, and an erasure against upserts of the same person. A deadlock that PostgreSQL
//! resolves is retried by the service and may even end in a 200 after a 1 s stall, so the
//! tests also read the database's own deadlock counter.

use actix_http::Method;
use diesel::sql_types::BigInt;
use diesel::{QueryableByName, RunQueryDsl};
use serde_json::{json, Value};

use crate::helpers::*;

const RW: &str = "contacts:read contacts:write contacts:delete contacts:upsert privacy:manage";

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The deadlocks PostgreSQL detected in the test's database. A backend publishes its counters
/// when it goes idle for a while or exits, so the app's connections are ended first (call this
/// last).
fn deadlocks(db: &TestDb) -> i64 {
    let mut conn = db.conn();
    diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid, 10000))::bigint AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .get_result::<N>(&mut conn)
    .unwrap();
    let mut conn = db.conn();
    diesel::sql_query(
        "SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()",
    )
    .get_result::<N>(&mut conn)
    .unwrap()
    .n
}

/// A small deterministic shuffle (xorshift), so that a failing trial can be replayed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn item(session: &str, key: &str) -> Value {
    json!({"chatbot_id": "bot", "session_id": session, "channel": "website",
           "email": format!("{session}@example.com"), "payload": {key: 1}})
}

#[actix_web::test]
async fn overlapping_batch_upserts_never_deadlock_and_lose_nothing() {
    let app = spawn().await;
    let t = token(1, RW);
    // Existing sessions, and one contact that two sessions lead to (merged).
    let existing: Vec<String> = (0..6).map(|i| format!("e{i}")).collect();
    for s in existing
        .iter()
        .chain(["m0".to_string(), "m1".to_string()].iter())
    {
        app.upsert_ok(&t, "bot", s, json!({"channel": "website"}))
            .await;
    }
    let ids: Vec<i64> = ["m0", "m1"]
        .iter()
        .map(|s| {
            app.db.count(&format!(
                "SELECT contact_id AS n FROM contact_sessions WHERE session_id = '{s}'"
            ))
        })
        .collect();
    app.call(
        Method::POST,
        &format!("/api/v1/contacts/{}/merge", ids[0]),
        &t,
        Some(json!({"source_ids": [ids[1]]})),
    )
    .await
    .ok(200);

    let mut named: std::collections::HashMap<String, i64> = Default::default();
    let trials = 60;
    for trial in 0..trials {
        // Each batch names half of the existing sessions, two of the trial's four new sessions
        // and one session of the merged contact, in its own order, with two repeats: batches
        // overlap in part, as independent clients' batches do.
        let new: Vec<String> = (0..4).map(|i| format!("n{trial}-{i}")).collect();
        let batches: Vec<Vec<Value>> = (0..8u64)
            .map(|b| {
                let seed = 0x9e37_79b9 ^ (trial * 8 + b + 1);
                let mut old = existing.clone();
                shuffle(&mut old, seed);
                let mut fresh = new.clone();
                shuffle(&mut fresh, seed + 7);
                let mut sessions: Vec<String> = old[..3]
                    .iter()
                    .chain(fresh[..2].iter())
                    .cloned()
                    .chain([format!("m{}", b % 2)])
                    .collect();
                sessions.push(old[0].clone());
                sessions.push(fresh[0].clone());
                shuffle(&mut sessions, seed + 13);
                sessions
                    .iter()
                    .enumerate()
                    .map(|(k, s)| item(s, &format!("t{trial}b{b}k{k}")))
                    .collect()
            })
            .collect();
        for batch in &batches {
            for it in batch {
                *named
                    .entry(it["session_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        let (app, t) = (&app, &t);
        let calls = batches.iter().map(|items| async move {
            app.call(
                Method::POST,
                "/api/v1/contacts/batch-upsert",
                t,
                Some(json!({ "items": items })),
            )
            .await
        });
        let answers = futures::future::join_all(calls).await;
        let mut created = 0;
        for (b, r) in answers.iter().enumerate() {
            let body = r.ok(200);
            for (k, res) in body["results"].as_array().unwrap().iter().enumerate() {
                let status = res["status"].as_u64().unwrap();
                assert!(
                    status == 200 || status == 201,
                    "trial {trial} batch {b} item {k}: {res}"
                );
                assert_eq!(res["contact"]["session_id"], batches[b][k]["session_id"]);
                created += usize::from(status == 201);
            }
        }
        let named_new = new.iter().filter(|s| named.contains_key(*s)).count();
        assert_eq!(
            created, named_new,
            "trial {trial}: each new session created once"
        );
        assert_eq!(
            app.db.count("SELECT count(*) AS n FROM contacts"),
            6 + 1 + named.keys().filter(|s| s.starts_with('n')).count() as i64,
            "trial {trial}: one contact per session"
        );
    }
    // Every session keeps one contact and every item's payload key; the merged contact still
    // counts its two sessions.
    assert_eq!(
        app.db.count(
            "SELECT count(*) AS n FROM contact_sessions s JOIN contacts c \
             ON c.account_id = s.account_id AND c.id = s.contact_id"
        ),
        6 + 2 + named.keys().filter(|s| s.starts_with('n')).count() as i64
    );
    for (session, n) in &named {
        if session.starts_with('m') {
            continue;
        }
        assert_eq!(
            app.db.count(&format!(
                "SELECT count(*) AS n FROM contacts c JOIN contact_sessions s \
                 ON s.account_id = c.account_id AND s.contact_id = c.id, \
                 jsonb_object_keys(c.payload) WHERE s.session_id = '{session}'"
            )),
            *n,
            "no payload key of {session} lost"
        );
    }
    let merged = named["m0"] + named["m1"];
    assert_eq!(
        app.db.count(&format!(
            "SELECT count(*) AS n FROM contacts, jsonb_object_keys(payload) WHERE id = {}",
            ids[0]
        )),
        merged
    );
    assert_eq!(
        app.db.count(&format!(
            "SELECT sessions_count::bigint AS n FROM contacts WHERE id = {}",
            ids[0]
        )),
        2
    );
    assert_eq!(deadlocks(&app.db), 0, "PostgreSQL detected deadlocks");
}

#[actix_web::test]
async fn erasure_against_upserts_of_the_same_person_never_deadlocks() {
    let app = spawn().await;
    let t = token(1, RW);
    let mut deleted = 0;
    for trial in 0..15 {
        // The person: four sessions (two of them merged into one contact) with one email.
        let email = format!("p{trial}@example.com");
        let sessions: Vec<String> = (0..4).map(|i| format!("p{trial}-{i}")).collect();
        let mut ids = Vec::new();
        for s in &sessions {
            let c = app
                .upsert_ok(&t, "bot", s, json!({"channel": "website", "email": email}))
                .await;
            ids.push(c["id"].as_i64().unwrap());
        }
        app.call(
            Method::POST,
            &format!("/api/v1/contacts/{}/merge", ids[0]),
            &t,
            Some(json!({"source_ids": [ids[1]]})),
        )
        .await
        .ok(200);
        // Upserts of those sessions (alone and in batches, in both orders), one erasure, and a
        // delete of one of the contacts, all at once.
        let (app, t, sessions, email) = (&app, &t, &sessions, &email);
        let upserts = (0..12).map(|k| async move {
            let s = &sessions[k % 4];
            let body = json!({"channel": "api", "email": email, "payload": {format!("k{k}"): k}});
            if k % 3 == 0 {
                let mut items: Vec<Value> = sessions
                    .iter()
                    .map(|s| {
                        json!({"chatbot_id": "bot", "session_id": s, "channel": "api",
                               "email": email})
                    })
                    .collect();
                if k % 2 == 0 {
                    items.reverse();
                }
                app.call(
                    Method::POST,
                    "/api/v1/contacts/batch-upsert",
                    t,
                    Some(json!({ "items": items })),
                )
                .await
            } else {
                app.upsert(t, "bot", s, body).await
            }
        });
        let erase = async move {
            app.call(
                Method::POST,
                "/api/v1/privacy/erasure",
                t,
                Some(json!({ "email": email })),
            )
            .await
        };
        let delete = async move {
            app.call(
                Method::DELETE,
                &format!("/api/v1/contacts/{}", ids[3]),
                t,
                None,
            )
            .await
        };
        let (answers, erased, del) =
            futures::join!(futures::future::join_all(upserts), erase, delete);
        for (k, r) in answers.iter().enumerate() {
            assert!(
                matches!(r.status.as_u16(), 200 | 201),
                "trial {trial} upsert {k}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        erased.ok(200);
        assert!(
            matches!(del.status.as_u16(), 204 | 404),
            "trial {trial} delete: {} {}",
            del.status,
            String::from_utf8_lossy(&del.body)
        );
        deleted += i64::from(del.status.as_u16() == 204);
        // Whatever the interleaving: each session has one contact at most (none when the
        // erasure came last), and no contact is left without a session.
        for s in sessions {
            assert!(
                app.db.count(&format!(
                    "SELECT count(*) AS n FROM contact_sessions s JOIN contacts c \
                     ON c.account_id = s.account_id AND c.id = s.contact_id \
                     WHERE s.session_id = '{s}'"
                )) <= 1,
                "trial {trial}: {s}"
            );
        }
        assert_eq!(
            app.db.count(
                "SELECT count(*) AS n FROM contacts c WHERE NOT EXISTS \
                 (SELECT 1 FROM contact_sessions s WHERE s.account_id = c.account_id \
                  AND s.contact_id = c.id)"
            ),
            0
        );
    }
    let _ = deleted;
    assert_eq!(deadlocks(&app.db), 0, "PostgreSQL detected deadlocks");
}

#[actix_web::test]
async fn retention_against_upserts_of_expiring_sessions_never_deadlocks() {
    use diesel::connection::SimpleConnection;
    let app = spawn().await;
    let t = token(1, RW);
    for trial in 0..6 {
        // 30 contacts, 10 of them holding a second (merged) session, all expired.
        let sessions: Vec<String> = (0..40).map(|i| format!("r{trial}-{i}")).collect();
        let mut ids = Vec::new();
        for s in &sessions {
            let c = app
                .upsert_ok(&t, "bot", s, json!({"channel": "website"}))
                .await;
            ids.push(c["id"].as_i64().unwrap());
        }
        for k in 0..10 {
            app.call(
                Method::POST,
                &format!("/api/v1/contacts/{}/merge", ids[k]),
                &t,
                Some(json!({"source_ids": [ids[30 + k]]})),
            )
            .await
            .ok(200);
        }
        app.db
            .conn()
            .batch_execute(
                "UPDATE contacts SET last_seen_at = now() - interval '40 days'; \
                 UPDATE contact_activity SET last_seen_at = now() - interval '40 days'; \
                 INSERT INTO account_settings (account_id, retention_days) VALUES (1, 30) \
                 ON CONFLICT (account_id) DO UPDATE SET retention_days = 30",
            )
            .unwrap();
        // Two retention passes (two server processes) against upserts and batches of the
        // same sessions, in both orders.
        let passes: Vec<_> = (0..2)
            .map(|_| {
                let mut conn = app.db.conn();
                std::thread::spawn(move || {
                    (0..3)
                        .map(|_| contacts_api::repo::retention::run_once(&mut conn))
                        .collect::<Result<Vec<i64>, _>>()
                })
            })
            .collect();
        let (app, t, sessions) = (&app, &t, &sessions);
        let upserts = (0..16).map(|k| async move {
            if k % 4 == 0 {
                let mut items: Vec<Value> = sessions
                    .iter()
                    .skip(k)
                    .step_by(3)
                    .map(|s| json!({"chatbot_id": "bot", "session_id": s, "channel": "api"}))
                    .collect();
                if k % 8 == 0 {
                    items.reverse();
                }
                app.call(
                    Method::POST,
                    "/api/v1/contacts/batch-upsert",
                    t,
                    Some(json!({ "items": items })),
                )
                .await
            } else {
                let s = &sessions[(k * 7) % 40];
                app.upsert(t, "bot", s, json!({"channel": "api"})).await
            }
        });
        for (k, r) in futures::future::join_all(upserts).await.iter().enumerate() {
            assert!(
                matches!(r.status.as_u16(), 200 | 201),
                "trial {trial} upsert {k}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        for p in passes {
            p.join().unwrap().expect("retention pass");
        }
        // A session is never left without its contact.
        assert_eq!(
            app.db.count(
                "SELECT count(*) AS n FROM contact_sessions s WHERE NOT EXISTS \
                 (SELECT 1 FROM contacts c WHERE c.account_id = s.account_id AND c.id = s.contact_id)"
            ),
            0
        );
    }
    assert_eq!(deadlocks(&app.db), 0, "PostgreSQL detected deadlocks");
}
