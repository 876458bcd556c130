//! The real binary's lifecycle: SIGTERM lets an in-flight request finish before a clean exit,
//! and a server started before its database retries until the database answers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use serde_json::Value;

use crate::helpers::*;

const DRAIN_LINE: &str = "stopped: server shut down, database pool closed";
const RETRY_LINE: &str = "database not ready, retrying";

/// The server process, killed when the test ends however it ends.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// `contacts-api serve` on a free port with `database_url`, logging to a temporary file.
    fn start(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "contacts_lifecycle_{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let mut cmd = Command::new(BIN);
        for (var, _) in std::env::vars() {
            if var.starts_with("DATABASE_")
                || var.starts_with("JWT_")
                || var.starts_with("RATE_LIMIT_")
                || var == "BIND_ADDR"
                || var == "CLIENT_TIMEOUT_SECONDS"
                || var == "RETENTION_INTERVAL_SECONDS"
                || var == "EXPORTS_PER_ACCOUNT"
            {
                cmd.env_remove(var);
            }
        }
        cmd.arg("serve")
            .env("DATABASE_URL", database_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", SECRET)
            .env("RATE_LIMIT_UPSERTS_PER_MINUTE", "0")
            .env("RATE_LIMIT_REQUESTS_PER_MINUTE", "0")
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().unwrap();
        Self { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the process has exited.
    #[track_caller]
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the server exited ({status}); its log:\n{}", self.log());
        }
    }

    /// Waits until `path` answers `status`.
    #[track_caller]
    fn wait_for(&mut self, path: &str, status: u16, within: Duration) {
        let started = Instant::now();
        loop {
            self.assert_running();
            if matches!(request(self.port, "GET", path, None, None), Ok((s, _)) if s == status) {
                return;
            }
            assert!(
                started.elapsed() < within,
                "{path} did not answer {status} within {within:?}; the server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// The exit status, or None when the process still runs after `within`.
    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One HTTP/1.1 exchange over a new connection (`Connection: close`): (status, body).
/// `body` is (content type, text).
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some((content_type, text)) = body {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, out.clone());
    let (head, body) = out.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}

/// None when a new client gets no service on `port` (refused, closed, or no answer within 2 s);
/// otherwise what it got.
fn served(port: u16) -> Option<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/").then_some(out)
}

#[track_caller]
fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let db = TestDb::new();
    // The PATCH below waits on a row lock on purpose: far longer than the test holds it.
    let mut server = Server::start(&db.url, &[("DATABASE_LOCK_TIMEOUT_SECONDS", "60")]);
    server.wait_for("/readyz", 200, Duration::from_secs(30));
    let port = server.port;
    let t = token(1, "contacts:upsert contacts:read contacts:write");

    let (status, body) = request(
        port,
        "PUT",
        "/api/v1/chatbots/bot/sessions/drain-1/contact",
        Some(&t),
        Some((
            "application/json",
            r#"{"channel":"website","name":"Before"}"#,
        )),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = json(&body)["id"].as_i64().unwrap();

    // Another session holds the contact's row: the PATCH blocks inside its transaction.
    let mut locker = db.conn();
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT id FROM contacts WHERE account_id = 1 AND id = {id} FOR UPDATE"
        ))
        .unwrap();
    let patch = std::thread::spawn({
        let t = t.clone();
        move || {
            request(
                port,
                "PATCH",
                &format!("/api/v1/contacts/{id}"),
                Some(&t),
                Some(("application/merge-patch+json", r#"{"name":"Drained"}"#)),
            )
        }
    });
    let started = Instant::now();
    while db.count(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    ) == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the PATCH never waited on the lock; the server log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    server.signal("-TERM");
    std::thread::sleep(Duration::from_millis(500));
    // Draining: no new work is taken, the process waits for the PATCH.
    if let Some(answer) = served(port) {
        panic!("a new connection was served after SIGTERM:\n{answer}");
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited with a request in flight; its log:\n{}",
        server.log()
    );
    assert!(!patch.is_finished(), "the PATCH did not wait for the lock");

    locker.batch_execute("COMMIT").unwrap();
    let (status, body) = patch.join().unwrap().expect("the PATCH got an answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["name"], "Drained");

    let exit = server.wait_exit(Duration::from_secs(10));
    let log = server.log();
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit after SIGTERM: {exit:?}; the log:\n{log}"
    );
    assert!(log.contains(DRAIN_LINE), "no drain line in:\n{log}");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM contacts WHERE id = {id} AND name = 'Drained'"
        )),
        1
    );
}

/// A TCP forwarder from `listen` to `upstream`: the database "appears" on a port where nothing
/// listened. Its threads end with their connections (the accept thread with the test process).
fn forward(listen: u16, upstream: SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", listen))
        .unwrap_or_else(|e| panic!("port {listen} was taken meanwhile: {e}"));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    });
}

/// Address of the test PostgreSQL server (`TEST_DATABASE_URL`).
fn database_server(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap_or("localhost").to_string();
    (host.as_str(), url.port().unwrap_or(5432))
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

fn retry_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains(RETRY_LINE)).count()
}

#[test]
fn a_server_started_before_its_database_retries_then_serves_once_it_answers() {
    let db = TestDb::new();
    // The database's URL, on a port where nothing listens (yet).
    let port = free_port();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_port(Some(port)).unwrap();
    let mut server = Server::start(url.as_str(), &[]);

    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) || retry_lines(&server.log()) < 2 {
        server.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fewer than two `{RETRY_LINE}` lines in 10 s:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.log();
    let line = log.lines().find(|l| l.contains(RETRY_LINE)).unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&port.to_string()), "names the server: {line}");

    // The database appears on that port: the next attempt (2 s at most) gets through.
    forward(port, database_server(&db.url));
    let appeared = Instant::now();
    server.wait_for("/readyz", 200, Duration::from_secs(10));
    let t = token(1, "contacts:read");
    let (status, body) = request(server.port, "GET", "/api/v1/contacts", Some(&t), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        appeared.elapsed() < Duration::from_secs(5),
        "ready {:?} after the database appeared",
        appeared.elapsed()
    );
    assert!(server.log().contains("database ready"));
}
