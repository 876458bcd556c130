//! The size of a payload as PostgreSQL will store it, measured the way migration 000012's
//! `contacts_payload_bytes` measures it: compact JSON, numbers as `numeric` prints them. serde
//! writes `1e300` in 5 bytes, PostgreSQL stores its 301 digits: measured by serde alone, a
//! payload of a few hundred bytes passed the request rule and failed the stored one (inside a
//! batch's claim, the whole batch).

use serde_json::Value;

/// Bytes of `v` as compact JSON with numbers in PostgreSQL's `numeric` text form.
pub fn stored_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(b) => 4 + usize::from(!b),
        Value::Number(n) => numeric_len(&n.to_string()),
        Value::String(s) => string_len(s),
        Value::Array(items) => {
            2 + items.iter().map(stored_len).sum::<usize>() + items.len().saturating_sub(1)
        }
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| string_len(k) + 1 + stored_len(v))
                .sum::<usize>()
                + map.len().saturating_sub(1)
        }
    }
}

/// A JSON string's length with the escapes serde and PostgreSQL both write.
fn string_len(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

/// Length of `numeric`'s output for the JSON number `text` (`-12.5e3` -> `-12500`): the
/// digits moved by the exponent, the scale being the fraction's digits minus the exponent.
fn numeric_len(text: &str) -> usize {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let point = int.len() as i64 + exp;
    let scale = (frac.len() as i64 - exp).max(0) as usize;
    let int_len = if point <= 0 {
        1
    } else {
        let point = point as usize;
        let zeros = digits
            .iter()
            .take(point)
            .take_while(|&&d| d == b'0')
            .count();
        (point - zeros.min(point - 1)).max(1)
    };
    let all_zero = digits.iter().all(|&d| d == b'0');
    usize::from(negative && !all_zero) + int_len + if scale > 0 { 1 + scale } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::{numeric_len, stored_len};
    use serde_json::json;

    #[test]
    fn numbers_as_postgresql_prints_them() {
        for (text, pg) in [
            ("0", "0"),
            ("12", "12"),
            ("-12", "-12"),
            ("1.5", "1.5"),
            ("0.001", "0.001"),
            ("1e300", &format!("1{}", "0".repeat(300))),
            ("1.5e3", "1500"),
            ("1.5e-7", "0.00000015"),
            ("-2.25e1", "-22.5"),
            ("-0.0", "0.0"),
        ] {
            assert_eq!(numeric_len(text), pg.len(), "{text}");
        }
    }

    #[test]
    fn compact_json_with_escapes() {
        let v = json!({"a": [1, 2, {"b": [], "c": {}}], "d": "x, y: z\n\"", "e": null, "f": false});
        assert_eq!(stored_len(&v), serde_json::to_string(&v).unwrap().len());
        assert_eq!(stored_len(&json!({"a": 1e300})), 6 + 301);
    }
}
