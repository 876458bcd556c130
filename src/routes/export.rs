//! `GET /contacts/export`: every matching contact, streamed as CSV or NDJSON in keyset batches,
//! so memory stays flat whatever the row count and no connection is held between batches.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::rt::task::JoinHandle;
use actix_web::web::Bytes;
use actix_web::{get, web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Auth, Export};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Query2;
use crate::limits::{ExportSlot, Limiter};
use crate::models::rfc3339::Rfc3339;
use crate::models::Contact;
use crate::repo::audit;
use crate::repo::list::{self, ContactFilter, Position, Sort};
use crate::routes::filters::FilterParams;
use crate::routes::list::parse_sort;

/// Rows fetched per query.
const BATCH: i64 = 2000;

/// The CSV columns, in this order (a stable part of the contract).
pub const CSV_COLUMNS: [&str; 16] = [
    "id",
    "name",
    "email",
    "phone",
    "avatar_url",
    "country_code",
    "ip_address",
    "channel",
    "chatbot_id",
    "session_id",
    "payload",
    "sessions_count",
    "created_at",
    "updated_at",
    "last_seen_at",
    "version",
];

/// Options of the export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (default) or `ndjson`.
    #[param(schema_with = export_format)]
    pub format: Option<String>,
    /// Order of the rows, as in the list (default `-id`).
    #[param(schema_with = crate::openapi::fields::sort)]
    pub sort: Option<String>,
}

fn export_format() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .description(Some("`csv` (default) or `ndjson`."))
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["csv", "ndjson"]))
        .default(Some("csv".into()))
        .build()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Ndjson,
}

/// An optional text cell: empty when null, else neutralised.
fn text(v: &Option<String>) -> std::borrow::Cow<'_, str> {
    neutralise(v.as_deref().unwrap_or(""))
}

/// A cell that a spreadsheet would evaluate as a formula gets a leading `'` (OWASP CSV
/// injection guidance): `=`, `+`, `-`, `@`, tab and carriage return.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn write_csv(rows: &[Contact], header: bool) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(rows.len() * 256));
    let fail = |e: csv::Error| ApiError::internal(format!("csv: {e}"));
    if header {
        w.write_record(CSV_COLUMNS).map_err(fail)?;
    }
    // Cell by cell from borrowed text: no allocation per cell but for the rare neutralised one.
    let mut number = itoa::Buffer::new();
    for c in rows {
        w.write_field(number.format(c.id)).map_err(fail)?;
        let optional = [
            &c.name,
            &c.email,
            &c.phone,
            &c.avatar_url,
            &c.country_code,
            &c.ip_address,
        ];
        for cell in optional {
            w.write_field(text(cell).as_bytes()).map_err(fail)?;
        }
        w.write_field(neutralise(&c.channel).as_bytes())
            .map_err(fail)?;
        w.write_field(neutralise(&c.chatbot_id).as_bytes())
            .map_err(fail)?;
        w.write_field(text(&c.session_id).as_bytes())
            .map_err(fail)?;
        // A JSON object (the table's CHECK) starts with `{`: never a formula.
        w.write_field(c.payload.get()).map_err(fail)?;
        w.write_field(number.format(c.sessions_count))
            .map_err(fail)?;
        for t in [&c.created_at, &c.updated_at, &c.last_seen_at] {
            w.write_field(Rfc3339::new(t).as_str()).map_err(fail)?;
        }
        w.write_field(number.format(c.version)).map_err(fail)?;
        w.write_record(None::<&[u8]>).map_err(fail)?;
    }
    w.into_inner()
        .map_err(|e| ApiError::internal(format!("csv: {e}")))
}

fn write_ndjson(rows: &[Contact]) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(rows.len() * 320);
    for c in rows {
        serde_json::to_writer(&mut out, c).map_err(|e| ApiError::internal(e.to_string()))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The names of the filters in use.
fn filter_names(f: &ContactFilter) -> Vec<&'static str> {
    [
        ("q", f.q.is_some()),
        ("channel", f.channels.is_some()),
        ("chatbot_id", f.chatbots.is_some()),
        ("country_code", f.country_codes.is_some()),
        ("created_from", f.created_from.is_some()),
        ("created_to", f.created_to.is_some()),
        ("last_seen_from", f.last_seen_from.is_some()),
        ("last_seen_to", f.last_seen_to.is_some()),
        ("has_email", f.has_email.is_some()),
        ("has_phone", f.has_phone.is_some()),
        ("returning", f.returning.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, used)| used.then_some(name))
    .collect()
}

/// One batch, encoded, and where the next one starts.
struct Chunk {
    bytes: Bytes,
    after: Option<Position>,
    last: bool,
}

/// What every batch query of one export needs; cloned into each blocking task.
#[derive(Clone)]
struct Reader {
    pool: Pool,
    account: i64,
    filter: Arc<ContactFilter>,
    sort: Sort,
    format: Format,
}

impl Reader {
    /// Reads the batch after `after` and encodes it, both on the blocking pool, so that the
    /// worker thread only sends.
    async fn read(self, after: Option<Position>, header: bool) -> Result<Chunk, ApiError> {
        let pool = self.pool.clone();
        with_conn(&pool, move |conn| {
            let (account, sort) = (self.account, self.sort);
            let rows = list::page(conn, account, &self.filter, sort, after.as_ref(), BATCH)?;
            let bytes = match self.format {
                Format::Csv => write_csv(&rows, header)?,
                Format::Ndjson => write_ndjson(&rows)?,
            };
            Ok(Chunk {
                bytes: Bytes::from(bytes),
                after: rows.last().map(|c| sort.position(c)),
                last: (rows.len() as i64) < BATCH,
            })
        })
        .await
    }

    /// Starts reading the batch after `after`, so that it is read while the one before is
    /// sent. At most one batch waits like this: memory stays at two batches.
    fn prefetch(&self, after: Option<Position>) -> JoinHandle<Result<Chunk, ApiError>> {
        actix_web::rt::spawn(self.clone().read(after, false))
    }
}

/// The rest of an export: the batch being read, if any.
struct Rest {
    reader: Reader,
    pending: Option<JoinHandle<Result<Chunk, ApiError>>>,
    /// Held until the stream ends or the client goes away.
    _slot: ExportSlot,
}

/// Export contacts.
///
/// Every contact matching the list filters, streamed in `sort` order (default `-id`).
/// `format=csv`: RFC 4180 with CRLF line ends and a header row, columns `id, name, email, phone,
/// avatar_url, country_code, ip_address, channel, chatbot_id, session_id, payload (compact
/// JSON), sessions_count, created_at, updated_at, last_seen_at, version`; a text cell that starts
/// with `=`, `+`, `-`, `@`, tab or CR is prefixed with `'` against formula injection (so E.164
/// phones read `'+44...`). `format=ndjson`: one contact JSON per line, as the API returns it.
/// Rows are read in batches, so the export is not a single snapshot: a contact changed while
/// the export runs may appear in its old or new state. A failure after the first bytes ends
/// the stream early.
#[utoipa::path(
    tag = "contacts",
    params(ExportParams, FilterParams),
    responses(
        (status = 200, description = "The export, streamed; `Content-Disposition: attachment`.",
         content(
            (String = "text/csv", example = "id,name,email,phone,avatar_url,country_code,ip_address,channel,chatbot_id,session_id,payload,sessions_count,created_at,updated_at,last_seen_at,version\r\n1042,Ada Lovelace,ada@example.com,'+447700900123,,GB,203.0.113.9,whatsapp,support-bot,wa-447700900123,\"{\"\"plan\"\":\"\"pro\"\"}\",3,2026-11-01T09:00:00Z,2026-11-20T17:03:11Z,2026-11-20T17:03:11Z,7\r\n"),
            (String = "application/x-ndjson"),
         )),
    ),
    security(("bearer" = ["contacts:export"]))
)]
#[get("/contacts/export")]
pub async fn export_contacts(
    auth: Auth<Export>,
    pool: web::Data<Pool>,
    limiter: web::Data<Limiter>,
    params: Query2<ExportParams, FilterParams>,
) -> Result<HttpResponse, ApiError> {
    let Query2(p, f) = params;
    let format = match p.format.as_deref().unwrap_or("csv") {
        "csv" => Format::Csv,
        "ndjson" => Format::Ndjson,
        _ => {
            return Err(ApiError::InvalidParameter {
                field: "format".into(),
                message: "expected csv or ndjson".into(),
            })
        }
    };
    let (_, sort) = parse_sort(&p.sort)?;
    let filter = f.to_filter()?;
    let slot = limiter.export_slot(auth.0.account_id)?;
    // Audited before the first byte leaves: the filter names are recorded, never their values
    // (a `q` may be a person's name).
    let event_details = serde_json::json!({
        "format": if format == Format::Csv { "csv" } else { "ndjson" },
        "filters": filter_names(&filter),
    });
    let reader = Reader {
        pool: pool.get_ref().clone(),
        account: auth.0.account_id,
        filter: Arc::new(filter),
        sort,
        format,
    };
    // The first batch is read before answering, so an unavailable database is a clean 503 and
    // an export that never started leaves no audit row.
    let first = reader.clone().read(None, true).await?;
    let (account, actor) = (auth.0.account_id, auth.0.sub.clone());
    with_conn(&pool, move |conn| {
        let event = audit::Event::new(&actor, "contacts.exported", None).details(event_details);
        Ok(audit::record(conn, account, &event)?)
    })
    .await?;
    let rest = Rest {
        pending: (!first.last).then(|| reader.prefetch(first.after.clone())),
        reader,
        _slot: slot,
    };
    let rest = futures_util::stream::unfold(rest, |mut rest| async move {
        let chunk = match rest.pending.take()?.await {
            Ok(chunk) => chunk,
            Err(e) => Err(ApiError::internal(format!("export batch task: {e}"))),
        };
        match &chunk {
            Ok(c) if !c.last => rest.pending = Some(rest.reader.prefetch(c.after.clone())),
            Ok(_) => {}
            // Nothing is pending any more: the stream ends after this error.
            Err(e) => log::error!("export of account {} stopped: {e}", rest.reader.account),
        }
        Some((chunk.map(|c| c.bytes), rest))
    });
    let head = first.bytes;
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, ApiError>(head) }),
        rest,
    );
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8; header=present", "csv"),
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    let name = format!(
        "contacts-{}.{ext}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .streaming(body))
}
