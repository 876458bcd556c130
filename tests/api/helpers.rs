//! Test harness: a per-test database cloned from a migrated template, the app wired exactly as
//! `main` wires it and driven in-process, and token minting.

use std::sync::OnceLock;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::web::Bytes;
use contacts_api::auth::{mint, MintRequest, TokenVerifier};
use contacts_api::config::JwtConfig;
use contacts_api::db;
use contacts_api::routes::{app, AppState};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::Value;

/// The HS256 secret of the test app.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@localhost:5432/postgres".into())
}

/// `server_url()` pointing at database `name`.
pub fn url_for(name: &str) -> String {
    let mut url = url::Url::parse(&server_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    // Each nextest test is a process that may exit while the pool's background threads are
    // still connecting; without TLS, libpq never touches OpenSSL, whose exit-time teardown can
    // crash such a thread (seen once as a SIGSEGV). The test server is local.
    if !url.query().unwrap_or("").contains("sslmode") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    url.to_string()
}

fn admin() -> PgConnection {
    PgConnection::establish(&url_for("postgres")).expect("connect to the test server")
}

/// The template's name changes with the migrations, so a new migration gets a new template.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let mut files: Vec<_> =
            walk(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"));
        files.sort();
        let mut h = Sha256::new();
        for f in files {
            h.update(f.to_string_lossy().as_bytes());
            h.update(std::fs::read(&f).expect("read migration"));
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = format!("contacts_tpl_{hex}");
        create_template(&name);
        name
    })
}

fn walk(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read migrations dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(walk(path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Builds the template once per server, under an advisory lock shared by every test process.
fn create_template(name: &str) {
    let mut conn = admin();
    conn.batch_execute("SELECT pg_advisory_lock(7243001)")
        .unwrap();
    let exists = diesel::sql_query(format!(
        "SELECT 1 AS one FROM pg_database WHERE datname = '{name}'"
    ))
    .execute(&mut conn)
    .unwrap()
        > 0;
    if !exists {
        let building = format!("{name}_building");
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .unwrap();
        conn.batch_execute(&format!("CREATE DATABASE {building}"))
            .unwrap();
        {
            let mut tpl = PgConnection::establish(&url_for(&building)).unwrap();
            db::run_migrations(&mut tpl).expect("migrate template");
        }
        conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .unwrap();
    }
    conn.batch_execute("SELECT pg_advisory_unlock(7243001)")
        .unwrap();
}

use diesel::RunQueryDsl;

/// A database of one test, dropped with it.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// A pool on it.
    pub pool: db::Pool,
}

impl TestDb {
    /// Clones the migrated template into a fresh database.
    pub fn new() -> Self {
        Self::create(&format!(" TEMPLATE {}", template_name()))
    }

    /// A new database without any table (not migrated).
    pub fn empty() -> Self {
        Self::create("")
    }

    /// `CREATE DATABASE <fresh name><options>`, and a pool on it.
    fn create(options: &str) -> Self {
        let name = format!("contacts_t_{}", uuid::Uuid::new_v4().simple());
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}{options}"))
            .expect("create the test database");
        let url = url_for(&name);
        let pool = db::build_pool(&url, 20, &Default::default());
        Self { name, url, pool }
    }

    /// A direct connection, for asserting on rows.
    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to test db")
    }

    /// Runs a query returning one bigint (`SELECT count(*) AS n ...`).
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(sql)
            .get_result::<N>(&mut self.conn())
            .expect("count query")
            .n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A response, read whole.
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// Asserts a problem+json answer with `status` and `code`; returns the body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["code"], code, "body: {body}");
        assert_eq!(body["status"], status);
        assert!(
            body["title"].is_string() && body["detail"].is_string() && body["type"].is_string()
        );
        assert_eq!(
            body["request_id"].as_str(),
            self.header("x-request-id").as_deref(),
            "request_id echoes X-Request-Id"
        );
        body
    }

    /// Asserts the status; returns the JSON body (or Null when empty).
    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// The app under test with its database.
pub struct TestApp<S> {
    /// The test's database.
    pub db: TestDb,
    svc: S,
}

/// The app with the default JWT settings (HS256 with `SECRET`).
pub async fn spawn() -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    spawn_with(JwtConfig {
        secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await
}

/// The app with custom JWT settings.
pub async fn spawn_with(
    jwt: JwtConfig,
) -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    spawn_full(jwt, 20).await
}

/// The app with custom JWT settings and pool size.
pub async fn spawn_full(
    jwt: JwtConfig,
    pool_size: u32,
) -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let mut db = TestDb::new();
    db.pool = db::build_pool(&db.url, pool_size, &Default::default());
    let state = AppState::new(db.pool.clone(), TokenVerifier::new(&jwt).expect("keys"));
    let svc = test::init_service(app(state)).await;
    TestApp { db, svc }
}

/// The app with the default JWT settings, custom limits, and extra routes (e.g. a handler that
/// panics) registered inside the same middleware.
pub async fn spawn_custom(
    limits: contacts_api::config::Limits,
    extra: impl FnOnce(&mut actix_web::web::ServiceConfig),
) -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let mut db = TestDb::new();
    db.pool = db::build_pool(&db.url, 20, &limits);
    let jwt = JwtConfig {
        secret: Some(SECRET.into()),
        ..Default::default()
    };
    let verifier = TokenVerifier::new(&jwt).expect("keys");
    let state = AppState::with_limits(db.pool.clone(), verifier, limits);
    let svc = test::init_service(app(state).configure(extra)).await;
    TestApp { db, svc }
}

impl<S, B> TestApp<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    /// Sends a request and reads the whole response.
    pub async fn send(&self, req: TestRequest) -> Resp {
        self.send_request(req.to_request()).await
    }

    /// Sends a request without reading its body (a streaming response keeps running).
    pub async fn send_raw(&self, req: TestRequest) -> ServiceResponse<B> {
        test::call_service(&self.svc, req.to_request()).await
    }

    /// Sends a prepared request (e.g. with a custom payload) and reads the whole response.
    pub async fn send_request(&self, req: actix_http::Request) -> Resp {
        let res = test::call_service(&self.svc, req).await;
        let status = res.status();
        let headers = res.headers().clone();
        let body = test::read_body(res).await;
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A request with a bearer token and an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut req = TestRequest::default()
            .method(method)
            .uri(path)
            .insert_header(("authorization", format!("Bearer {token}")));
        if let Some(b) = body {
            req = req.set_json(b);
        }
        self.send(req).await
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, token, None).await
    }

    /// Session upsert.
    pub async fn upsert(&self, token: &str, chatbot: &str, session: &str, body: Value) -> Resp {
        let path = format!("/api/v1/chatbots/{chatbot}/sessions/{session}/contact");
        self.call(Method::PUT, &path, token, Some(body)).await
    }

    /// Upsert that must succeed; returns the contact.
    pub async fn upsert_ok(&self, token: &str, chatbot: &str, session: &str, body: Value) -> Value {
        let r = self.upsert(token, chatbot, session, body).await;
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::CREATED,
            "upsert failed: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }
}

/// A token for `account` with `scopes`.
pub fn token(account: i64, scopes: &str) -> String {
    token_for(account, "tester", scopes, None)
}

/// A token with every field chosen.
pub fn token_for(account: i64, sub: &str, scopes: &str, chatbot: Option<&str>) -> String {
    mint(&MintRequest {
        secret: SECRET,
        account_id: account,
        sub,
        scope: scopes,
        ttl_secs: 600,
        chatbot_id: chatbot,
        issuer: None,
        audience: None,
    })
    .unwrap()
}

/// A token signed with `key` under `alg` from raw claims, for hostile-token tests.
pub fn sign(
    claims: &Value,
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, key).unwrap()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Path of a test fixture.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The real binary, for tests that run it as a process.
pub const BIN: &str = env!("CARGO_BIN_EXE_contacts-api");

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
