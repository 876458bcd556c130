//! Request bodies in a content coding: gzip is decoded (within the operation's body limit),
//! everything else is refused with 415 and `Accept-Encoding`, never read as identity.

use std::io::Write;

use actix_web::test::TestRequest;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;

use crate::helpers::*;

const UPSERT: &str = "/api/v1/chatbots/bot/sessions/s-1/contact";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn body() -> Vec<u8> {
    json!({"channel": "web", "name": "Ada"})
        .to_string()
        .into_bytes()
}

/// A PUT of the upsert with `body` and the given `Content-Encoding` field lines.
fn put(codings: &[&str], body: Vec<u8>) -> TestRequest {
    let mut req = TestRequest::put()
        .uri(UPSERT)
        .insert_header((
            "authorization",
            format!("Bearer {}", token(1, "contacts:upsert")),
        ))
        .insert_header(("content-type", "application/json"));
    for c in codings {
        req = req.append_header(("content-encoding", *c));
    }
    req.set_payload(body)
}

#[track_caller]
fn assert_415(r: &Resp) {
    r.problem(415, "unsupported_encoding");
    assert_eq!(r.header("accept-encoding").as_deref(), Some("gzip"));
}

#[actix_web::test]
async fn codings_the_service_does_not_decode_are_415_and_nothing_is_written() {
    let app = spawn().await;
    for codings in [
        &["br"][..],
        &["zstd"],
        &["compress"],
        &["deflate"],
        &["x-unknown"],
        &["gzip, gzip"],
        &["gzip", "gzip"],
        &["identity, gzip"],
        &["gzip, br"],
    ] {
        // A plain JSON body under a coding: read as identity, it would have been written.
        assert_415(&app.send(put(codings, body())).await);
        assert_415(&app.send(put(codings, gzip(&body()))).await);
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
}

#[actix_web::test]
async fn gzip_bodies_are_decoded() {
    let app = spawn().await;
    let r = app.send(put(&["gzip"], gzip(&body()))).await;
    assert_eq!(r.ok(201)["name"], "Ada");
    let r = app.send(put(&["x-gzip"], gzip(&body()))).await;
    r.ok(200);
    // Two gzip members are one body (RFC 1952 §2.2).
    let text = json!({"channel": "web", "name": "Grace"}).to_string();
    let (a, b) = text.split_at(10);
    let mut members = gzip(a.as_bytes());
    members.extend(gzip(b.as_bytes()));
    let r = app.send(put(&["GZIP"], members)).await;
    assert_eq!(r.ok(200)["name"], "Grace");
    // `identity` is no coding at all.
    app.send(put(&["identity"], body())).await.ok(200);
}

#[actix_web::test]
async fn a_body_that_is_not_the_gzip_it_claims_is_415() {
    let app = spawn().await;
    let good = gzip(&body());
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"{\"name\":\"Eve\"}");
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    for (what, payload) in [
        ("plain JSON", body()),
        ("truncated", good[..good.len() - 5].to_vec()),
        ("garbage after the member", trailing),
        ("wrong CRC", bad_crc),
        ("empty", Vec::new()),
    ] {
        let r = app.send(put(&["gzip"], payload)).await;
        assert_eq!(r.status.as_u16(), 415, "{what}");
        assert_415(&r);
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
}

#[actix_web::test]
async fn a_gzip_bomb_is_413_at_the_operation_limit() {
    let app = spawn().await;
    // 16 MiB of spaces inside a JSON object: about 16 KiB compressed, far below the limit.
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(b"{\"channel\":\"web\",\"name\":\"Ada\"")
        .unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..16 {
        e.write_all(&spaces).unwrap();
    }
    e.write_all(b"}").unwrap();
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 32 * 1024, "{}", bomb.len());
    let r = app.send(put(&["gzip"], bomb)).await;
    r.problem(413, "payload_too_large");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
    // Compressed size within the limit, decoded size just under it: accepted.
    let mut fits = json!({"channel": "web", "name": "Ada"}).to_string();
    fits.pop();
    fits.push_str(&" ".repeat(60 * 1024));
    fits.push('}');
    app.send(put(&["gzip"], gzip(fits.as_bytes())))
        .await
        .ok(201);
}

#[actix_web::test]
async fn a_coding_is_refused_on_any_route() {
    let app = spawn().await;
    let r = app
        .send(
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("content-encoding", "br")),
        )
        .await;
    assert_415(&r);
}

#[actix_web::test]
async fn endless_empty_gzip_members_are_413_at_the_compressed_cap() {
    let app = spawn().await;
    // Empty members decode to nothing, so only a cap on the compressed input ends them.
    let member = gzip(b"");
    let mut endless = gzip(&body());
    while endless.len() <= contacts_api::encoding::MAX_COMPRESSED {
        endless.extend_from_slice(&member);
    }
    let r = app.send(put(&["gzip"], endless)).await;
    r.problem(413, "payload_too_large");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM contacts"), 0);
}
