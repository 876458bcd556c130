//! `GET /contacts/stats`: the success metrics of the contact base, restricted by the list
//! filters.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, Read};
use crate::db::{with_conn, Pool};
use crate::error::ApiError;
use crate::extract::Query2;
use crate::repo::stats::{self, Interval};
use crate::routes::filters::{time, FilterParams};

/// Most growth buckets in one answer.
const MAX_BUCKETS: usize = 1000;

/// The growth series of `GET /contacts/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Growth bucket: `day` (default), `week` (ISO weeks from Monday) or `month`, in UTC.
    #[param(schema_with = interval)]
    pub interval: Option<String>,
    /// Start of the growth series (RFC 3339 or YYYY-MM-DD), rounded down to its bucket;
    /// default: 30 days, 12 weeks or 12 months before `to`.
    #[param(schema_with = from_schema)]
    pub from: Option<String>,
    /// End of the growth series, exclusive; default: now.
    #[param(schema_with = to_schema)]
    pub to: Option<String>,
}

fn from_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    crate::openapi::fields::time(
        "Start of the growth series, rounded down to its bucket; before `to`, at most 1000 \
         buckets earlier (else 400); default: 30 days, 12 weeks or 12 months before `to`.",
    )
}

fn to_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    crate::openapi::fields::time("End of the growth series, exclusive; default: now.")
}

fn interval() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .description(Some(
            "Growth bucket: `day` (default), `week` (ISO weeks from Monday) or `month`, in UTC.",
        ))
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["day", "week", "month"]))
        .default(Some("day".into()))
        .build()
}

/// Contacts of one channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelCount {
    /// Channel of the contact's latest session.
    pub channel: String,
    /// Contacts.
    pub count: i64,
}

/// Contacts of one chatbot.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatbotCount {
    /// Chatbot of the contact's latest session.
    pub chatbot_id: String,
    /// Contacts.
    pub count: i64,
}

/// New contacts in one bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the bucket (UTC).
    pub start: DateTime<Utc>,
    /// Contacts created in it.
    pub count: i64,
}

/// New contacts per bucket, empty buckets included.
#[derive(Debug, Serialize, ToSchema)]
pub struct Growth {
    /// `day`, `week` or `month`.
    pub interval: String,
    /// Start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the series (exclusive).
    pub to: DateTime<Utc>,
    /// One entry per bucket, oldest first.
    pub buckets: Vec<Bucket>,
}

/// Shares of `total` (0 when there are no contacts).
#[derive(Debug, Serialize, ToSchema)]
pub struct Rates {
    /// with_email / total.
    pub email: f64,
    /// with_phone / total.
    pub phone: f64,
    /// with_email_or_phone / total.
    pub email_or_phone: f64,
    /// complete / total.
    pub complete: f64,
    /// returning / total.
    pub returning: f64,
}

/// The metrics.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "total": 1200, "with_email": 660, "with_phone": 360, "with_email_or_phone": 840,
    "complete": 120, "returning": 360, "avg_sessions_per_contact": 1.45,
    "rates": {"email": 0.55, "phone": 0.3, "email_or_phone": 0.7, "complete": 0.1, "returning": 0.3},
    "by_channel": [{"channel": "website", "count": 540}, {"channel": "whatsapp", "count": 240}],
    "by_chatbot": [{"chatbot_id": "support-bot", "count": 720}],
    "growth": {"interval": "month", "from": "2026-09-01T00:00:00Z", "to": "2026-11-24T10:15:00Z",
               "buckets": [{"start": "2026-09-01T00:00:00Z", "count": 310}, {"start": "2026-10-01T00:00:00Z", "count": 0}, {"start": "2026-11-01T00:00:00Z", "count": 402}]}
}))]
pub struct ContactStats {
    /// Matching contacts.
    pub total: i64,
    /// With an email.
    pub with_email: i64,
    /// With a phone.
    pub with_phone: i64,
    /// With an email or a phone.
    pub with_email_or_phone: i64,
    /// With name, email and phone.
    pub complete: i64,
    /// With more than one session.
    pub returning: i64,
    /// Sessions (conversations) per contact, on average.
    pub avg_sessions_per_contact: f64,
    /// The capture and return rates.
    pub rates: Rates,
    /// Contacts per channel, most first.
    pub by_channel: Vec<ChannelCount>,
    /// Contacts per chatbot, most first.
    pub by_chatbot: Vec<ChatbotCount>,
    /// New contacts over time.
    pub growth: Growth,
}

fn start_of(interval: Interval, t: DateTime<Utc>) -> DateTime<Utc> {
    let d = t.date_naive();
    let day = match interval {
        Interval::Day => d,
        Interval::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
        Interval::Month => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("first of month"),
    };
    day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

fn next(interval: Interval, t: DateTime<Utc>) -> DateTime<Utc> {
    match interval {
        Interval::Day => t + Duration::days(1),
        Interval::Week => t + Duration::weeks(1),
        Interval::Month => t.checked_add_months(Months::new(1)).expect("in range"),
    }
}

fn ratio(part: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// Contact statistics.
///
/// For the contacts matching the list filters: `total`, `with_email`, `with_phone`,
/// `with_email_or_phone`, `complete` (name, email and phone), `returning` (more than one
/// session), `avg_sessions_per_contact`, their `rates`, `by_channel` and `by_chatbot` (of each
/// contact's latest session, most first), and `growth`: contacts created per `interval` bucket
/// from `from` (rounded down to its bucket) to `to`, empty buckets included, in UTC. Exact for
/// the data at the time of the request: read from per-day rollups (plus the changes that
/// triggers recorded in the same transaction as every write and that are not folded into them
/// yet) when the filters are channel, chatbot and creation bounds at UTC midnight (and `to` is
/// omitted or at midnight); counted from the contacts otherwise.
#[utoipa::path(
    tag = "contacts",
    params(StatsParams, FilterParams),
    responses((status = 200, description = "The metrics (zeros for an empty account).", body = ContactStats)),
    security(("bearer" = ["contacts:read"]))
)]
#[get("/contacts/stats")]
pub async fn get_contact_stats(
    auth: Auth<Read>,
    pool: web::Data<Pool>,
    params: Query2<StatsParams, FilterParams>,
) -> Result<HttpResponse, ApiError> {
    let Query2(p, f) = params;
    let interval = match p.interval.as_deref().unwrap_or("day") {
        "day" => Interval::Day,
        "week" => Interval::Week,
        "month" => Interval::Month,
        _ => {
            return Err(ApiError::InvalidParameter {
                field: "interval".into(),
                message: "expected day, week or month".into(),
            })
        }
    };
    let given_to = time("to", &p.to)?;
    let to = given_to.unwrap_or_else(Utc::now);
    let from = match time("from", &p.from)? {
        Some(t) => t,
        None => match interval {
            Interval::Day => to - Duration::days(29),
            Interval::Week => to - Duration::weeks(11),
            Interval::Month => to.checked_sub_months(Months::new(11)).unwrap_or(to),
        },
    };
    let from = start_of(interval, from);
    if from >= to {
        return Err(ApiError::InvalidParameter {
            field: "from".into(),
            message: "must be before `to`".into(),
        });
    }
    let mut starts = vec![from];
    while let Some(last) = starts.last().copied() {
        let n = next(interval, last);
        if n >= to {
            break;
        }
        if starts.len() == MAX_BUCKETS {
            return Err(ApiError::InvalidParameter {
                field: "from".into(),
                message: format!("the series would exceed {MAX_BUCKETS} buckets"),
            });
        }
        starts.push(n);
    }
    let filter = f.to_filter()?;
    let account = auth.0.account_id;
    let rows = with_conn(&pool, move |conn| {
        match stats::rows_from_rollups(conn, account, &filter, interval, from, given_to)? {
            Some(rows) => Ok(rows),
            None => Ok(stats::rows(conn, account, &filter, interval, from, to)?),
        }
    })
    .await?;

    let mut out = ContactStats {
        total: 0,
        with_email: 0,
        with_phone: 0,
        with_email_or_phone: 0,
        complete: 0,
        returning: 0,
        avg_sessions_per_contact: 0.0,
        rates: Rates {
            email: 0.0,
            phone: 0.0,
            email_or_phone: 0.0,
            complete: 0.0,
            returning: 0.0,
        },
        by_channel: Vec::new(),
        by_chatbot: Vec::new(),
        growth: Growth {
            interval: p.interval.unwrap_or_else(|| "day".into()),
            from,
            to,
            buckets: starts
                .iter()
                .map(|s| Bucket {
                    start: *s,
                    count: 0,
                })
                .collect(),
        },
    };
    for r in rows {
        match r.grouping {
            7 => {
                out.total = r.total;
                out.with_email = r.with_email;
                out.with_phone = r.with_phone;
                out.with_email_or_phone = r.with_email_or_phone;
                out.complete = r.complete;
                out.returning = r.returning;
                out.avg_sessions_per_contact = ratio(r.sessions, r.total);
            }
            3 => out.by_channel.push(ChannelCount {
                channel: r.channel.unwrap_or_default(),
                count: r.total,
            }),
            5 => out.by_chatbot.push(ChatbotCount {
                chatbot_id: r.chatbot_id.unwrap_or_default(),
                count: r.total,
            }),
            6 => {
                if let Some(b) = r
                    .bucket
                    .and_then(|t| out.growth.buckets.iter_mut().find(|b| b.start == t))
                {
                    b.count = r.total;
                }
            }
            _ => {}
        }
    }
    out.rates = Rates {
        email: ratio(out.with_email, out.total),
        phone: ratio(out.with_phone, out.total),
        email_or_phone: ratio(out.with_email_or_phone, out.total),
        complete: ratio(out.complete, out.total),
        returning: ratio(out.returning, out.total),
    };
    out.by_channel
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.channel.cmp(&b.channel)));
    out.by_chatbot
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.chatbot_id.cmp(&b.chatbot_id)));
    Ok(HttpResponse::Ok().json(out))
}
