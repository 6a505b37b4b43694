//! The HTTP front: connections, body limits, routing, and the AWS error response format.

use crate::accounts::Accounts;
use crate::request_id::RequestIds;
use crate::service::Service;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kiln_wire::context::parse_credential_scope;
use kiln_wire::route::{assemble_input, route};
use kiln_wire::{ApiError, RequestContext};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Bodies larger than this are refused before they are read to the end. The largest legitimate
/// request (a component or workflow with 16,000 characters of inline data, or a distribution
/// configuration with many regions) is far smaller.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct ServerConfig {
    pub accounts: Accounts,
}

struct Shared {
    service: Arc<Service>,
    accounts: Accounts,
    request_ids: RequestIds,
}

/// An error of the HTTP layer itself, before an operation is known.
fn protocol_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
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

fn error_response(e: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    protocol_error(status, e.code(), &e.message, request_id)
}

fn ok_response(body: String, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let request_id = shared.request_ids.next_id();
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let scope = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_credential_scope);

    let routed = match route(&method, &path) {
        Ok(r) => r,
        Err(e) => return error_response(&e, &request_id),
    };
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
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
                    &format!("reading the request body failed: {e}"),
                    &request_id,
                )
            };
        }
    };
    let def = routed.operation.def();
    let input = match assemble_input(def, query.as_deref(), routed.uri_label, &body) {
        Ok(i) => i,
        Err(e) => return error_response(&e, &request_id),
    };
    let ctx = RequestContext {
        request_id: request_id.clone(),
        account_id: shared
            .accounts
            .account_for(scope.as_ref().map(|s| s.access_key_id.as_str()))
            .to_string(),
        region: scope
            .map(|s| s.region)
            .unwrap_or_else(|| shared.accounts.default_region.clone()),
        now_millis: now_millis(),
        valid_until: Default::default(),
    };
    let service = shared.service.clone();
    let operation = routed.operation;
    // Reads take microseconds and never wait for a lock, so they run on the runtime's thread;
    // writes may wait for their batch to commit, so they move to a blocking thread.
    let result = if def.is_read_only() {
        Ok(service.call(operation, &ctx, input))
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
        accounts: config.accounts,
        request_ids: RequestIds::default(),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
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
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(shared, req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
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
