//! The edge of HTTP/1: every request head is examined before hyper parses it, so that a head
//! hyper would refuse on its own (with a bare 400, 414 or 431 and no body) is answered in the
//! AWS error format instead.
//!
//! [`GuardedIo`] sits between the socket and hyper. It reads each request head with `httparse`
//! (the parser hyper uses, with hyper's settings) and applies the checks hyper applies after
//! parsing (Content-Length, Transfer-Encoding, the URI), plus Kiln's own limits on the head
//! and the URI. A head that passes is handed to hyper unchanged, and the body that follows it
//! is passed through by its framing (Content-Length or chunked), so the next head is found
//! where hyper will look for it. A head that fails is never shown to hyper: in its place hyper
//! reads a synthetic `GET` on a path only this process knows, with `Connection: close`, and
//! then nothing more. The connection's service answers that request with the refusal
//! ([`refusal`]), after the responses to earlier pipelined requests, and hyper closes the
//! connection after it.
//!
//! HTTP/2 connections (recognised by their preface) are passed through untouched: HTTP/2
//! framing errors are answered by the h2 crate with stream or connection resets, which carry
//! no HTTP response to shape.

use crate::request_id::RequestIds;
use crate::server::{protocol_error, Body};
use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Response, StatusCode};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest request head (request line and headers) accepted. SDK requests, SigV4 headers
/// included, are under 2 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The longest request target accepted. The longest the API needs is a tag operation's
/// percent-encoded ARN, a few hundred bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header fields a head may have (hyper's own default).
pub const MAX_HEADERS: usize = 100;

/// The longest chunk-size line of a chunked body that is followed; anything longer is left to
/// hyper, which refuses it as a body error.
const MAX_CHUNK_LINE: usize = 4096;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a request head was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn bad(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "ClientException",
            message: message.into(),
        }
    }

    fn head_too_large(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code: "RequestHeaderFieldsTooLargeException",
            message: message.into(),
        }
    }

    fn uri_too_long(length: usize) -> Refusal {
        Refusal {
            status: StatusCode::URI_TOO_LONG,
            code: "RequestUriTooLongException",
            message: format!(
                "the request target is {length} bytes or more; the limit is {MAX_URI_BYTES} bytes"
            ),
        }
    }
}

/// The path of the synthetic request that stands for a refused head: random per process, so
/// no client request can be taken for it.
fn synthetic_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| format!("/.kiln-refused-{:032x}", rand::random::<u128>()))
}

fn synthetic_request() -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nhost: kiln\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        synthetic_path()
    )
    .into_bytes()
}

/// Where the connection's refusal waits for its synthetic request.
pub type Verdict = Arc<Mutex<Option<Refusal>>>;

/// Answers `request` with `next`, unless it is the synthetic request of a refused head; marks
/// answers after which hyper closes the connection.
pub(crate) async fn answer<B, F, Fut>(
    verdict: &Verdict,
    request: Request<B>,
    next: F,
) -> Response<Body>
where
    F: FnOnce(Request<B>) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    if let Some(refused) = refusal(verdict, &request) {
        return refused;
    }
    let close = closes_after(&request);
    let http2 = request.version() == hyper::Version::HTTP_2;
    let mut response = next(request).await;
    if http2 {
        // HTTP/2 has no Connection header (hyper would drop it with a warning); a stream ends
        // on its own.
        response.headers_mut().remove(CONNECTION);
    } else if close {
        response = closing(response);
    }
    response
}

/// If `request` is the synthetic request of a refused head on this connection, the AWS-shaped
/// answer to the refused head (with `Connection: close`).
fn refusal<B>(verdict: &Verdict, request: &Request<B>) -> Option<Response<Body>> {
    if request.uri().path() != synthetic_path() {
        return None;
    }
    let refused = verdict.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    tracing::debug!(status = %refused.status, message = %refused.message, "request head refused");
    Some(closing(protocol_error(
        refused.status,
        refused.code,
        &refused.message,
        &REQUEST_IDS.get_or_init(RequestIds::default).next_id(),
    )))
}

/// Ids for refused requests, which never reach the server's handler.
static REQUEST_IDS: OnceLock<RequestIds> = OnceLock::new();

/// Marks a response after which the server closes the connection (its request's body was not
/// read to the end, or cannot be).
pub(crate) fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// An error and its causes, `outer: inner: innermost` (hyper's body errors say what was wrong
/// with the body only in their source).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether hyper closes the connection after answering `request`: HTTP/1.0 without
/// keep-alive. (HTTP/1.1 requests with `Connection: close` get the header from hyper.)
fn closes_after<B>(request: &Request<B>) -> bool {
    request.version() == hyper::Version::HTTP_10
        && !request
            .headers()
            .get_all(CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"))
}

/// Where the examiner is in the byte stream of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before the first byte: HTTP/2 or HTTP/1?
    Start,
    /// Reading a request head.
    Head,
    /// Inside a body of known length: bytes still to pass.
    Body(u64),
    Chunked(Chunk),
    /// HTTP/2, or a body whose framing is left to hyper: everything passes.
    Passthrough,
    /// A head was refused: hyper gets the synthetic request, then nothing.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// The chunk-size line.
    Size,
    /// Data bytes still to pass, then the CRLF after them.
    Data(u64),
    /// The line end after a chunk's data.
    DataEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
}

/// Examines the bytes of one connection: what arrives goes in with [`Examiner::push`], what
/// hyper may read comes out of `ready`.
#[derive(Debug)]
pub struct Examiner {
    state: State,
    /// Received, not yet examined.
    pending: BytesMut,
    /// Examined: hyper may read these.
    ready: BytesMut,
    refusal: Option<Refusal>,
    /// How much of the pending head was searched for its end, so a head that arrives a byte
    /// at a time is searched once and parsed once, not once per byte.
    scanned: usize,
}

impl Default for Examiner {
    fn default() -> Self {
        Examiner {
            state: State::Start,
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            refusal: None,
            scanned: 0,
        }
    }
}

impl Examiner {
    /// Adds received bytes (`eof`: the peer sent its last) and examines what can be examined.
    pub fn push(&mut self, bytes: &[u8], eof: bool) {
        if self.state == State::Refused {
            return;
        }
        self.pending.extend_from_slice(bytes);
        while self.step(eof) {}
    }

    /// The refusal found, once (the caller hands it to the connection's service).
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }

    pub fn is_refused(&self) -> bool {
        self.state == State::Refused
    }

    /// One move; `false` when more bytes are needed.
    fn step(&mut self, eof: bool) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        match self.state.clone() {
            State::Start => {
                let n = self.pending.len().min(H2_PREFACE.len());
                if self.pending[..n] != H2_PREFACE[..n] {
                    self.state = State::Head;
                } else if n == H2_PREFACE.len() {
                    self.state = State::Passthrough;
                } else if eof {
                    self.state = State::Head;
                } else {
                    return false;
                }
                true
            }
            State::Head => self.head(eof),
            State::Body(left) => {
                let n = self.pass(left);
                self.state = if n == left {
                    State::Head
                } else {
                    State::Body(left - n)
                };
                true
            }
            State::Chunked(chunk) => self.chunked(chunk),
            State::Passthrough => {
                let all = self.pending.split();
                self.ready.unsplit(all);
                true
            }
            State::Refused => false,
        }
    }

    /// Moves up to `limit` pending bytes to `ready`; returns how many.
    fn pass(&mut self, limit: u64) -> u64 {
        let n = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(self.pending.len());
        let bytes = self.pending.split_to(n);
        self.ready.unsplit(bytes);
        n as u64
    }

    fn refuse(&mut self, refusal: Refusal) -> bool {
        self.pending.clear();
        self.ready.extend_from_slice(&synthetic_request());
        self.refusal = Some(refusal);
        self.state = State::Refused;
        false
    }

    fn head(&mut self, eof: bool) -> bool {
        let ended = self.head_ended();
        if !ended && !eof && self.pending.len() <= MAX_HEAD_BYTES {
            return false;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.pending) {
            Ok(httparse::Status::Complete(length)) => match check_head(&request, length) {
                Ok(framing) => {
                    self.pass(length as u64);
                    self.scanned = 0;
                    self.state = framing;
                    true
                }
                Err(refusal) => self.refuse(refusal),
            },
            Ok(httparse::Status::Partial) => {
                if self.pending.len() > MAX_HEAD_BYTES {
                    let line = self.pending.iter().position(|&b| b == b'\n');
                    let refusal = match line {
                        Some(end) if end <= MAX_URI_BYTES => Refusal::head_too_large(format!(
                            "the request head exceeds the limit of {MAX_HEAD_BYTES} bytes"
                        )),
                        _ => Refusal::uri_too_long(MAX_URI_BYTES),
                    };
                    return self.refuse(refusal);
                }
                if eof {
                    // The client stopped half-way through a head: hyper sees what there is,
                    // and closes the connection; there is nobody to answer.
                    self.state = State::Passthrough;
                    return true;
                }
                false
            }
            Err(httparse::Error::TooManyHeaders) => self.refuse(Refusal::head_too_large(format!(
                "the request has more than {MAX_HEADERS} header fields"
            ))),
            Err(e) => {
                let message = describe_malformed(&self.pending, e);
                self.refuse(Refusal::bad(message))
            }
        }
    }

    /// Whether the pending bytes hold an empty line (`\n\n` or `\n\r\n`), which ends a head.
    fn head_ended(&mut self) -> bool {
        let bytes = &self.pending[..];
        let from = self.scanned.saturating_sub(2);
        let found = (from..bytes.len()).any(|i| {
            bytes[i] == b'\n'
                && match bytes.get(i + 1) {
                    Some(b'\n') => true,
                    Some(b'\r') => bytes.get(i + 2) == Some(&b'\n'),
                    _ => false,
                }
        });
        self.scanned = bytes.len();
        found
    }

    fn chunked(&mut self, chunk: Chunk) -> bool {
        match chunk {
            Chunk::Size => {
                let Some(end) = self.line_end() else {
                    return self.long_line();
                };
                let line = &self.pending[..end];
                let size = std::str::from_utf8(line)
                    .ok()
                    .map(|l| l.split(';').next().unwrap_or("").trim())
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                self.pass(end as u64 + 1);
                self.state = match size {
                    Some(0) => State::Chunked(Chunk::Trailers),
                    Some(n) => State::Chunked(Chunk::Data(n)),
                    // hyper refuses the body; the request's answer closes the connection.
                    None => State::Passthrough,
                };
                true
            }
            Chunk::Data(left) => {
                let n = self.pass(left);
                self.state = State::Chunked(if n == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                });
                true
            }
            Chunk::DataEnd => {
                let Some(end) = self.line_end() else {
                    return self.long_line();
                };
                self.pass(end as u64 + 1);
                self.state = State::Chunked(Chunk::Size);
                true
            }
            Chunk::Trailers => {
                let Some(end) = self.line_end() else {
                    return self.long_line();
                };
                let empty = self.pending[..end].iter().all(|&b| b == b'\r');
                self.pass(end as u64 + 1);
                if empty {
                    self.state = State::Head;
                }
                true
            }
        }
    }

    fn line_end(&self) -> Option<usize> {
        self.pending.iter().position(|&b| b == b'\n')
    }

    /// No line end yet: wait for one, unless the line is already too long to be a chunk line,
    /// in which case hyper gets the rest and refuses the body itself.
    fn long_line(&mut self) -> bool {
        if self.pending.len() > MAX_CHUNK_LINE {
            self.state = State::Passthrough;
            return true;
        }
        false
    }
}

/// hyper's checks after parsing a head (and Kiln's limits); the framing of the body that
/// follows.
fn check_head(request: &httparse::Request<'_, '_>, length: usize) -> Result<State, Refusal> {
    let path = request.path.unwrap_or_default();
    if path.len() > MAX_URI_BYTES {
        return Err(Refusal::uri_too_long(path.len()));
    }
    if length > MAX_HEAD_BYTES {
        return Err(Refusal::head_too_large(format!(
            "the request head is {length} bytes; the limit is {MAX_HEAD_BYTES} bytes"
        )));
    }
    let method = request.method.unwrap_or_default();
    hyper::Method::from_bytes(method.as_bytes())
        .map_err(|_| Refusal::bad(format!("'{method}' is not an HTTP method")))?;
    hyper::Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes())).map_err(|e| {
        Refusal::bad(format!(
            "the request target '{}' is not a valid URI: {e}",
            path.escape_debug()
        ))
    })?;
    let http_11 = request.version == Some(1);
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http_11 {
                return Err(Refusal::bad(
                    "Transfer-Encoding is not allowed in an HTTP/1.0 request",
                ));
            }
            transfer_encoding = true;
            chunked = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") && !transfer_encoding {
            let value = String::from_utf8_lossy(header.value);
            let parsed = parse_digits(header.value).ok_or_else(|| {
                Refusal::bad(format!(
                    "Content-Length '{}' is not a number of bytes",
                    value.escape_debug()
                ))
            })?;
            if content_length.is_some_and(|previous| previous != parsed) {
                return Err(Refusal::bad(
                    "the request has Content-Length headers with different values",
                ));
            }
            content_length = Some(parsed);
        }
    }
    if transfer_encoding {
        if !chunked {
            return Err(Refusal::bad(
                "Transfer-Encoding must end with 'chunked' (the only encoding the server reads)",
            ));
        }
        return Ok(State::Chunked(Chunk::Size));
    }
    Ok(match content_length {
        Some(n) if n > 0 => State::Body(n),
        _ => State::Head,
    })
}

/// Digits only, as hyper reads Content-Length: no sign, no spaces, no list.
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A message that says where a head `httparse` refused goes wrong.
fn describe_malformed(head: &[u8], error: httparse::Error) -> String {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().unwrap_or_default();
    match error {
        httparse::Error::Token | httparse::Error::Version | httparse::Error::NewLine
            if !head.contains(&b'\n') || !request_line_ok(request_line) =>
        {
            format!(
                "the request line '{}' is not METHOD TARGET HTTP/1.x",
                shorten(request_line)
            )
        }
        _ => {
            for (i, line) in lines.enumerate() {
                if line.is_empty() {
                    break;
                }
                let Some((name, value)) = line.split_once(':') else {
                    return format!(
                        "header line {} ('{}') has no ':' between name and value",
                        i + 1,
                        shorten(line)
                    );
                };
                if name.is_empty() || !name.bytes().all(is_token) {
                    return format!(
                        "header line {}: '{}' is not a valid header name",
                        i + 1,
                        shorten(name)
                    );
                }
                if let Some(c) = value
                    .bytes()
                    .find(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                {
                    return format!(
                        "the value of header '{name}' contains the control character 0x{c:02x}"
                    );
                }
            }
            format!("the request head is malformed ({error})")
        }
    }
}

fn request_line_ok(line: &str) -> bool {
    let parts: Vec<&str> = line.split(' ').collect();
    parts.len() == 3
        && !parts[0].is_empty()
        && parts[0].bytes().all(is_token)
        && (parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0")
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() <= MAX {
        escaped
    } else {
        let cut: String = escaped.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// A socket whose incoming bytes go through an [`Examiner`] before hyper reads them; writes go
/// straight through.
pub struct GuardedIo<T> {
    inner: T,
    examiner: Examiner,
    verdict: Verdict,
    eof: bool,
}

impl<T> GuardedIo<T> {
    /// The guarded socket, and the slot where its refusal (if any) waits for the service.
    pub fn new(inner: T) -> (GuardedIo<T>, Verdict) {
        let verdict = Verdict::default();
        (
            GuardedIo {
                inner,
                examiner: Examiner::default(),
                verdict: verdict.clone(),
                eof: false,
            },
            verdict,
        )
    }
}

/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.examiner.ready.is_empty() {
                let n = this.examiner.ready.len().min(buf.remaining());
                buf.put_slice(&this.examiner.ready[..n]);
                this.examiner.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.examiner.is_refused() {
                // After the synthetic request hyper reads nothing more; it answers it, with
                // `Connection: close`, and closes the connection.
                return Poll::Pending;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    this.eof = filled.is_empty();
                    this.examiner.push(filled, this.eof);
                    if let Some(refusal) = this.examiner.take_refusal() {
                        *this.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(refusal);
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes; returns what hyper would read and the refusal.
    fn examine(input: &[u8], piece: usize) -> (Vec<u8>, Option<Refusal>) {
        let mut e = Examiner::default();
        let mut out = Vec::new();
        let mut refusal = None;
        for part in input.chunks(piece.max(1)) {
            e.push(part, false);
            out.extend_from_slice(&e.ready.split());
            refusal = refusal.or(e.take_refusal());
        }
        (out, refusal)
    }

    fn refused(input: &[u8]) -> Refusal {
        for piece in [1, 7, input.len()] {
            let (out, refusal) = examine(input, piece);
            let refusal = refusal.unwrap_or_else(|| {
                panic!(
                    "not refused in pieces of {piece}: {:?}",
                    String::from_utf8_lossy(input)
                )
            });
            assert!(
                out.ends_with(&synthetic_request()),
                "hyper gets the synthetic request"
            );
            if piece == input.len() {
                return refusal;
            }
        }
        unreachable!()
    }

    #[test]
    fn good_requests_pass_unchanged_whatever_the_pieces() {
        let pipeline: &[u8] = b"PUT /CreateComponent HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /ListImages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n\
GET /GetImage?x=1 HTTP/1.0\r\n\r\n";
        for piece in [1, 2, 3, 5, 64, pipeline.len()] {
            let (out, refusal) = examine(pipeline, piece);
            assert_eq!(refusal, None, "pieces of {piece}");
            assert_eq!(out, pipeline, "pieces of {piece}");
        }
    }

    #[test]
    fn a_body_that_looks_like_a_bad_head_is_not_examined() {
        let input: &[u8] = b"PUT /CreateComponent HTTP/1.1\r\nContent-Length: 12\r\n\r\nBAD\0HEAD\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (out, refusal) = examine(input, 3);
        assert_eq!(refusal, None);
        assert_eq!(out, input);
    }

    #[test]
    fn http2_passes_through() {
        let mut input = H2_PREFACE.to_vec();
        input.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0 anything at all \0\r\n");
        let (out, refusal) = examine(&input, 5);
        assert_eq!(refusal, None);
        assert_eq!(out, input);
    }

    #[test]
    fn oversized_heads_and_targets_are_refused_with_their_status() {
        let mut big_header = b"GET /ListImages HTTP/1.1\r\nX-Big: ".to_vec();
        big_header.extend(std::iter::repeat_n(b'a', 40 * 1024));
        big_header.extend_from_slice(b"\r\n\r\n");
        let r = refused(&big_header);
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(r.message.contains("16384"), "{}", r.message);

        let mut long_uri = b"GET /".to_vec();
        long_uri.extend(std::iter::repeat_n(b'a', 100 * 1024));
        long_uri.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(refused(&long_uri).status, StatusCode::URI_TOO_LONG);

        let mut just_long = b"GET /".to_vec();
        just_long.extend(std::iter::repeat_n(b'a', MAX_URI_BYTES + 10));
        just_long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(refused(&just_long).status, StatusCode::URI_TOO_LONG);

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let r = refused(&many);
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(r.message.contains("100 header fields"), "{}", r.message);
    }

    #[test]
    fn malformed_heads_are_400_naming_the_problem() {
        for (input, fragment) in [
            (&b"GET / HTTP/1.1\r\nX-No-Colon\r\n\r\n"[..], "has no ':'"),
            (b"GET / HTTP/1.1\r\nX-Nul: a\0b\r\n\r\n", "0x00"),
            (
                b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
                "not a valid header name",
            ),
            (b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "'abc'"),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "'-1'"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "different values",
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                "chunked",
            ),
            (
                b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            (b"GET / HTTP/9.9\r\n\r\n", "request line"),
            (b"G(T / HTTP/1.1\r\n\r\n", "request line"),
        ] {
            let r = refused(input);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{input:?}");
            assert_eq!(r.code, "ClientException");
            assert!(
                r.message.contains(fragment),
                "{:?}: {}",
                String::from_utf8_lossy(input),
                r.message
            );
        }
    }

    #[test]
    fn a_bad_head_after_good_requests_leaves_them_intact() {
        let good: &[u8] = b"POST /ListImages HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let mut input = good.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\nX-No-Colon\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let (out, refusal) = examine(&input, 4);
        assert!(refusal.is_some());
        let mut expected = good.to_vec();
        expected.extend_from_slice(&synthetic_request());
        assert_eq!(out, expected);
    }

    #[test]
    fn a_bad_chunk_size_is_left_to_hyper() {
        let input: &[u8] =
            b"POST /ListImages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nwhatever";
        let (out, refusal) = examine(input, 3);
        assert_eq!(refusal, None);
        assert_eq!(out, input);
    }

    /// Answers after a pause, so that a request can be in flight when the server stops.
    struct Slow;

    impl kiln_core::extension::Extension for Slow {
        fn handle(
            &self,
            _: &kiln_core::Caller<'_>,
            _: &str,
            _: &[(String, String)],
        ) -> kiln_core::extension::ExtensionResponse {
            std::thread::sleep(std::time::Duration::from_millis(500));
            kiln_core::extension::ExtensionResponse::json(200, &serde_json::json!({"slow": true}))
        }
    }

    type Running = (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
        tempfile::TempDir,
    );

    async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let service = std::sync::Arc::new(
            crate::Service::open(dir.path(), kiln_store::sqlite::Sync::Normal).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = crate::ServerConfig {
            auth: Arc::new(crate::Authenticator::insecure(
                crate::Accounts::default(),
                kiln_auth::regions::Regions::default(),
            )),
            tls: None,
            extension: Some(Arc::new(Slow)),
            throttle: crate::throttle::Throttle::default(),
            readiness: None,
        };
        let server = tokio::spawn(crate::serve(listener, service, config, async {
            let _ = stopped.await;
        }));
        (addr, stop, server, dir)
    }

    /// A keep-alive request in flight when the server begins to stop is answered, with
    /// `Connection: close`, and the connection then closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_in_flight_at_shutdown_is_told_the_connection_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, stop, server, _dir) = start().await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /kiln/v1/slow HTTP/1.1\r\nHost: kiln\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let _ = stop.send(());
        let mut raw = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tcp.read_to_end(&mut raw),
        )
        .await
        .expect("the connection closes")
        .unwrap();
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with(r#"{"slow":true}"#), "{text}");
        server.await.unwrap().unwrap();
    }

    /// HTTP/2 (prior knowledge) goes through the guard untouched, and its answers are the API's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_connections_reach_the_api() {
        let (addr, stop, server, _dir) = start().await;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::post("/ListInfrastructureConfigurations")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (answer, mut body) = client.send_request(request, false).unwrap();
        body.send_data(Bytes::from_static(b"{}"), true).unwrap();
        let answer = answer.await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.headers().contains_key("x-amzn-requestid"));
        let request = http::Request::post("/NoSuchOperation").body(()).unwrap();
        let (answer, _) = client.send_request(request, true).unwrap();
        let answer = answer.await.unwrap();
        assert_eq!(answer.status(), 400);
        assert_eq!(answer.headers()["x-amzn-errortype"], "ClientException");
        drop(client);
        let _ = stop.send(());
        let _ = server.await;
    }
}
