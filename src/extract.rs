//! Input extractors. `Body<T, LIMIT>` checks the content type, enforces the operation's size
//! limit while reading, and turns serde failures into precise problems (unknown field, wrong type
//! at `path`, malformed JSON); `Query<T>` does the same for query strings, naming the parameter.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::config::Limits;
use crate::error::ApiError;

/// Default body limit: 64 KiB, room for a contact with a full 16 KiB payload.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// A deserialised JSON body of at most `LIMIT` bytes.
pub struct Body<T, const LIMIT: usize = DEFAULT_LIMIT>(pub T);

/// `application/json`, or any `application/*+json` (e.g. `application/merge-patch+json`).
fn is_json(req: &HttpRequest) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: DeserializeOwned + 'static, const LIMIT: usize> FromRequest for Body<T, LIMIT> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        // A client that trickles its body must not hold a worker's memory and a socket forever.
        let deadline = req
            .app_data::<web::Data<Limits>>()
            .map_or(Limits::default().client_timeout, |l| l.client_timeout);
        Box::pin(async move {
            if !json {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be application/json".into(),
                ));
            }
            if declared.is_some_and(|n| n > LIMIT) {
                return Err(ApiError::PayloadTooLarge(LIMIT));
            }
            let read = async {
                let mut buf = web::BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|e| match e {
                        // The compressed input passed `encoding::MAX_COMPRESSED`.
                        actix_web::error::PayloadError::Overflow => {
                            ApiError::PayloadTooLarge(LIMIT)
                        }
                        e => ApiError::MalformedJson(e.to_string()),
                    })?;
                    if buf.len() + chunk.len() > LIMIT {
                        return Err(ApiError::PayloadTooLarge(LIMIT));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(buf)
            };
            let buf = actix_web::rt::time::timeout(deadline, read)
                .await
                .map_err(|_| ApiError::RequestTimeout)??;
            parse(&buf).map(Body)
        })
    }
}

/// Deserialises `bytes`, mapping each serde failure to its problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the body is empty".into()));
    }
    // Every body is an object: serde would otherwise fill a struct from an array by position.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(syntax_error(bytes).unwrap_or(ApiError::InvalidBody {
            field: None,
            detail: "the body must be a JSON object".into(),
        }));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = result.map_err(|e| {
        // Broken JSON is a 400 even when a shape error came first.
        if let Some(malformed) = syntax_error(bytes) {
            return malformed;
        }
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::MalformedJson(message)
            }
            _ => {
                if let Some(name) = unknown_field_name(&message) {
                    let field = match path.rsplit_once('.') {
                        Some((parent, _)) if path != "." => format!("{parent}.{name}"),
                        _ => name,
                    };
                    ApiError::UnknownField(field)
                } else if let Some(name) = missing_field_name(&message) {
                    let field = if path == "." {
                        name
                    } else {
                        format!("{path}.{name}")
                    };
                    ApiError::InvalidBody {
                        field: Some(field),
                        detail: message,
                    }
                } else {
                    let field = (path != ".").then_some(path);
                    ApiError::InvalidBody {
                        field,
                        detail: message,
                    }
                }
            }
        }
    })?;
    // Nothing but whitespace may follow the value.
    de.end()
        .map_err(|e| ApiError::MalformedJson(strip_position(&e.to_string())))?;
    Ok(value)
}

/// The syntax error of `bytes`, if they are not one JSON value in UTF-8.
fn syntax_error(bytes: &[u8]) -> Option<ApiError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Some(ApiError::MalformedJson(format!(
            "the body is not UTF-8: {e}"
        )));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .err()
        .map(|e| ApiError::MalformedJson(strip_position(&e.to_string())))
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// A deserialised query string; a bad or unknown parameter is a 400 naming it.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query))
    }
}

/// Parses a query string, naming the parameter at fault.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = url::form_urlencoded::parse(query.as_bytes());
    // PostgreSQL cannot store or compare U+0000: refuse it here, for every parameter at once.
    if let Some((name, _)) = pairs
        .clone()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ApiError::InvalidParameter {
            field: name.into_owned(),
            message: "must not contain NUL characters".into(),
        });
    }
    let de = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if let Some(name) = unknown_field_name(&message) {
            return ApiError::InvalidParameter {
                field: name,
                message: "unknown query parameter".into(),
            };
        }
        ApiError::InvalidParameter {
            field: if path == "." { "query".into() } else { path },
            message,
        }
    })
}

/// Two parameter sets from one query string (shared filters plus the operation's own); a
/// parameter neither documents is a 400.
pub struct Query2<A, B>(pub A, pub B);

/// The query parameters `T` documents, computed once per type (building utoipa's parameter
/// objects on every request showed up in profiles).
fn documented<T: utoipa::IntoParams + 'static>() -> std::sync::Arc<Vec<String>> {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock, RwLock};
    static CACHE: OnceLock<RwLock<HashMap<TypeId, Arc<Vec<String>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(names) = cache.read().expect("lock").get(&TypeId::of::<T>()) {
        return names.clone();
    }
    let names: Arc<Vec<String>> = Arc::new(
        T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect(),
    );
    cache
        .write()
        .expect("lock")
        .insert(TypeId::of::<T>(), names.clone());
    names
}

impl<A, B> FromRequest for Query2<A, B>
where
    A: DeserializeOwned + utoipa::IntoParams + 'static,
    B: DeserializeOwned + utoipa::IntoParams + 'static,
{
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let qs = req.query_string();
        let (a, b) = (documented::<A>(), documented::<B>());
        let unknown = url::form_urlencoded::parse(qs.as_bytes())
            .map(|(k, _)| k.into_owned())
            .find(|k| !a.iter().chain(b.iter()).any(|n| n == k));
        std::future::ready(match unknown {
            Some(field) => Err(ApiError::InvalidParameter {
                field,
                message: "unknown query parameter".into(),
            }),
            None => parse_query(qs).and_then(|a| parse_query(qs).map(|b| Query2(a, b))),
        })
    }
}

/// An integer sent as a JSON integer or as a number without a fraction (`3.0`), which JSON
/// Schema counts as an integer too (so does the OpenAPI document, and clients that write every
/// number as a float).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integral(pub i64);

impl<'de> serde::Deserialize<'de> for Integral {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Integral;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Integral, E> {
                Ok(Integral(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Integral, E> {
                i64::try_from(v)
                    .map(Integral)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Integral, E> {
                // ±2^63 (what i64::MIN / MAX become as f64) is where an out-of-range integer
                // literal lands when parsed as a float: exclusive bounds refuse it.
                if v.fract() == 0.0 && v > i64::MIN as f64 && v < i64::MAX as f64 {
                    Ok(Integral(v as i64))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `deserialize_with` for `Vec<i64>` fields that take [`Integral`] values.
pub fn integral_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    let v: Vec<Integral> = serde::Deserialize::deserialize(d)?;
    Ok(v.into_iter().map(|i| i.0).collect())
}

/// `deserialize_with` for `Option<Vec<i64>>` fields that take [`Integral`] values.
pub fn integral_opt_vec<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<i64>>, D::Error> {
    let v: Option<Vec<Integral>> = serde::Deserialize::deserialize(d)?;
    Ok(v.map(|v| v.into_iter().map(|i| i.0).collect()))
}

/// `deserialize_with` for `Option<i32>` fields that take [`Integral`] values.
pub fn integral_opt_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let v: Option<Integral> = serde::Deserialize::deserialize(d)?;
    v.map(|i| {
        i32::try_from(i.0).map_err(|_| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Signed(i.0),
                &"an integer in the i32 range",
            )
        })
    })
    .transpose()
}
