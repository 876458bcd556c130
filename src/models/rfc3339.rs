//! Timestamps as RFC 3339 text, byte for byte what chrono's `Serialize` writes (UTC, `Z`,
//! `SecondsFormat::AutoSi`: no fraction, or 3, 6 or 9 digits), without going through
//! `core::fmt`. A page of 50 contacts formats 150 timestamps; through chrono's `Display` they
//! were ~9% of the server's CPU on a list request (perf, README "Performance").

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serializer;

/// A formatted timestamp, on the stack. The longest chrono writes is 33 bytes
/// (`+262143-12-31T23:59:59.999999999Z`).
pub struct Rfc3339 {
    buf: [u8; 40],
    len: usize,
}

impl Rfc3339 {
    /// Formats `t`.
    pub fn new(t: &DateTime<Utc>) -> Self {
        let mut out = Rfc3339 {
            buf: [0; 40],
            len: 0,
        };
        let (year, nanos) = (t.year(), t.nanosecond());
        // Years that need a sign or five digits, and leap seconds (nanos >= 1e9), are rare
        // enough to leave to chrono itself.
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            let _ = write!(out, "{}", t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            return out;
        }
        out.digits(year as u32, 4);
        out.push(b'-');
        out.digits(t.month(), 2);
        out.push(b'-');
        out.digits(t.day(), 2);
        out.push(b'T');
        out.digits(t.hour(), 2);
        out.push(b':');
        out.digits(t.minute(), 2);
        out.push(b':');
        out.digits(t.second(), 2);
        if nanos != 0 {
            out.push(b'.');
            if nanos % 1_000_000 == 0 {
                out.digits(nanos / 1_000_000, 3);
            } else if nanos % 1_000 == 0 {
                out.digits(nanos / 1_000, 6);
            } else {
                out.digits(nanos, 9);
            }
        }
        out.push(b'Z');
        out
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation, or chrono's own (UTF-8) output, were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// `n` as exactly `width` decimal digits, zero-padded (`n` has no more digits than that).
    fn digits(&mut self, mut n: u32, width: usize) {
        for i in (0..width).rev() {
            self.buf[self.len + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += width;
    }
}

impl std::fmt::Write for Rfc3339 {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `#[serde(serialize_with = "rfc3339::serialize")]`: the same string chrono's `Serialize` writes.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(Rfc3339::new(t).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chrono_text(t: &DateTime<Utc>) -> String {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn matches_chrono_for_every_fraction_shape_and_year_range() {
        let nanos = [
            0,
            1,
            999,
            1_000,
            120_000,
            815_660_000,
            815_000_000,
            100_000_000,
            999_999_999,
            999_999_000,
            5_000_000,
            1_500_000_000, // a leap second
        ];
        let mut checked = 0;
        for year in [-44, 0, 1, 9, 99, 999, 1970, 2000, 2026, 9999, 10000, 262142] {
            for (month, day) in [(1, 1), (2, 28), (12, 31)] {
                let base = Utc.with_ymd_and_hms(year, month, day, 23, 59, 59).unwrap();
                for n in nanos {
                    let Some(t) = base
                        .naive_utc()
                        .date()
                        .and_hms_nano_opt(23, 59, 59, n)
                        .map(|d| d.and_utc())
                    else {
                        continue;
                    };
                    assert_eq!(Rfc3339::new(&t).as_str(), chrono_text(&t), "{t:?}");
                    checked += 1;
                }
            }
        }
        // A spread of ordinary instants, every second digit and month length included.
        let mut t = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap();
        for i in 0..20_000i64 {
            t += chrono::Duration::microseconds(i * 7_919_311 + 13);
            assert_eq!(Rfc3339::new(&t).as_str(), chrono_text(&t));
            checked += 1;
        }
        assert!(checked > 20_300);
    }
}
