//! Component and workflow documents named by `uri` (`s3://bucket/key`) instead of given inline
//! in `data`: CreateComponent, CreateWorkflow and ImportComponent.
//!
//! The object is read from the S3-compatible endpoint the operator configured
//! (`kiln serve --s3-endpoint`; no other address is ever contacted) by
//! [`kiln_toe::actions::net::s3_object`], the S3 actions' client, before the request's
//! transaction begins, so that a slow endpoint never holds the database's writer. The handler
//! then finds the text in [`RequestContext::fetched_document`] and validates it exactly as it
//! validates `data`.
//!
//! Whose permissions: the read is signed with the key that signed the Image Builder request
//! (AWS: "you must have permission to access the S3 bucket it points to"), so the S3 service
//! applies the caller's permissions, never Kiln's. Under `--insecure-no-auth` nothing is
//! verified and there is no caller key: the operator's `--s3-access-key-id` is used when given,
//! else a `uri` is refused.
//!
//! Limits: AWS's quota for a component document from S3 is 64 KB by default (the model's
//! documentation of `CreateComponentRequest.uri`); workflows and imported scripts get the same
//! limit. Bigger objects are refused on their `Content-Length`, before the body is read.
//!
//! Errors name the `uri` and what S3 said. The classes are those of the operations' error
//! lists in the model: `ForbiddenException` when S3 refuses the caller's key (HTTP 403),
//! `ServiceUnavailableException` when the endpoint cannot be reached, times out or answers 5xx,
//! `InvalidRequestException` for everything else (no endpoint, malformed uri, missing bucket or
//! key, too big, checksum mismatch, not UTF-8).

use kiln_toe::actions::net::s3_object::{
    get_object, parse_object_uri, GetObjectError, ObjectLimits,
};
use kiln_toe::actions::S3Config;
use kiln_wire::{ApiError, ErrorKind, FetchedDocument, Operation, RequestContext};
use serde_json::Value;
use std::time::Duration;

/// AWS's default quota for a component document in S3 (64 KB).
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;
/// The whole read: connecting, S3's answer and the body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The operator's S3-compatible endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Endpoint {
    /// Base URL; requests are path-style (`{endpoint}/{bucket}/{key}`).
    pub endpoint: String,
    pub region: String,
    /// The key used when the request has no verified caller (`--insecure-no-auth`).
    pub fallback_key: Option<(String, String)>,
}

impl std::fmt::Debug for S3Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Endpoint")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "fallback_key",
                &self.fallback_key.as_ref().map(|(id, _)| id.as_str()),
            )
            .finish()
    }
}

/// Where documents named by `uri` come from; without an endpoint every `uri` is refused.
#[derive(Debug, Clone, Default)]
pub struct DocumentSource {
    pub s3: Option<S3Endpoint>,
}

/// The `uri` of a request that names its document by one and not inline. A request that gives
/// both is left to its handler, which refuses the combination without reading anything.
pub fn uri_to_fetch(op: Operation, input: &Value) -> Option<(&'static str, &str)> {
    let (data, uri) = match op {
        Operation::CreateComponent | Operation::CreateWorkflow | Operation::ImportComponent => {
            ("data", "uri")
        }
        Operation::CreateContainerRecipe => ("dockerfileTemplateData", "dockerfileTemplateUri"),
        _ => return None,
    };
    if input.get(data).is_some_and(|d| !d.is_null()) {
        return None;
    }
    input.get(uri).and_then(Value::as_str).map(|u| (uri, u))
}

impl DocumentSource {
    /// Reads the document at `uri` (given in the request's `member`) with the caller's key.
    pub fn fetch(
        &self,
        ctx: &RequestContext,
        member: &str,
        uri: &str,
    ) -> Result<FetchedDocument, ApiError> {
        let invalid = |m: String| ApiError::invalid_request(format!("{member} {uri}: {m}"));
        parse_object_uri(uri).map_err(invalid)?;
        let Some(s3) = &self.s3 else {
            return Err(invalid(
                "this server has no S3 endpoint configured (kiln serve --s3-endpoint); give the document inline instead".into(),
            ));
        };
        let (access_key_id, secret_access_key, session_token) = match (&ctx.credentials, &s3.fallback_key) {
            (Some(c), _) => (
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
            ),
            (None, Some((id, secret))) => (id.clone(), secret.clone(), None),
            (None, None) => {
                return Err(invalid(
                    "the request's signature was not verified (--insecure-no-auth), so there is no caller key to read S3 with, and no --s3-access-key-id is configured".into(),
                ))
            }
        };
        tracing::debug!(%uri, access_key_id = %access_key_id, "reading a document from S3");
        let config = S3Config {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            access_key_id,
            secret_access_key,
            session_token,
        };
        let limits = ObjectLimits {
            max_bytes: MAX_DOCUMENT_BYTES,
            timeout: FETCH_TIMEOUT,
        };
        let bytes = get_object(&config, uri, &limits).map_err(|e| fetch_error(member, uri, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            invalid(format!(
                "the document is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(FetchedDocument {
            uri: uri.to_string(),
            text,
        })
    }
}

fn fetch_error(member: &str, uri: &str, e: GetObjectError) -> ApiError {
    let kind = match &e {
        GetObjectError::Refused { status: 403, .. } => ErrorKind::ForbiddenException,
        GetObjectError::Refused { status, .. } if *status >= 500 => {
            ErrorKind::ServiceUnavailableException
        }
        GetObjectError::Unreachable(_) => ErrorKind::ServiceUnavailableException,
        _ => ErrorKind::InvalidRequestException,
    };
    let message = match &e {
        GetObjectError::Refused { status: 403, .. } => {
            format!("{member} {uri}: S3 refused to read it with the caller's credentials: {e}")
        }
        GetObjectError::Unreachable(_) => {
            format!("{member} {uri}: the S3 endpoint could not be read: {e}")
        }
        _ => format!("{member} {uri}: {e}"),
    };
    ApiError::new(kind, message)
}

/// The document of a create request, with the field it came from for error messages: `data`,
/// or the text read for `uri` before the transaction. Exactly one of them must be given.
pub fn document<'a>(
    ctx: &'a RequestContext,
    data: Option<&'a str>,
    uri: Option<&str>,
) -> Result<(&'a str, String), ApiError> {
    match (data, uri) {
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorKind::InvalidParameterCombinationException,
            "data and uri: give exactly one of them, not both",
        )),
        (None, None) => Err(ApiError::invalid_request(
            "data and uri: give exactly one of them; the document inline in data, or its S3 location in uri",
        )),
        (Some(data), None) => Ok((data, "data".to_string())),
        (None, Some(uri)) => match &ctx.fetched_document {
            Some(doc) if doc.uri == uri => Ok((doc.text.as_str(), format!("uri {uri}"))),
            // Only a request whose clientToken was answered a moment ago gets here (it was not
            // read again), and the token has expired since.
            _ => Err(ApiError::new(
                ErrorKind::ServiceUnavailableException,
                format!("uri {uri}: the document was not read; retry the request"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uri_requests_are_fetched() {
        let uri = serde_json::json!({"uri": "s3://b/k"});
        let both = serde_json::json!({"uri": "s3://b/k", "data": "x"});
        assert_eq!(
            uri_to_fetch(Operation::CreateComponent, &uri),
            Some(("uri", "s3://b/k"))
        );
        assert_eq!(
            uri_to_fetch(Operation::ImportComponent, &uri),
            Some(("uri", "s3://b/k"))
        );
        let template = serde_json::json!({"dockerfileTemplateUri": "s3://b/Dockerfile"});
        assert_eq!(
            uri_to_fetch(Operation::CreateContainerRecipe, &template),
            Some(("dockerfileTemplateUri", "s3://b/Dockerfile"))
        );
        assert_eq!(uri_to_fetch(Operation::CreateComponent, &both), None);
        assert_eq!(uri_to_fetch(Operation::ImportDiskImage, &uri), None);
    }

    #[test]
    fn refusals_name_the_uri_and_the_reason() {
        let source = DocumentSource::default();
        let ctx = RequestContext::default();
        let e = source.fetch(&ctx, "uri", "s3://b/k").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequestException);
        assert!(
            e.message.contains("uri s3://b/k") && e.message.contains("no S3 endpoint"),
            "{e}"
        );
        let e = source.fetch(&ctx, "uri", "https://b/k").unwrap_err();
        assert!(e.message.contains("not an S3 URL"), "{e}");
        let source = DocumentSource {
            s3: Some(S3Endpoint {
                endpoint: "http://127.0.0.1:9".into(),
                region: "us-east-1".into(),
                fallback_key: None,
            }),
        };
        let e = source.fetch(&ctx, "uri", "s3://b/k").unwrap_err();
        assert!(e.message.contains("--insecure-no-auth"), "{e}");
        let forbidden = fetch_error(
            "uri",
            "s3://b/k",
            GetObjectError::Refused {
                status: 403,
                code: Some("AccessDenied".into()),
                message: Some("Access Denied".into()),
            },
        );
        assert_eq!(forbidden.kind, ErrorKind::ForbiddenException);
        assert!(forbidden.message.contains("AccessDenied"), "{forbidden}");
    }
}
