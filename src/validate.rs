//! Field rules of the contact (API.md "The contact"): each function checks and normalises one
//! field, returning the stored form or a message for the caller's `FieldError`.

use serde_json::{Map, Value};

/// Largest accepted `payload`, serialised as compact JSON.
pub const PAYLOAD_MAX_BYTES: usize = 16 * 1024;

/// Every ISO 3166-1 alpha-2 code officially assigned.
pub(crate) const ISO_3166_ALPHA2: &str =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH \
BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR \
GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR \
KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV \
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE \
RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL \
TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

mod stored_size;

type Rule<T> = Result<T, String>;

fn no_nul(s: &str) -> Rule<()> {
    if s.contains('\0') {
        Err("must not contain NUL characters".into())
    } else {
        Ok(())
    }
}

/// The whitespace that text fields are trimmed of: JSON's own (space, tab, CR, LF), and only
/// it, so that the OpenAPI patterns state exactly what is accepted (`^[ \t\r\n]*...[ \t\r\n]*$`,
/// see `openapi::fields`). Other Unicode spaces stay part of the value; other controls (U+000B,
/// U+000C, U+0085, which `str::trim` would also strip) are refused by the field rules.
pub fn trim_blank(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\r', '\n'])
}

/// Trims; empty means absent (`None`). `max` characters apply to the value as sent (edges
/// included) as the schemas' `maxLength` does; `name` and the short texts count the trimmed
/// value instead (their patterns bound it), see `max_trimmed`.
fn trimmed(s: &str, max: usize) -> Rule<Option<&str>> {
    no_nul(s)?;
    let t = trim_blank(s);
    if t.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(Some(t))
}

/// Like `trimmed`, but `max` counts the trimmed value.
fn max_trimmed(s: &str, max: usize) -> Rule<Option<&str>> {
    let t = trimmed(s, usize::MAX)?;
    if t.is_some_and(|t| t.chars().count() > max) {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(t)
}

/// Unicode noncharacters (U+FDD0–U+FDEF, U+xFFFE, U+xFFFF) are never text; U+10FFFF also
/// serves as the "no name" sort key, so a name must not contain it.
fn is_noncharacter(c: char) -> bool {
    let u = c as u32;
    (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
}

/// `name`: trimmed, 1–200 characters, no control characters or noncharacters.
pub fn name(s: &str) -> Rule<Option<String>> {
    let Some(t) = max_trimmed(s, 200)? else {
        return Ok(None);
    };
    if t.chars().any(|c| c.is_control() || is_noncharacter(c)) {
        return Err("must not contain control characters or Unicode noncharacters".into());
    }
    Ok(Some(t.to_string()))
}

/// A short free text (consent `source`, `text_version`): trimmed, 1–200 characters, no control
/// characters.
pub fn short_text(s: &str) -> Rule<Option<String>> {
    let Some(t) = max_trimmed(s, 200)? else {
        return Ok(None);
    };
    if t.chars().any(char::is_control) {
        return Err("must be 1 to 200 characters without control characters".into());
    }
    Ok(Some(t.to_string()))
}

/// `email`: trimmed, at most 254 characters, `local@domain` with a dotted domain.
pub fn email(s: &str) -> Rule<Option<String>> {
    let Some(t) = trimmed(s, 254)? else {
        return Ok(None);
    };
    let bad = || Err("not a valid email address".to_string());
    let Some((local, domain)) = t.rsplit_once('@') else {
        return bad();
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2);
    if local_ok && domain_ok {
        Ok(Some(t.to_string()))
    } else {
        bad()
    }
}

/// `country_code`: ISO 3166-1 alpha-2, returned upper case.
pub fn country_code(s: &str) -> Rule<Option<String>> {
    let Some(t) = trimmed(s, usize::MAX)? else {
        return Ok(None);
    };
    let up = t.to_ascii_uppercase();
    if up.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|c| c == up) {
        Ok(Some(up))
    } else {
        Err("not an ISO 3166-1 alpha-2 country code".into())
    }
}

/// `phone`: parsed with `region` as the hint for national numbers, returned in E.164.
pub fn phone(s: &str, region: Option<&str>) -> Rule<Option<String>> {
    let Some(t) = trimmed(s, 64)? else {
        return Ok(None);
    };
    let hint = region.and_then(|r| r.parse::<phonenumber::country::Id>().ok());
    if hint.is_none() && !t.starts_with('+') && !t.starts_with("00") {
        return Err(
            "not an international number (+<country code>...); send country_code to parse a \
             national number"
                .into(),
        );
    }
    let normalised = t.strip_prefix("00").map(|r| format!("+{r}"));
    let input = normalised.as_deref().unwrap_or(t);
    let e164 = match trunk_in_brackets(input) {
        Some(national) => national?,
        // Parsing (not the carrier-range check of `is_valid`) decides: ranges change faster
        // than metadata, and a runtime must not lose a contact over a newly allocated range.
        None => phonenumber::parse(hint, input)
            .map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
            .map_err(|_| "not a valid phone number".to_string())?,
    };
    if (8..=16).contains(&e164.len()) {
        Ok(Some(e164))
    } else {
        Err("not a valid phone number".into())
    }
}

/// `+44 (0) 7700 900123`: the bracketed `0` after the country code is the national trunk
/// prefix, written for callers inside the country. The parser kept it in some numbers
/// (`+4407700900123`, a different E.164 that no duplicate check would match) and dropped it in
/// others. Read instead as what it says: the national number `0 7700 900123` of the country
/// code's main region, whose own rules then keep the 0 (Italy) or drop it (the UK, Germany).
/// `None` when the number has no such prefix.
fn trunk_in_brackets(input: &str) -> Option<Rule<String>> {
    let rest = input.strip_prefix('+')?;
    let (code, national) = rest.split_once("(0)")?;
    let invalid = || Some(Err("not a valid phone number".to_string()));
    let code = code.trim_end_matches([' ', '-', '.']);
    if code.is_empty() || code.len() > 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return invalid();
    }
    let code: u16 = code.parse().ok()?;
    let Some(region) = phonenumber::metadata::DATABASE
        .by_code(&code)
        .and_then(|m| {
            m.first()
                .and_then(|m| m.id().parse::<phonenumber::country::Id>().ok())
        })
    else {
        return invalid();
    };
    match phonenumber::parse(Some(region), format!("0{national}")) {
        Ok(n) if n.code().value() == code => {
            Some(Ok(n.format().mode(phonenumber::Mode::E164).to_string()))
        }
        _ => invalid(),
    }
}

/// `ip_address`: IPv4 or IPv6, returned in canonical text form.
pub fn ip_address(s: &str) -> Rule<Option<String>> {
    let Some(t) = trimmed(s, usize::MAX)? else {
        return Ok(None);
    };
    t.parse::<std::net::IpAddr>()
        .map(|ip| Some(ip.to_string()))
        .map_err(|_| "not an IPv4 or IPv6 address".into())
}

/// `avatar_url`: absolute http(s) URL with a host, at most 2048 characters.
pub fn avatar_url(s: &str) -> Rule<Option<String>> {
    let Some(t) = trimmed(s, 2048)? else {
        return Ok(None);
    };
    if !avatar_url_shape(t) {
        return Err(
            "not an absolute http or https URL with a host name (no spaces, quotes or control \
             characters)"
                .into(),
        );
    }
    match url::Url::parse(t) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(Some(t.to_string()))
        }
        _ => Err("not an absolute http or https URL".into()),
    }
}

/// The `avatar_url` pattern of the OpenAPI document: `http(s)://`, a host name whose last label
/// starts with a letter, an optional port of up to 4 digits, then `/`, `?` or `#` and printable
/// characters (no space, `"`, controls, or characters outside the Basic Multilingual Plane).
fn avatar_url_shape(t: &str) -> bool {
    let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &t[8..]
    } else if lower.starts_with("http://") {
        &t[7..]
    } else {
        return false;
    };
    let end = rest.find([':', '/', '?', '#']).unwrap_or(rest.len());
    let (host, mut rest) = rest.split_at(end);
    let labels: Vec<&str> = host.split('.').collect();
    let labels_ok = labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !labels_ok
        || !labels
            .last()
            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        return false;
    }
    if let Some(after) = rest.strip_prefix(':') {
        let digits = after.find(['/', '?', '#']).unwrap_or(after.len());
        if !(1..=4).contains(&digits) || !after[..digits].bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        rest = &after[digits..];
    }
    rest.chars().all(|c| {
        let u = c as u32;
        (c.is_ascii_graphic() && c != '"')
            || (0xA1..=0xD7FF).contains(&u)
            || (0xE000..=0xFFFD).contains(&u)
    })
}

/// `channel`: a slug `[a-z0-9_-]{1,32}`; upper case input is lowered.
pub fn channel(s: &str) -> Rule<String> {
    no_nul(s)?;
    let t = trim_blank(s).to_ascii_lowercase();
    let ok = (1..=32).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(t)
    } else {
        Err("must match [a-z0-9_-]{1,32}".into())
    }
}

/// `chatbot_id` and `session_id`: 1–128 characters, no control characters, no `/`.
pub fn identifier(s: &str) -> Rule<String> {
    no_nul(s)?;
    let n = s.chars().count();
    if n == 0 || n > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if s.chars().any(|c| c.is_control() || c == '/') {
        return Err("must not contain control characters or '/'".into());
    }
    Ok(s.to_string())
}

/// Characters a `chatbot_id` may not start or end with: Unicode White_Space (what
/// `char::is_whitespace` matches; its controls are refused anyway). Spelled out so that the
/// OpenAPI pattern (`openapi::fields::chatbot_id`) states the same set.
pub const EDGE_SPACES: &[char] = &[
    ' ', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}',
    '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}',
    '\u{202f}', '\u{205f}', '\u{3000}',
];

/// `chatbot_id`: an identifier that the list filters can name unambiguously. The filters take
/// comma-separated ids, so no id holds a `,`; and no id starts or ends with a space, so that
/// `chatbot_id=a, b` is refused (400) instead of silently naming `" b"`. Values are never
/// trimmed: an id round-trips exactly or is refused.
pub fn chatbot_id(s: &str) -> Rule<String> {
    let id = identifier(s)?;
    if s.contains(',') {
        return Err("must not contain ',' (the list filters separate ids with commas)".into());
    }
    if s.starts_with(EDGE_SPACES) || s.ends_with(EDGE_SPACES) {
        return Err("must not start or end with a space".into());
    }
    Ok(id)
}

/// `payload`: a JSON object of at most 16 KiB (compact), without NUL characters.
pub fn payload(v: &Value) -> Rule<Map<String, Value>> {
    let Value::Object(map) = v else {
        return Err("must be a JSON object".into());
    };
    if has_nul(v) {
        return Err("must not contain NUL characters".into());
    }
    let size = stored_size::stored_len(v);
    if size > PAYLOAD_MAX_BYTES {
        return Err(format!(
            "must serialise to at most {PAYLOAD_MAX_BYTES} bytes (got {size})"
        ));
    }
    Ok(map.clone())
}

/// True when a key or string anywhere in `v` holds U+0000 (PostgreSQL cannot store it).
pub fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// RFC 7396 JSON Merge Patch of `patch` into `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("object");
    for (k, v) in patch_map {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Collects the field errors of one request so they are all reported at once.
#[derive(Default)]
pub struct Check {
    errors: Vec<crate::error::FieldError>,
}

impl Check {
    /// Applies `rule` to `value` when present; records the message on failure.
    pub fn opt<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        rule: impl FnOnce(&str) -> Rule<Option<T>>,
    ) -> Option<T> {
        match value.map(rule) {
            None => None,
            Some(Ok(v)) => v,
            Some(Err(m)) => {
                self.fail(field, m);
                None
            }
        }
    }

    /// Applies a rule that always yields a value; records the message on failure.
    pub fn req<T: Default>(
        &mut self,
        field: &str,
        value: &str,
        rule: impl FnOnce(&str) -> Rule<T>,
    ) -> T {
        rule(value).unwrap_or_else(|m| {
            self.fail(field, m);
            T::default()
        })
    }

    /// Records one failure.
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(crate::error::FieldError::new(field, message));
    }

    /// `Err(422)` listing every failure, if any.
    pub fn finish(self) -> Result<(), crate::error::ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(crate::error::ApiError::Validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_normalises_national_numbers_with_the_region_hint() {
        assert_eq!(
            phone("07700 900123", Some("GB")).unwrap().as_deref(),
            Some("+447700900123")
        );
        assert_eq!(
            phone("+44 7700 900123", None).unwrap().as_deref(),
            Some("+447700900123")
        );
        assert!(phone("07700 900123", None).is_err());
        assert!(phone("not a phone", Some("GB")).is_err());
    }

    #[test]
    fn email_rules() {
        assert!(email("ada@example.com").is_ok());
        assert_eq!(email("  ").unwrap(), None);
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example",
            "a..b@x.io",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &serde_json::json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, serde_json::json!({"a": "z", "c": {"d": "e"}}));
    }
}

#[cfg(test)]
mod phone_tests {
    #[test]
    fn a_trunk_prefix_in_brackets_after_the_country_code_is_the_national_zero() {
        for (input, e164) in [
            ("+44 (0) 7700 900123", "+447700900123"),
            ("+44(0)7700900123", "+447700900123"),
            ("0044 (0) 7700 900123", "+447700900123"),
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("+49 (0)30 123456", "+4930123456"),
            ("+33 (0)1 23 45 67 89", "+33123456789"),
            // Italy keeps its 0 in the international form.
            ("+39 (0)6 12345678", "+390612345678"),
            ("+1 (415) 555-0100", "+14155550100"),
        ] {
            assert_eq!(
                super::phone(input, None),
                Ok(Some(e164.to_string())),
                "{input}"
            );
        }
        for bad in [
            "+ (0) 7700 900123",
            "+4444 (0) 7700",
            "+44 (0)",
            "+4x (0) 7700 900123",
        ] {
            assert!(super::phone(bad, None).is_err(), "{bad}");
        }
    }
}
