//! `contacts-api seed`: realistic contacts for benchmarks and demos, written with `COPY` through
//! several connections at once.
//! Names, emails and phones of several countries; skewed channels and chatbots; some contacts
//! with nothing but a session; some returning with several sessions; a year of timestamps.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Duration, Utc};
use diesel::connection::SimpleConnection;
use diesel::pg::{CopyFormat, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::schema::{contact_sessions, contacts};

/// What to generate.
pub struct SeedPlan {
    /// Account to fill.
    pub account_id: i64,
    /// Contacts to create in it.
    pub contacts: u64,
    /// Deterministic seed.
    pub seed: u64,
}

/// SplitMix64: tiny, fast, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    /// An independent generator for chunk `k` of this one's stream.
    fn fork(self, k: u64) -> Rng {
        let mut r = Rng(self.0 ^ (k + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.0 = r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    /// Picks by weight (percent-like integers).
    fn weighted<'a>(&mut self, items: &[(&'a str, u64)]) -> &'a str {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut r = self.below(total);
        for (item, w) in items {
            if r < *w {
                return item;
            }
            r -= w;
        }
        items[0].0
    }
}

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "John",
    "Katherine",
    "Tim",
    "Radia",
    "Guido",
    "Hedy",
    "Edsger",
    "Sofia",
    "Mateo",
    "Amara",
    "Kenji",
    "Priya",
    "Olu",
    "Chen",
    "Fatima",
    "Lars",
    "Ines",
    "Jamal",
    "Yuki",
    "Noor",
    "Elena",
    "Tomás",
    "Zara",
    "Ravi",
    "Maya",
    "Omar",
    "Hana",
    "Diego",
    "Leila",
    "Arjun",
    "Emma",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "McCarthy",
    "Johnson",
    "Berners-Lee",
    "Perlman",
    "van Rossum",
    "Lamarr",
    "Dijkstra",
    "García",
    "Okafor",
    "Tanaka",
    "Sharma",
    "Adeyemi",
    "Wang",
    "Haddad",
    "Nilsson",
    "Moreau",
    "Kowalski",
    "Silva",
    "Nakamura",
    "Khan",
    "Petrova",
    "Müller",
    "Rossi",
    "Novak",
    "Jensen",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
    "example.com",
    "acme.io",
    "mail.de",
    "orange.fr",
    "hey.com",
];
const CHANNELS: &[(&str, u64)] = &[
    ("website", 45),
    ("whatsapp", 20),
    ("facebook", 10),
    ("instagram", 8),
    ("telegram", 5),
    ("api", 4),
    ("slack", 3),
    ("discord", 2),
    ("ios", 15),
    ("android", 10),
    ("pwa", 5),
    ("twitter", 3),
];
const CHATBOTS: &[(&str, u64)] = &[
    ("support-bot", 60),
    ("sales-bot", 25),
    ("faq-bot", 10),
    ("onboarding-bot", 5),
];
/// Country, E.164 prefix, national significant digits after the prefix.
const PHONES: &[(&str, &str, u32)] = &[
    ("GB", "+447700", 6),
    ("US", "+1202555", 4),
    ("DE", "+49151", 8),
    ("FR", "+336", 8),
    ("IN", "+9198", 8),
    ("BR", "+55119", 8),
    ("NG", "+234803", 7),
    ("JP", "+8190", 8),
];

/// Escapes a value for COPY's text format.
fn text(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("\\N"),
        Some(s) => {
            for ch in s.chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

#[derive(QueryableByName)]
struct Reserved {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Takes `n` ids from the contact sequence, one `nextval` each: unique whoever else (another
/// seed worker, a running server) takes ids meanwhile, though not always consecutive.
fn reserve_ids(conn: &mut PgConnection, n: i64) -> QueryResult<Vec<i64>> {
    let ids: Vec<Reserved> =
        diesel::sql_query("SELECT nextval('contacts_id_seq') AS id FROM generate_series(1, $1)")
            .bind::<BigInt, _>(n)
            .load(conn)?;
    Ok(ids.into_iter().map(|r| r.id).collect())
}

/// Rows of one chunk, in COPY text format.
fn chunk_rows(plan: &SeedPlan, rng: &mut Rng, ids: &[i64]) -> (String, String) {
    let mut cs = String::with_capacity(ids.len() * 300);
    let mut ss = String::with_capacity(ids.len() * 150);
    let now = Utc::now();
    let account = plan.account_id;
    for &id in ids {
        let channel = rng.weighted(CHANNELS);
        let chatbot = rng.weighted(CHATBOTS);
        let kind = rng.below(100);
        // 15% anonymous (session only), 25% name only, the rest with email and/or phone.
        let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
        let name = (kind >= 15).then(|| format!("{first} {last}"));
        let email = ((40..90).contains(&kind) || kind >= 95).then(|| {
            let local = format!("{}.{}{}", first, last, rng.below(10_000))
                .to_lowercase()
                .replace([' ', 'ü', 'í', 'á'], "");
            format!("{local}@{}", rng.pick(DOMAINS))
        });
        let (country, phone) = if kind >= 70 {
            let (cc, prefix, digits) = PHONES[rng.below(PHONES.len() as u64) as usize];
            let number = rng.below(10u64.pow(digits));
            (
                Some(cc),
                Some(format!("{prefix}{number:0width$}", width = digits as usize)),
            )
        } else {
            (None, None)
        };
        let ip = (rng.below(3) > 0).then(|| {
            format!(
                "{}.{}.{}.{}",
                1 + rng.below(223),
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            )
        });
        let sessions = match rng.below(100) {
            0..=69 => 1,
            70..=89 => 2,
            90..=96 => 3,
            _ => 4 + rng.below(5),
        };
        let created = now - Duration::seconds(rng.below(365 * 86_400) as i64);
        let span = (now - created).num_seconds().max(1) as u64;
        let last_seen = if sessions > 1 {
            created + Duration::seconds(rng.below(span) as i64)
        } else {
            created + Duration::seconds(rng.below(3_600.min(span)) as i64)
        };
        let session_id = format!("seed-{id}-0");
        let payload = format!(
            "{{\"plan\": \"{}\", \"score\": {}}}",
            ["free", "pro", "team"][rng.below(3) as usize],
            rng.below(100)
        );
        let _ = write!(cs, "{account}\t{id}\t");
        for v in [
            name.as_deref(),
            email.as_deref(),
            phone.as_deref(),
            None,
            country,
            ip.as_deref(),
        ] {
            text(&mut cs, v);
            cs.push('\t');
        }
        let _ = writeln!(
            cs,
            "{channel}\t{chatbot}\t{session_id}\t{payload}\t{sessions}\t{}\t{}\t{}\t1\t\\N",
            created.to_rfc3339(),
            last_seen.to_rfc3339(),
            last_seen.to_rfc3339()
        );
        for k in 0..sessions {
            let seen = if k == 0 {
                last_seen
            } else {
                created + Duration::seconds(k as i64)
            };
            let _ = write!(ss, "{account}\t{chatbot}\tseed-{id}-{k}\t{id}\t{channel}\t");
            text(&mut ss, ip.as_deref());
            let _ = writeln!(ss, "\t{}\t{}", created.to_rfc3339(), seen.to_rfc3339());
        }
    }
    (cs, ss)
}

fn write_all(w: &mut dyn Write, data: &str) -> QueryResult<()> {
    w.write_all(data.as_bytes())
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// Writes `plan.contacts` contacts with their sessions through `workers` connections to `url`
/// at once (PostgreSQL's index upkeep, not the generator, is what a seed waits for; one
/// connection keeps one core busy). `progress` is told the running total after each chunk.
pub fn seed(
    url: &str,
    plan: &SeedPlan,
    workers: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> QueryResult<u64> {
    let workers = workers.max(1);
    // Enough chunks for every worker to stay busy, at most 20,000 rows each.
    let chunk = plan.contacts.div_ceil(workers as u64 * 4).clamp(1, 20_000);
    let chunks = plan.contacts.div_ceil(chunk);
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let work = || -> QueryResult<()> {
        let mut conn = PgConnection::establish(url)
            .map_err(|e| diesel::result::Error::QueryBuilderError(Box::new(e)))?;
        // The stats triggers count each COPY once, by statement (migration 000007), instead of
        // once per row.
        conn.batch_execute("SET contacts.stats_by_statement = on")?;
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= chunks {
                return Ok(());
            }
            let n = chunk.min(plan.contacts - k * chunk);
            let ids = reserve_ids(&mut conn, n as i64)?;
            // Each chunk has its own generator: the same seed gives the same contacts however
            // the chunks fall to the workers.
            let mut rng =
                Rng(plan.seed ^ (plan.account_id as u64).wrapping_mul(0x9E37_79B9)).fork(k);
            let (cs, ss) = chunk_rows(plan, &mut rng, &ids);
            conn.transaction(|conn| {
                diesel::copy_from(contacts::table)
                    .from_raw_data(contacts::table, |w: &mut dyn Write| write_all(w, &cs))
                    .with_format(CopyFormat::Text)
                    .execute(conn)?;
                diesel::copy_from(contact_sessions::table)
                    .from_raw_data(contact_sessions::table, |w: &mut dyn Write| {
                        write_all(w, &ss)
                    })
                    .with_format(CopyFormat::Text)
                    .execute(conn)
            })?;
            progress(done.fetch_add(n, Ordering::Relaxed) + n);
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("seed worker panicked"))
            .collect::<QueryResult<Vec<()>>>()
    })?;
    // Folded now, so that the first stats read does not sum the deltas of every chunk (a
    // server that holds the fold right now folds them instead).
    let mut conn = PgConnection::establish(url)
        .map_err(|e| diesel::result::Error::QueryBuilderError(Box::new(e)))?;
    crate::repo::rollups::fold(&mut conn)?;
    Ok(done.into_inner())
}
