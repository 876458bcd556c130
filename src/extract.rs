//! Input extractors. `Body<T, LIMIT>` checks the content type, enforces the operation's size
//! limit while reading, and turns serde failures into precise problems (unknown field, wrong type
//! at `path`, malformed JSON); `Query<T>` does the same for query strings, naming the parameter.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

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
        Box::pin(async move {
            if !json {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be application/json".into(),
                ));
            }
            if declared.is_some_and(|n| n > LIMIT) {
                return Err(ApiError::PayloadTooLarge(LIMIT));
            }
            let mut buf = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::MalformedJson(e.to_string()))?;
                if buf.len() + chunk.len() > LIMIT {
                    return Err(ApiError::PayloadTooLarge(LIMIT));
                }
                buf.extend_from_slice(&chunk);
            }
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
