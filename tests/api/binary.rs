//! The real binary: configuration errors, database creation at start, and a request over TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;

use crate::helpers::*;

/// A minimal HTTP/1.1 exchange: (status, headers, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command() -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "DATABASE_URL",
        "BIND_ADDR",
        "JWT_SECRET",
        "JWT_PUBLIC_KEY_FILE",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "DATABASE_POOL_SIZE",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_naming_it() {
    for (var, value) in [
        ("DATABASE_POOL_SIZE", "lots"),
        ("BIND_ADDR", "nowhere"),
        ("DATABASE_URL", "mysql://x"),
    ] {
        let out = command()
            .arg("serve")
            .env("JWT_SECRET", SECRET)
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
    }
    let out = command().arg("serve").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"));
}

#[test]
fn serve_creates_and_migrates_its_database_then_answers_with_a_minted_token() {
    let name = format!("contacts_bin_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name);
    let port = free_port();
    let log_path = std::env::temp_dir().join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server(
        command()
            .arg("serve")
            .env("DATABASE_URL", &url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http(port, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(port, "GET", "/readyz", None, None).0, 200);

    let out = command()
        .args([
            "token",
            "--account",
            "3",
            "--sub",
            "alice",
            "--scope",
            "contacts:upsert contacts:read",
            "--ttl",
            "1h",
        ])
        .env("JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let (status, head, body) = http(
        port,
        "PUT",
        "/api/v1/chatbots/support-bot/sessions/wa-447700900123/contact",
        Some(&token),
        Some(r#"{"channel":"whatsapp","name":"Ada Lovelace","phone":"+447700900123"}"#),
    );
    assert_eq!(status, 201, "{body}");
    assert!(head.contains("location: /api/v1/contacts/"));
    assert!(head.contains("x-request-id: "));
    let contact: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (status, _, body) = http(
        port,
        "GET",
        &format!("/api/v1/contacts/{}", contact["id"]),
        Some(&token),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["name"],
        "Ada Lovelace"
    );
    let (status, head, _) = http(port, "GET", "/api/v1/contacts", None, None);
    assert_eq!(status, 401);
    assert!(head.contains("content-type: application/problem+json"));

    drop(server);
    // One structured access line per request, and no token or personal data anywhere.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let access = log
        .lines()
        .find(|l| l.contains("method=PUT"))
        .unwrap_or_else(|| panic!("no access line for the upsert in\n{log}"));
    for part in [
        "request_id=",
        "account=3",
        "route=/api/v1/chatbots/{chatbot_id}/sessions/{session_id}/contact",
        "status=201",
        "duration_ms=",
    ] {
        assert!(access.contains(part), "`{part}` missing from {access}");
    }
    for secret in [
        token.as_str(),
        "Ada",
        "Lovelace",
        "447700900123",
        "support-bot",
    ] {
        assert!(!log.contains(secret), "the log holds `{secret}`:\n{log}");
    }
    diesel::PgConnection::establish(&url_for("postgres"))
        .unwrap()
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

/// Waits up to `limit` for the child to exit.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn database_exists(name: &str) -> bool {
    use diesel::RunQueryDsl;
    let mut conn = diesel::PgConnection::establish(&url_for("postgres")).unwrap();
    diesel::sql_query(format!(
        "SELECT 1 AS one FROM pg_database WHERE datname = '{name}'"
    ))
    .execute(&mut conn)
    .unwrap()
        > 0
}

fn drop_database(name: &str) {
    diesel::PgConnection::establish(&url_for("postgres"))
        .unwrap()
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

/// Finding 6 of issue #14: with BIND_ADDR taken and a database that does not exist yet, the
/// process sometimes died by a signal inside libkrb5 (the pool's threads were connecting while
/// it exited). The address is now taken first: the start fails before touching the database.
#[test]
fn a_taken_bind_addr_exits_2_with_one_line_and_no_signal_on_a_fresh_database() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    for run in 0..20 {
        let name = format!("contacts_bind_{}", uuid::Uuid::new_v4().simple());
        let mut child = command()
            .arg("serve")
            .env("DATABASE_URL", url_for(&name))
            .env("BIND_ADDR", addr.to_string())
            .env("JWT_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(30));
        let created = database_exists(&name);
        if created {
            drop_database(&name);
        }
        let Some(status) = status else {
            let _ = child.kill();
            panic!("run {run}: still running after 30 s");
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(
            status.code(),
            Some(2),
            "run {run}: {status:?}, stderr: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "run {run}: {stderr}");
        assert!(stderr.contains("BIND_ADDR"), "run {run}: {stderr}");
        assert!(
            !created,
            "run {run}: the database was created before the bind failed"
        );
    }
}

/// SIGTERM after a normal start: in-flight work ends, the pool closes, exit status 0.
#[test]
fn sigterm_after_a_normal_start_exits_0() {
    let db = TestDb::new();
    let port = free_port();
    let mut server = Server(
        command()
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while http_status(port, "/readyz") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not get ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut server.0, Duration::from_secs(40)).expect("exited after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// The status of a GET, or None when the server does not answer (yet).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split(' ').nth(1)?.parse().ok()
}
