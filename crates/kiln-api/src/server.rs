//! The HTTP front: connections, body limits, routing, and the AWS error response format.
//!
//! Paths under [`kiln_core::extension::PREFIX`] (`GET /kiln/v1/...`) are not API operations: they go
//! to the [`Extension`] the binary configured (404 without one), on a blocking thread. A file
//! answer is streamed from disk in chunks, never read into memory.
//!
//! One path skips the signature check: `GET`/`HEAD /kiln/v1/health` (exactly that raw path),
//! which reads no account's data ([`crate::health`]).

use crate::auth::{Api, Authenticator, Caller};
use crate::http_edges;
use crate::request_id::RequestIds;
use crate::service::Service;
use crate::throttle::{self, Calls, Throttle};
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kiln_core::extension::{Extension, ExtensionBody, ExtensionResponse};
use kiln_wire::route::{assemble_input, route};
use kiln_wire::{ApiError, RequestContext};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

mod upload;

/// Bodies larger than this are refused before they are read to the end. The largest legitimate
/// request (a component or workflow with 16,000 characters of inline data, or a distribution
/// configuration with many regions) is far smaller.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerConfig {
    /// Who may call: every request's signature is checked by it before anything else.
    pub auth: Arc<Authenticator>,
    /// Serve HTTPS with this configuration (see [`crate::tls`]); plain HTTP without it.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// What answers `GET /kiln/v1/...`; without one those paths are 404.
    pub extension: Option<Arc<dyn Extension>>,
    /// Per-account request rates (`crate::throttle`).
    pub throttle: Throttle,
    /// Whether builds can run, for `GET /kiln/v1/health` (`crate::health`); without it the
    /// answer says `unknown`.
    pub readiness: Option<Arc<crate::health::Readiness>>,
}

struct Shared {
    service: Arc<Service>,
    auth: Arc<Authenticator>,
    extension: Option<Arc<dyn Extension>>,
    request_ids: RequestIds,
    throttle: Throttle,
    readiness: Option<Arc<crate::health::Readiness>>,
    database_probe: crate::health::DatabaseProbe,
}

/// The body of every response: a buffer, or a file streamed from disk.
pub type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An error of the HTTP layer itself, before an operation is known.
pub(crate) fn protocol_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(code) {
        headers.insert("x-amzn-errortype", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

fn error_response(e: &ApiError, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    protocol_error(status, e.code(), &e.message, request_id)
}

fn ok_response(body: String, request_id: &str) -> Response<Body> {
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let request_id = shared.request_ids.next_id();
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    // The one path answered without a signature: the exact raw path, GET or HEAD only.
    if path == crate::health::PATH && (method == "GET" || method == "HEAD") {
        // hyper sends no body in answer to HEAD, with the headers GET would have.
        return health(&shared, &request_id).await;
    }
    if method == "POST" {
        if let Some(rest) = path.strip_prefix(kiln_core::extension::PREFIX) {
            let rest = rest.to_string();
            return upload::handle(&shared, &parts, body, &rest, query.as_deref(), &request_id)
                .await;
        }
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return http_edges::closing(if too_large {
                protocol_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLargeException",
                    &format!("the request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
                    &request_id,
                )
            } else {
                protocol_error(
                    StatusCode::BAD_REQUEST,
                    "ClientException",
                    &format!(
                        "reading the request body failed: {}",
                        http_edges::error_chain(e.as_ref())
                    ),
                    &request_id,
                )
            });
        }
    };
    // Query calls at `/` are signed for `iam` (the cross-account distribution role) or `ec2`,
    // everything else for `imagebuilder`.
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let api = crate::iam::api_of(&method, &path, authorization, query.as_deref(), &body);
    let caller = match authenticate(&shared, &parts, &body, api, false) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(code = e.code(), message = %e, %path, "signature refused");
            if api == Api::Ec2 {
                return crate::ec2::error_response(
                    &crate::ec2::error::Ec2Error::from_signature(&e),
                    &request_id,
                );
            }
            if api == Api::Iam {
                return crate::iam::error_response(&crate::iam::signature_error(&e), &request_id);
            }
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
            return protocol_error(status, e.code(), &e.to_string(), &request_id);
        }
    };
    let ctx = RequestContext {
        request_id: request_id.clone(),
        account_id: caller.account_id,
        region: caller.region,
        now_millis: shared.service.clock.now_millis(),
        valid_until: Default::default(),
        credentials: caller.credentials,
        fetched_document: None,
    };
    if api == Api::Iam {
        return crate::iam::handle(
            shared.service.clone(),
            &shared.throttle,
            ctx,
            query.as_deref(),
            &body,
        )
        .await;
    }
    if api == Api::Ec2 {
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        return crate::ec2::handle(
            shared.service.clone(),
            &shared.throttle,
            ctx,
            &method,
            content_type,
            query.as_deref(),
            &body,
        )
        .await;
    }
    // Throttling is keyed on the verified account: nobody can drain another account's bucket.
    if let Some(rest) = path.strip_prefix(kiln_core::extension::PREFIX) {
        if let Err(t) = shared.throttle.admit(&ctx.account_id, Calls::Reads) {
            return throttle::response(&path, &ctx.account_id, t, &request_id);
        }
        return handle_extension(&shared, ctx, &method, rest, query.as_deref()).await;
    }
    let routed = match route(&method, &path) {
        Ok(r) => r,
        Err(e) => return error_response(&e, &request_id),
    };
    let def = routed.operation.def();
    if let Err(t) = shared.throttle.admit(&ctx.account_id, Calls::of(def)) {
        return throttle::response(def.name, &ctx.account_id, t, &request_id);
    }
    let input = match assemble_input(def, query.as_deref(), routed.uri_label, &body) {
        Ok(i) => i,
        Err(e) => return error_response(&e, &request_id),
    };
    let service = shared.service.clone();
    let operation = routed.operation;
    // Reads take microseconds and never wait for a lock, so they run on the runtime's thread;
    // writes may wait for their batch to commit, so they move to a blocking thread. On a shared
    // database reads are network round trips (and its client blocks), so they move too.
    let result = if def.is_read_only() && !service.store.is_shared() {
        Ok(service.call(operation, &ctx, input))
    } else if let Some(body) = match service.cached_candidate(operation, &ctx, &input) {
        Some(cached) => service.serve_cached(cached).await,
        None => None,
    } {
        Ok(Ok(body))
    } else {
        tokio::task::spawn_blocking(move || service.call(operation, &ctx, input)).await
    };
    match result {
        Ok(Ok(output)) => ok_response(output, &request_id),
        Ok(Err(e)) => {
            tracing::debug!(operation = def.name, code = e.code(), message = %e.message, "request refused");
            error_response(&e, &request_id)
        }
        Err(join_error) => {
            tracing::error!(operation = def.name, error = %join_error, "handler panicked");
            error_response(
                &ApiError::service("internal error while handling the request"),
                &request_id,
            )
        }
    }
}

/// `GET /kiln/v1/health`: see [`crate::health`]. No account, so no throttling bucket either.
async fn health(shared: &Shared, request_id: &str) -> Response<Body> {
    let database = shared.database_probe.reachable(&shared.service).await;
    let builds = shared.readiness.as_ref().map(|r| r.builds());
    let (status, body) = crate::health::answer(database, builds);
    let mut response = ok_response(body, request_id);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// The caller of a request, from its signature (see [`crate::auth`]).
fn authenticate(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    api: Api,
    body_follows: bool,
) -> Result<Caller, kiln_auth::sigv4::SigV4Error> {
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let request = kiln_auth::sigv4::Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or_default(),
        headers: &headers,
        authority: parts.uri.authority().map(|a| a.as_str()),
        body,
        body_follows,
    };
    shared.auth.authenticate(&request, chrono::Utc::now(), api)
}

/// Decodes `a=1&b=x+y&c` into `[("a", "1"), ("b", "x y"), ("c", "")]`: `+` is a space, then
/// percent-decoding; bytes that are not UTF-8 become U+FFFD.
pub fn decode_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// The answer to `/kiln/v1/<rest>` on a server without extensions.
fn no_extension(rest: &str, request_id: &str) -> Response<Body> {
    protocol_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!(
            "{}{rest} is not available: this server runs without the build worker",
            kiln_core::extension::PREFIX
        ),
        request_id,
    )
}

/// `GET /kiln/v1/<rest>?<query>`: see the module documentation.
async fn handle_extension(
    shared: &Shared,
    ctx: RequestContext,
    method: &str,
    rest: &str,
    query: Option<&str>,
) -> Response<Body> {
    let request_id = ctx.request_id.clone();
    let request_id = request_id.as_str();
    if method != "GET" {
        return protocol_error(
            StatusCode::BAD_REQUEST,
            "ClientException",
            &format!(
                "{method} is not allowed on {}*: only GET is (and POST for uploads)",
                kiln_core::extension::PREFIX
            ),
            request_id,
        );
    }
    let Some(extension) = shared.extension.clone() else {
        return no_extension(rest, request_id);
    };
    let path = percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned();
    let pairs = query.map(decode_query).unwrap_or_default();
    let log_path = path.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let response = extension.handle(&crate::convert::caller(&ctx), &path, &pairs);
        open_body(response)
    })
    .await;
    match answered {
        Ok(Ok(prepared)) => extension_response(prepared, request_id),
        Ok(Err(message)) => {
            tracing::error!(path = %log_path, error = %message, "extension answer failed");
            protocol_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &message,
                request_id,
            )
        }
        Err(join_error) => {
            tracing::error!(path = %log_path, error = %join_error, "extension panicked");
            protocol_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "internal error while handling the request",
                request_id,
            )
        }
    }
}

/// An extension answer whose file (if any) is open.
struct Prepared {
    response: ExtensionResponse,
    file: Option<(std::fs::File, u64, RemoveOnDrop)>,
}

/// Opens the answer's file on the blocking thread; a file that cannot be opened is an error
/// (and is still removed when it was to be).
fn open_body(response: ExtensionResponse) -> Result<Prepared, String> {
    let (path, remove_after) = match &response.body {
        ExtensionBody::Bytes(_) => {
            return Ok(Prepared {
                response,
                file: None,
            })
        }
        ExtensionBody::File { path, remove_after } => (path.clone(), *remove_after),
    };
    let guard = RemoveOnDrop(remove_after.then(|| path.clone()));
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    Ok(Prepared {
        response,
        file: Some((file, len, guard)),
    })
}

fn extension_response(prepared: Prepared, request_id: &str) -> Response<Body> {
    let Prepared { response, file } = prepared;
    let (body, length) = match (response.body, file) {
        (ExtensionBody::Bytes(bytes), _) => {
            let len = bytes.len() as u64;
            (full(bytes), len)
        }
        (ExtensionBody::File { .. }, Some((file, len, guard))) => {
            let body = FileBody {
                file: tokio::fs::File::from_std(file),
                buf: BytesMut::new(),
                remaining: len,
                _guard: guard,
            };
            (body.boxed(), len)
        }
        (ExtensionBody::File { .. }, None) => (full(Bytes::new()), 0),
    };
    let mut out = Response::new(body);
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in &response.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => tracing::warn!(name, value, "extension header is not a valid HTTP header"),
        }
    }
    if let Ok(v) = HeaderValue::from_str(response.content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    out
}

/// Removes a file when dropped: after its answer was sent, or when sending it failed or the
/// client went away.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "removing a sent file failed");
                }
            }
        }
    }
}

/// How much of a file one frame carries.
const FILE_CHUNK: usize = 256 * 1024;

/// A file's first `remaining` bytes, read in chunks as the client takes them.
struct FileBody {
    file: tokio::fs::File,
    buf: BytesMut,
    remaining: u64,
    _guard: RemoveOnDrop,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.buf.capacity() < FILE_CHUNK {
            this.buf.reserve(FILE_CHUNK);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.file), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(0)) => {
                this.remaining = 0;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was sent",
                ))))
            }
            Poll::Ready(Ok(_)) => {
                let mut chunk = this.buf.split();
                if chunk.len() as u64 > this.remaining {
                    chunk.truncate(this.remaining as usize);
                }
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Serves one connection (plain TCP, or TLS after its handshake) until it ends or the server
/// shuts down. Every request head is examined before hyper reads it (`http_edges`).
async fn serve_connection<IO>(
    io: IO,
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (io, verdict) = http_edges::GuardedIo::new(io);
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let verdict = verdict.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                http_edges::answer(&verdict, req, |req| handle(shared, req)).await,
            )
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (for up to 10 seconds) before returning.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        service,
        auth: config.auth,
        extension: config.extension,
        request_ids: RequestIds::default(),
        throttle: config.throttle,
        readiness: config.readiness,
        database_probe: Default::default(),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_header_list_size(http_edges::MAX_HEAD_BYTES as u32);
    let builder = Arc::new(builder);
    let tls = config.tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = tls.clone();
                // The TLS handshake runs on the connection's own task, so a slow or silent
                // client never holds up the accept loop.
                tokio::spawn(async move {
                    let Some(acceptor) = tls else {
                        return serve_connection(stream, shared, &builder, watcher).await;
                    };
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, shared, &builder, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after 10 seconds; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A path and the query pairs the extension was called with.
    type Seen = (String, Vec<(String, String)>);

    /// Answers `json` with headers, `file` with the file it was given, `panic` by panicking,
    /// and records the queries it saw.
    struct Fake {
        file: PathBuf,
        seen: Mutex<Vec<Seen>>,
    }

    impl Extension for Fake {
        fn accepts_upload(
            &self,
            _caller: &kiln_core::Caller<'_>,
            path: &str,
        ) -> Result<(), ExtensionResponse> {
            match path {
                "upload" => Ok(()),
                _ => Err(ExtensionResponse::error(
                    403,
                    "AccessDeniedException",
                    "not yours to upload",
                )),
            }
        }

        fn upload(
            &self,
            _caller: &kiln_core::Caller<'_>,
            _path: &str,
            _query: &[(String, String)],
            body: &std::path::Path,
        ) -> ExtensionResponse {
            let bytes = std::fs::read(body).unwrap_or_default();
            ExtensionResponse::json(200, &serde_json::json!({ "bytes": bytes.len() }))
        }

        fn handle(
            &self,
            _caller: &kiln_core::Caller<'_>,
            path: &str,
            query: &[(String, String)],
        ) -> ExtensionResponse {
            self.seen
                .lock()
                .unwrap()
                .push((path.to_string(), query.to_vec()));
            match path {
                "json" => {
                    let mut r = ExtensionResponse::json(200, &serde_json::json!({ "ok": true }));
                    r.headers.push(("x-kiln-test".into(), "yes".into()));
                    r
                }
                "file" => ExtensionResponse {
                    status: 200,
                    content_type: "application/octet-stream",
                    headers: vec![("x-kiln-log-size".into(), "3".into())],
                    body: ExtensionBody::File {
                        path: self.file.clone(),
                        remove_after: true,
                    },
                },
                "missing-file" => ExtensionResponse {
                    status: 200,
                    content_type: "application/octet-stream",
                    headers: Vec::new(),
                    body: ExtensionBody::File {
                        path: self.file.with_extension("nothing"),
                        remove_after: false,
                    },
                },
                "panic" => panic!("the fake extension panics"),
                _ => ExtensionResponse::error(404, "ResourceNotFoundException", "no such thing"),
            }
        }
    }

    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    async fn request(addr: std::net::SocketAddr, method: &str, target: &str) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .expect("the server answers in time")
            .unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let body = raw[split + 4..].to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `POST target` with `body`, declaring `declared` as its SHA-256.
    async fn upload(
        addr: std::net::SocketAddr,
        target: &str,
        declared: &str,
        body: &[u8],
    ) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nx-amz-content-sha256: {declared}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .expect("the server answers in time")
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let headers = text
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body: raw,
        }
    }

    #[tokio::test]
    async fn uploads_reach_the_extension_only_as_declared() {
        let (addr, stop, _dir) = start(Some(Arc::new(Fake {
            file: PathBuf::from("/nonexistent"),
            seen: Mutex::new(Vec::new()),
        })))
        .await;
        let body = b"kiln upload body";
        let declared = kiln_auth::sigv4::hex(&Sha256::digest(body));
        // As declared: the extension has it.
        let r = upload(addr, "/kiln/v1/upload", &declared, body).await;
        assert_eq!(r.status, 200);
        assert!(String::from_utf8_lossy(&r.body).contains(r#"{"bytes":16}"#));
        // Another body than the one declared never reaches it.
        let r = upload(addr, "/kiln/v1/upload", &declared, b"kiln upload bodY").await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InvalidSignatureException")
        );
        // A caller the extension refuses is answered before the body is read.
        let r = upload(addr, "/kiln/v1/json", &declared, body).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.header("x-amzn-errortype"), Some("AccessDeniedException"));
        let _ = stop.send(());
    }

    async fn start(
        extension: Option<Arc<dyn Extension>>,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let service =
            Arc::new(Service::open(dir.path(), kiln_store::sqlite::Sync::Normal).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Unsigned requests: these tests are about routing and bodies, not callers.
        let config = ServerConfig {
            auth: Arc::new(Authenticator::insecure(
                crate::accounts::Accounts::default(),
                kiln_auth::regions::Regions::default(),
            )),
            tls: None,
            extension,
            throttle: Throttle::default(),
            readiness: None,
        };
        tokio::spawn(serve(listener, service, config, async {
            let _ = stopped.await;
        }));
        (addr, stop, dir)
    }

    #[test]
    fn queries_are_decoded() {
        assert_eq!(
            decode_query("a=1&&b=x+y%2Bz&c&arn=arn%3Aaws%3Aimagebuilder%2F1"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x y+z".to_string()),
                ("c".to_string(), String::new()),
                ("arn".to_string(), "arn:aws:imagebuilder/1".to_string()),
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn extension_paths_go_to_the_extension() {
        let files = tempfile::tempdir().unwrap();
        let file = files.path().join("export.bin");
        let content: Vec<u8> = (0..5 * 1024 * 1024 + 17)
            .map(|i: u32| (i % 251) as u8)
            .collect();
        std::fs::write(&file, &content).unwrap();
        let fake = Arc::new(Fake {
            file: file.clone(),
            seen: Mutex::new(Vec::new()),
        });
        let (addr, stop, _dir) = start(Some(fake.clone())).await;

        let r = request(
            addr,
            "GET",
            "/kiln/v1/json?imageBuildVersionArn=arn%3Aaws%3Ax&offset=5&q=a+b",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-kiln-test"), Some("yes"));
        assert!(r.header("x-amzn-requestid").is_some());
        assert_eq!(r.body, br#"{"ok":true}"#);
        assert_eq!(
            fake.seen.lock().unwrap()[0],
            (
                "json".to_string(),
                vec![
                    ("imageBuildVersionArn".to_string(), "arn:aws:x".to_string()),
                    ("offset".to_string(), "5".to_string()),
                    ("q".to_string(), "a b".to_string()),
                ]
            )
        );

        let r = request(addr, "GET", "/kiln/v1/file").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("x-kiln-log-size"), Some("3"));
        assert_eq!(
            r.header("content-length"),
            Some(content.len().to_string().as_str())
        );
        assert!(r.body == content, "the streamed file differs");
        let mut removed = false;
        for _ in 0..100 {
            if !file.exists() {
                removed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(removed, "the file was not removed after it was sent");

        let r = request(addr, "GET", "/kiln/v1/elsewhere").await;
        assert_eq!(r.status, 404);
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("ResourceNotFoundException")
        );

        let r = request(addr, "GET", "/kiln/v1/missing-file").await;
        assert_eq!(r.status, 500);
        assert!(String::from_utf8_lossy(&r.body).contains("message"));

        let r = request(addr, "GET", "/kiln/v1/panic").await;
        assert_eq!(r.status, 500);
        assert!(String::from_utf8_lossy(&r.body).contains("internal error"));

        // POST is an upload, whose body must be what the request declared (and signed).
        let r = request(addr, "POST", "/kiln/v1/upload").await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InvalidSignatureException")
        );
        let r = request(addr, "PUT", "/kiln/v1/json").await;
        assert_eq!(r.status, 400);
        assert_eq!(r.header("x-amzn-errortype"), Some("ClientException"));
        let message: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(message["message"].as_str().unwrap().contains("only GET"));

        // The API still answers beside the extension.
        let r = request(addr, "GET", "/ListComponents").await;
        assert_ne!(r.status, 404);
        let _ = stop.send(());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_goes_away_still_gets_the_file_removed() {
        let files = tempfile::tempdir().unwrap();
        let file = files.path().join("big.bin");
        std::fs::write(&file, vec![7u8; 32 * 1024 * 1024]).unwrap();
        let fake = Arc::new(Fake {
            file: file.clone(),
            seen: Mutex::new(Vec::new()),
        });
        let (addr, stop, _dir) = start(Some(fake)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /kiln/v1/file HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut some = vec![0u8; 4096];
        let n = stream.read(&mut some).await.unwrap();
        assert!(n > 0);
        drop(stream);
        let mut removed = false;
        for _ in 0..250 {
            if !file.exists() {
                removed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            removed,
            "the file was not removed after the client went away"
        );
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn health_answers_get_and_head_without_an_extension() {
        let (addr, stop, _dir) = start(None).await;
        let r = request(addr, "GET", "/kiln/v1/health").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"status": "ok", "database": "ok", "builds": "unknown", "checks": []})
        );
        let r = request(addr, "HEAD", "/kiln/v1/health").await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        // Only the exact path: anything else under the prefix goes to the (absent) extension.
        let r = request(addr, "GET", "/kiln/v1/health/x").await;
        assert_eq!(r.status, 404);
        let _ = stop.send(());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_an_extension_its_paths_are_404() {
        let (addr, stop, _dir) = start(None).await;
        let r = request(addr, "GET", "/kiln/v1/logs?imageBuildVersionArn=x").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let message: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            message["message"]
                .as_str()
                .unwrap()
                .contains("without the build worker"),
            "{message}"
        );
        let r = request(addr, "DELETE", "/kiln/v1/logs").await;
        assert_eq!(r.status, 400);
        let _ = stop.send(());
    }
}
