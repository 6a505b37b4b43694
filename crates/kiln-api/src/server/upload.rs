//! `POST /kiln/v1/<path>`: uploads to an extension (`kiln vulndb import` sends its data this
//! way), too large for the API's 1 MiB bodies.
//!
//! The signature is checked before the body is read, over the SHA-256 the request declares in
//! `x-amz-content-sha256` (SigV4 signs that header); the body then goes to a file of its own,
//! at most [`MAX_UPLOAD_BYTES`], hashed as it arrives, and reaches the extension only when the
//! hash is the one that was signed. The file is removed once the extension has answered.

use super::{
    authenticate, decode_query, extension_response, no_extension, open_body, protocol_error,
};
use super::{Body, RemoveOnDrop, Shared};
use crate::auth::Api;
use crate::throttle::{self, Calls};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use kiln_wire::RequestContext;
use sha2::{Digest, Sha256};
use std::io::Write;

/// The largest upload Kiln takes (an OSV mirror of every ecosystem is a few GiB).
pub const MAX_UPLOAD_BYTES: u64 = 8 * 1024 * 1024 * 1024;

pub(super) async fn handle(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    mut body: Incoming,
    rest: &str,
    query: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    let caller = match authenticate(shared, parts, &[], Api::ImageBuilder, true) {
        Ok(c) => c,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
            return protocol_error(status, e.code(), &e.to_string(), request_id);
        }
    };
    if let Err(t) = shared.throttle.admit(&caller.account_id, Calls::Writes) {
        return throttle::response(rest, &caller.account_id, t, request_id);
    }
    let Some(extension) = shared.extension.clone() else {
        return no_extension(rest, request_id);
    };
    let ctx = RequestContext {
        request_id: request_id.to_string(),
        account_id: caller.account_id,
        region: caller.region,
        now_millis: shared.service.clock.now_millis(),
        valid_until: Default::default(),
        credentials: caller.credentials,
        fetched_document: None,
    };
    let rest = percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned();
    // Asked before the body is read: nobody the extension refuses makes the server store one.
    let accepted = {
        let (extension, ctx, rest) = (extension.clone(), ctx.clone(), rest.clone());
        tokio::task::spawn_blocking(move || {
            extension.accepts_upload(&crate::convert::caller(&ctx), &rest)
        })
        .await
    };
    match accepted {
        Ok(Ok(())) => {}
        Ok(Err(refused)) => return answer(open_body(refused), request_id),
        Err(_) => return internal_error(request_id),
    }
    let declared = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let path = std::env::temp_dir().join(format!("kiln-upload-{request_id}"));
    let guard = RemoveOnDrop(Some(path.clone()));
    let mut file = match std::fs::File::create(&path) {
        Ok(f) => std::io::BufWriter::with_capacity(1 << 20, f),
        Err(e) => {
            return protocol_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &format!("storing the upload at {}: {e}", path.display()),
                request_id,
            )
        }
    };
    let mut hash = Sha256::new();
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return protocol_error(
                    StatusCode::BAD_REQUEST,
                    "ClientException",
                    &format!("reading the upload failed: {e}"),
                    request_id,
                )
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len() as u64;
        if size > MAX_UPLOAD_BYTES {
            return crate::http_edges::closing(protocol_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                &format!("the upload exceeds the limit of {MAX_UPLOAD_BYTES} bytes"),
                request_id,
            ));
        }
        hash.update(&data);
        // Writes to the page cache: short enough for the runtime's thread.
        if let Err(e) = file.write_all(&data) {
            return protocol_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &format!("storing the upload at {}: {e}", path.display()),
                request_id,
            );
        }
    }
    if let Err(e) = file.flush() {
        return protocol_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &format!("storing the upload at {}: {e}", path.display()),
            request_id,
        );
    }
    drop(file);
    let actual = kiln_auth::sigv4::hex(&hash.finalize());
    if actual != declared {
        return protocol_error(
            StatusCode::BAD_REQUEST,
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            request_id,
        );
    }
    let pairs = query.map(decode_query).unwrap_or_default();
    let answered = tokio::task::spawn_blocking(move || {
        let response = extension.upload(&crate::convert::caller(&ctx), &rest, &pairs, &path);
        drop(guard);
        open_body(response)
    })
    .await;
    match answered {
        Ok(prepared) => answer(prepared, request_id),
        Err(_) => internal_error(request_id),
    }
}

/// An extension's answer, or the error of opening its file.
fn answer(prepared: Result<super::Prepared, String>, request_id: &str) -> Response<Body> {
    match prepared {
        Ok(prepared) => extension_response(prepared, request_id),
        Err(message) => protocol_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &message,
            request_id,
        ),
    }
}

fn internal_error(request_id: &str) -> Response<Body> {
    protocol_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ServiceException",
        "internal error while handling the upload",
        request_id,
    )
}
