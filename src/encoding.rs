//! Request bodies in a content coding (RFC 9110 §8.4). `gzip` is decoded on the way in, lazily:
//! the decoder produces at most [`STEP`] bytes each time the body's reader asks for more, so
//! the operation's own body limit (`extract::Body`) bounds what is decompressed and a gzip bomb
//! is a 413 after `LIMIT` bytes, never a buffer of its full size. Any other coding, a stack of
//! codings, or a body that is not in the coding it claims is refused with 415
//! `unsupported_encoding` and `Accept-Encoding: gzip` (RFC 9110 §15.5.16, §12.5.3): a body is
//! never read as identity when the client said it is not.
//!
//! actix-web decodes only in its own extractors (`Json`, `Bytes`...), which the service does
//! not use; without this middleware every coding was read as identity.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{Error, HttpMessage};
use flate2::bufread::MultiGzDecoder;
use futures_util::Stream;

use crate::error::ApiError;

/// The codings the service decodes (`error` sends them in `Accept-Encoding` on a 415).
pub use crate::error::ACCEPTED_ENCODINGS as ACCEPTED;

/// Most decoded bytes produced per read of the body.
const STEP: usize = 16 * 1024;

/// What the request's `Content-Encoding` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
}

/// The request's coding: every `Content-Encoding` field line, as one list (RFC 9110 §5.3).
fn coding(headers: &HeaderMap) -> Result<Coding, ApiError> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::InvalidHeader("Content-Encoding"))?;
        codings.extend(
            value
                .split(',')
                .map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase())
                .filter(|c| !c.is_empty()),
        );
    }
    match codings.as_slice() {
        [] => Ok(Coding::Identity),
        // RFC 9110 §8.4.1: `identity` is not a coding, only its absence; `x-gzip` is `gzip`.
        [c] if c == "identity" => Ok(Coding::Identity),
        [c] if c == "gzip" || c == "x-gzip" => Ok(Coding::Gzip),
        [c] => Err(ApiError::UnsupportedEncoding(format!(
            "Content-Encoding {} is not supported; send the body as gzip or without \
             Content-Encoding",
            printable(c)
        ))),
        _ => Err(ApiError::UnsupportedEncoding(
            "stacked content codings are not supported; send the body as gzip once or without \
             Content-Encoding"
                .into(),
        )),
    }
}

/// A coding name as sent when it is a short token; anything else is not repeated.
fn printable(coding: &str) -> String {
    let token = coding.len() <= 32
        && coding
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        format!("`{coding}`")
    } else {
        "(an unknown coding)".into()
    }
}

/// Middleware: refuses the codings the service cannot decode; decodes `gzip` as the body is
/// read. When the body turns out not to be gzip, the request's answer is that 415, whatever the
/// body's reader made of the broken stream (it never reached a handler: only `Body` reads it).
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    match coding(req.headers()) {
        Err(e) => return Ok(req.error_response(e).map_into_right_body()),
        Ok(Coding::Identity) => return Ok(next.call(req).await?.map_into_left_body()),
        Ok(Coding::Gzip) => {}
    }
    let corrupt = Rc::new(Cell::new(false));
    let raw = req.take_payload();
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(Gunzip::new(raw, Rc::clone(&corrupt)));
    req.set_payload(Payload::Stream { payload: stream });
    // What the handlers see is the decoded body: the wire's length and coding no longer
    // describe it (a declared length would otherwise be checked against the decoded limit).
    req.headers_mut().remove(header::CONTENT_ENCODING);
    req.headers_mut().remove(header::CONTENT_LENGTH);
    let res = next.call(req).await?;
    if corrupt.get() {
        let e = ApiError::UnsupportedEncoding(
            "the body is not valid gzip, as its Content-Encoding says".into(),
        );
        let (req, _) = res.into_parts();
        return Ok(ServiceResponse::from_err(e, req).map_into_right_body());
    }
    Ok(res.map_into_left_body())
}

/// The compressed bytes received so far, read by the decoder. `WouldBlock` means "not yet":
/// flate2's readers keep their state across it and resume when more input arrives.
#[derive(Default)]
struct Input {
    chunks: VecDeque<Bytes>,
    eof: bool,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.chunks.front().is_some_and(Bytes::is_empty) {
            self.chunks.pop_front();
        }
        match self.chunks.front() {
            Some(chunk) => Ok(chunk),
            None if self.eof => Ok(&[]),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn consume(&mut self, n: usize) {
        if let Some(chunk) = self.chunks.front_mut() {
            let _ = chunk.split_to(n.min(chunk.len()));
        }
    }
}

/// The most compressed bytes read for one body: the largest operation's limit (the batch
/// upsert's 4 MiB) plus room for gzip's framing. The operation's own limit bounds the decoded
/// bytes; this bounds the input, which a stream of empty gzip members (20 bytes each, nothing
/// decoded) would otherwise make endless until the client timeout.
pub const MAX_COMPRESSED: usize = 4 * 1024 * 1024 + 64 * 1024;

/// The decoded body: gzip members (RFC 1952 allows several, concatenated) until the input ends.
struct Gunzip {
    raw: Payload,
    read: usize,
    decoder: MultiGzDecoder<Input>,
    done: bool,
    corrupt: Rc<Cell<bool>>,
}

impl Gunzip {
    fn new(raw: Payload, corrupt: Rc<Cell<bool>>) -> Self {
        Self {
            raw,
            read: 0,
            decoder: MultiGzDecoder::new(Input::default()),
            done: false,
            corrupt,
        }
    }
}

impl Stream for Gunzip {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let mut out = BytesMut::zeroed(STEP);
            match this.decoder.read(&mut out) {
                Ok(0) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Ok(n) => {
                    out.truncate(n);
                    return Poll::Ready(Some(Ok(out.freeze())));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match Pin::new(&mut this.raw).poll_next(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(chunk))) => {
                            this.read += chunk.len();
                            if this.read > MAX_COMPRESSED {
                                this.done = true;
                                return Poll::Ready(Some(Err(PayloadError::Overflow)));
                            }
                            this.decoder.get_mut().chunks.push_back(chunk)
                        }
                        // The transport's own failure (a client gone, a timeout) stays its own.
                        Poll::Ready(Some(Err(e))) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                        Poll::Ready(None) => this.decoder.get_mut().eof = true,
                    }
                }
                Err(_) => {
                    this.done = true;
                    this.corrupt.set(true);
                    return Poll::Ready(Some(Err(PayloadError::EncodingCorrupted)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::CONTENT_ENCODING,
                header::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn codings_are_read_as_one_list() {
        assert_eq!(coding(&headers(&[])).unwrap(), Coding::Identity);
        assert_eq!(coding(&headers(&["identity"])).unwrap(), Coding::Identity);
        assert_eq!(coding(&headers(&["GZip"])).unwrap(), Coding::Gzip);
        assert_eq!(coding(&headers(&["x-gzip"])).unwrap(), Coding::Gzip);
        assert_eq!(coding(&headers(&[" gzip ,"])).unwrap(), Coding::Gzip);
        for refused in [
            &["br"][..],
            &["gzip, gzip"],
            &["gzip", "gzip"],
            &["deflate"],
            &["gzip, identity"],
        ] {
            assert!(coding(&headers(refused)).is_err(), "{refused:?}");
        }
    }
}
