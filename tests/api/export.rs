//! `GET /contacts/export`: CSV and NDJSON equal the list for the same filters and sort, RFC 4180
//! quoting, formula neutralisation, headers, exports larger than one batch, empty exports.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::list::{all, exec, ids, order, rows, seed, Row, ALL, SEEDS, SORTS};

/// The documented CSV header.
const HEADER: &str = "id,name,email,phone,avatar_url,country_code,ip_address,channel,chatbot_id,\
                      session_id,payload,sessions_count,created_at,updated_at,last_seen_at,version";

/// What a formula-looking cell must become.
fn neutralised(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// Parses a CSV export: the header and the records.
fn parse_csv(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body);
    let mut records = r
        .records()
        .map(|rec| rec.expect("valid CSV").iter().map(str::to_string).collect())
        .collect::<Vec<Vec<String>>>();
    assert!(!records.is_empty(), "the header row is always there");
    let header = records.remove(0);
    (header, records)
}

fn parse_ndjson(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).unwrap();
    if text.is_empty() {
        return Vec::new();
    }
    assert!(text.ends_with('\n'), "every line ends with LF");
    text.split_terminator('\n')
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Asserts that `record` holds exactly `contact` (as the list returned it), neutralised.
fn assert_record(record: &[String], contact: &Value) {
    assert_eq!(record.len(), 16, "{record:?}");
    let text = |k: &str| match &contact[k] {
        Value::Null => String::new(),
        Value::String(s) => neutralised(s),
        other => other.to_string(),
    };
    let columns: Vec<&str> = HEADER.split(',').collect();
    for (i, col) in columns.iter().enumerate() {
        let cell = &record[i];
        if *col == "payload" {
            let v: Value = serde_json::from_str(cell).expect("payload is JSON");
            assert_eq!(v, contact["payload"]);
        } else {
            assert_eq!(cell, &text(col), "column {col} of {contact}");
        }
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "column {col}: {cell:?} would be evaluated as a formula"
        );
    }
}

#[actix_web::test]
async fn export_needs_the_export_scope_and_a_known_format() {
    let app = spawn().await;
    seed(&app).await;
    for scopes in [
        "contacts:read",
        "contacts:read contacts:write contacts:upsert",
    ] {
        let tok = token(1, scopes);
        for format in ["csv", "ndjson"] {
            app.get(&format!("/api/v1/contacts/export?format={format}"), &tok)
                .await
                .problem(403, "insufficient_scope");
        }
    }
    let tok = token(1, "contacts:export");
    let r = app.get("/api/v1/contacts/export?format=csv", &tok).await;
    assert_eq!(r.status.as_u16(), 200);
    for (query, field) in [
        ("format=xml", "format"),
        ("format=CSV", "format"),
        ("format=", "format"),
        ("sort=bogus", "sort"),
        ("country_code=XX", "country_code"),
        ("created_from=yesterday", "created_from"),
        ("has_email=maybe", "has_email"),
        ("channel=BAD%20SLUG!", "channel"),
        ("unknown=1", "unknown"),
    ] {
        let r = app
            .get(&format!("/api/v1/contacts/export?{query}"), &tok)
            .await;
        crate::list::bad_param(&r, field);
    }
}

#[actix_web::test]
async fn ndjson_lines_equal_the_lists_contacts_for_the_same_filters_and_sort() {
    let app = spawn().await;
    seed(&app).await;
    let tok = token(1, ALL);
    let queries = [
        "",
        "sort=name",
        "sort=-name&has_email=true",
        "sort=created_at&channel=whatsapp,website",
        "sort=-last_seen_at&q=example",
        "sort=last_seen_at&country_code=gb,fr&returning=false",
        "sort=id&created_from=2026-01-02&created_to=2026-01-05T00:00:00Z",
        "sort=-created_at&chatbot_id=support-bot&has_phone=false",
    ];
    for query in queries {
        let r = app
            .get(
                &format!("/api/v1/contacts/export?format=ndjson&{query}"),
                &tok,
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{query}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/x-ndjson")
        );
        let cd = r.header("content-disposition").unwrap();
        assert!(
            cd.starts_with("attachment; filename=\"contacts-") && cd.ends_with(".ndjson\""),
            "{cd}"
        );
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        let lines = parse_ndjson(&r.body);
        let listed = all(&app, &tok, &format!("/api/v1/contacts?{query}"), 5).await;
        assert!(!listed.is_empty(), "{query}: the fixture has matches");
        assert_eq!(lines, listed, "{query}");
    }
}

#[actix_web::test]
async fn csv_has_the_header_rfc4180_quoting_and_the_lists_values() {
    let app = spawn().await;
    let seeded = seed(&app).await;
    let tok = token(1, ALL);
    // A name with a comma, a quote and a newline (only SQL can store the newline) and a payload
    // with quotes and commas.
    let tricky = "Smith, \"Jo\"\nJunior";
    exec(
        &app,
        &format!(
            "UPDATE contacts SET name = E'Smith, \"Jo\"\\nJunior', \
             payload = '{{\"plan\": \"pro, \\\"gold\\\"\", \"n\": [1, 2]}}', \
             avatar_url = 'https://cdn.example.com/a,b.png', ip_address = '2001:db8::1' \
             WHERE id = {}",
            seeded[0]
        ),
    );
    for query in [
        "",
        "sort=name",
        "sort=-created_at&has_email=true",
        "sort=last_seen_at&channel=whatsapp",
        "q=smith",
    ] {
        let r = app
            .get(&format!("/api/v1/contacts/export?format=csv&{query}"), &tok)
            .await;
        assert_eq!(r.status.as_u16(), 200, "{query}");
        let ct = r.header("content-type").unwrap();
        assert!(ct.starts_with("text/csv"), "{ct}");
        let cd = r.header("content-disposition").unwrap();
        assert!(
            cd.starts_with("attachment; filename=\"contacts-") && cd.ends_with(".csv\""),
            "{cd}"
        );
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(text.starts_with(&format!("{HEADER}\r\n")), "{text}");
        assert!(text.ends_with("\r\n"));
        let listed = all(&app, &tok, &format!("/api/v1/contacts?{query}"), 7).await;
        assert!(!listed.is_empty(), "{query}");
        // Lines end with CRLF; the only bare LF is the one inside the quoted name.
        let bare_lf = text
            .match_indices('\n')
            .filter(|(i, _)| !text[..*i].ends_with('\r'))
            .count();
        let has_tricky = listed.iter().any(|c| c["id"] == seeded[0]);
        assert_eq!(bare_lf, usize::from(has_tricky), "{query}");
        assert_eq!(text.matches("\r\n").count(), listed.len() + 1, "{query}");

        let (header, records) = parse_csv(&r.body);
        assert_eq!(header.join(","), HEADER);
        assert_eq!(records.len(), listed.len(), "{query}");
        for (rec, contact) in records.iter().zip(&listed) {
            assert_record(rec, contact);
        }
        if has_tricky {
            let rec = records
                .iter()
                .find(|r| r[0] == seeded[0].to_string())
                .unwrap();
            assert_eq!(rec[1], tricky, "the name round-trips");
            assert_eq!(rec[4], "https://cdn.example.com/a,b.png");
            assert_eq!(
                serde_json::from_str::<Value>(&rec[10]).unwrap(),
                json!({"plan": "pro, \"gold\"", "n": [1, 2]})
            );
            assert!(
                text.contains("\"Smith, \"\"Jo\"\"\nJunior\""),
                "RFC 4180 quoting"
            );
        }
    }
}

#[actix_web::test]
async fn formula_cells_are_neutralised() {
    let app = spawn().await;
    let seeded = seed(&app).await;
    let tok = token(1, ALL);
    // Chatbot and session ids can look like formulas too.
    let evil = app
        .upsert_ok(
            &tok,
            "@evil-bot",
            "-session",
            json!({"channel": "api", "name": "=1+2", "email": "-x@example.com"}),
        )
        .await;
    let r = app.get("/api/v1/contacts/export?format=csv", &tok).await;
    assert_eq!(r.status.as_u16(), 200);
    let (_, records) = parse_csv(&r.body);
    let rec = |id: i64| {
        records
            .iter()
            .find(|r| r[0] == id.to_string())
            .unwrap_or_else(|| panic!("{id} exported"))
            .clone()
    };
    let text = std::str::from_utf8(&r.body).unwrap();
    for (i, expected) in [
        (21, "'=HYPERLINK(\"http://evil.test\",\"x\")"),
        (22, "'@SUM(1)"),
        (23, "'-2+3"),
        (24, "'+1"),
        (4, "bob"),
        (7, "100% real"),
    ] {
        assert_eq!(rec(seeded[i])[1], expected, "name of seed {i}");
    }
    assert!(text.contains("\"'=HYPERLINK(\"\"http://evil.test\"\",\"\"x\"\")\""));
    assert_eq!(rec(seeded[0])[3], "'+447700900001", "E.164 phones");
    assert_eq!(rec(seeded[23])[3], "'+447700900004");
    assert_eq!(rec(seeded[3])[3], "", "no phone");
    let e = rec(evil["id"].as_i64().unwrap());
    assert_eq!(e[1], "'=1+2");
    assert_eq!(e[2], "'-x@example.com");
    assert_eq!(e[8], "'@evil-bot");
    assert_eq!(e[9], "'-session");
    for record in &records {
        for cell in record {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell:?}");
        }
    }
    // NDJSON is data, not a spreadsheet: values are as stored.
    let r = app.get("/api/v1/contacts/export?format=ndjson", &tok).await;
    let lines = parse_ndjson(&r.body);
    let line = lines.iter().find(|c| c["id"] == seeded[21]).unwrap();
    assert_eq!(line["name"], SEEDS[21].name.unwrap());
    let line = lines.iter().find(|c| c["id"] == seeded[0]).unwrap();
    assert_eq!(line["phone"], "+447700900001");
}

/// Inserts `n` contacts into `account` with one statement: ties on every sort key across the
/// 2000-row batches, some without a name.
fn bulk<S>(app: &TestApp<S>, account: i64, n: i64) {
    exec(
        app,
        &format!(
            "INSERT INTO contacts (account_id, name, email, phone, channel, chatbot_id, \
             session_id, sessions_count, created_at, last_seen_at, payload) \
             SELECT {account}, \
                    CASE WHEN g % 11 = 0 THEN NULL \
                         WHEN g % 2 = 0 THEN 'Name ' || (g % 13) ELSE 'name ' || (g % 13) END, \
                    'u' || g || '@example.com', \
                    CASE WHEN g % 4 = 0 THEN '+4477009' || lpad(g::text, 5, '0') END, \
                    CASE WHEN g % 3 = 0 THEN 'whatsapp' ELSE 'website' END, \
                    'bulk-bot', 's' || g, 1 + g % 3, \
                    timestamptz '2026-01-01T00:00:00Z' + (g % 5) * interval '1 hour', \
                    timestamptz '2026-02-01T00:00:00Z' + (g % 7) * interval '1 minute', \
                    jsonb_build_object('g', g) \
             FROM generate_series(1, {n}) AS g"
        ),
    );
}

#[actix_web::test]
async fn an_export_larger_than_one_batch_has_every_row_once_in_order() {
    let app = spawn().await;
    const N: usize = 4500;
    bulk(&app, 2, 700);
    bulk(&app, 1, N as i64);
    bulk(&app, 2, 700);
    let tok = token(1, ALL);
    let rows = rows(&app, 1);
    assert_eq!(rows.len(), N);
    let all_rows: Vec<&Row> = rows.iter().collect();
    let mine: HashSet<i64> = rows.iter().map(|r| r.id).collect();

    // CSV in the default order.
    let r = app.get("/api/v1/contacts/export?format=csv", &tok).await;
    assert_eq!(r.status.as_u16(), 200);
    let (header, records) = parse_csv(&r.body);
    assert_eq!(header.join(","), HEADER);
    assert_eq!(records.len(), N);
    let got: Vec<i64> = records.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(got.iter().copied().collect::<HashSet<_>>(), mine);
    assert_eq!(got, order(&all_rows, "-id"));
    assert_eq!(
        std::str::from_utf8(&r.body)
            .unwrap()
            .matches("\r\n")
            .count(),
        N + 1
    );

    // NDJSON in every order, with ties across the batch boundaries.
    for sort in SORTS {
        let r = app
            .get(
                &format!("/api/v1/contacts/export?format=ndjson&sort={sort}"),
                &tok,
            )
            .await;
        assert_eq!(r.status.as_u16(), 200);
        let lines = parse_ndjson(&r.body);
        assert_eq!(lines.len(), N, "sort={sort}");
        assert_eq!(ids(&lines), order(&all_rows, sort), "sort={sort}");
    }

    // Filtered: the same as the list, row for row.
    let query = "channel=whatsapp&has_phone=false&sort=name";
    let r = app
        .get(
            &format!("/api/v1/contacts/export?format=ndjson&{query}"),
            &tok,
        )
        .await;
    let lines = parse_ndjson(&r.body);
    let matching: Vec<&Row> = rows
        .iter()
        .filter(|r| r.channel == "whatsapp" && r.phone.is_none())
        .collect();
    assert_eq!(ids(&lines), order(&matching, "name"));
    let listed = all(&app, &tok, &format!("/api/v1/contacts?{query}"), 200).await;
    assert_eq!(lines, listed);

    // Exactly one batch's worth plus nothing: a boundary of the batching.
    exec(
        &app,
        "DELETE FROM contacts WHERE account_id = 1 AND id NOT IN \
         (SELECT id FROM contacts WHERE account_id = 1 ORDER BY id LIMIT 2000)",
    );
    let r = app.get("/api/v1/contacts/export?format=csv", &tok).await;
    let (_, records) = parse_csv(&r.body);
    assert_eq!(records.len(), 2000);
}

#[actix_web::test]
async fn an_empty_account_exports_the_header_only() {
    let app = spawn().await;
    seed(&app).await;
    let tok = token(9, "contacts:export");
    let r = app.get("/api/v1/contacts/export?format=csv", &tok).await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        format!("{HEADER}\r\n")
    );
    let r = app.get("/api/v1/contacts/export", &tok).await;
    assert_eq!(r.status.as_u16(), 200, "csv is the default");
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        format!("{HEADER}\r\n")
    );
    let r = app.get("/api/v1/contacts/export?format=ndjson", &tok).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(r.body.is_empty(), "{:?}", r.body);
    // A filter that matches nothing in a full account is the same.
    let tok = token(1, "contacts:export");
    let r = app
        .get(
            "/api/v1/contacts/export?format=ndjson&q=nothing-matches",
            &tok,
        )
        .await;
    assert!(r.body.is_empty());
    let r = app
        .get("/api/v1/contacts/export?format=csv&q=nothing-matches", &tok)
        .await;
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        format!("{HEADER}\r\n")
    );
}
