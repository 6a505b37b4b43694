//! Kiln's own endpoints, beside the Image Builder API: `GET /kiln/v1/...`.
//!
//! The `kiln` subcommands that act on a running server (`kiln logs`, `kiln image export`,
//! `kiln instance shell`) use them. The API crate only routes them: what they answer comes from
//! an [`Extension`] the binary plugs in (the build worker, which owns the logs, the image store
//! and the instances). Paths and queries are those of the request; answers are small JSON or
//! text bodies, or a file streamed from disk. `POST` paths are uploads (`kiln vulndb import`):
//! the server stores the body in a file first, checked against the SHA-256 the request signed.

use crate::caller::Caller;
use kiln_domain::arn::ResourceKind;
use std::path::PathBuf;
use std::sync::Arc;

/// The prefix of every extension path.
pub const PREFIX: &str = "/kiln/v1/";

pub enum ExtensionBody {
    Bytes(Vec<u8>),
    /// A file streamed to the client; removed afterwards when `remove_after`.
    File {
        path: PathBuf,
        remove_after: bool,
    },
}

pub struct ExtensionResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: ExtensionBody,
}

impl ExtensionResponse {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> ExtensionResponse {
        ExtensionResponse {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: ExtensionBody::Bytes(value.to_string().into_bytes()),
        }
    }

    /// An error in the API's shape: `{"message": ...}` with the AWS error type header.
    pub fn error(status: u16, code: &str, message: &str) -> ExtensionResponse {
        let mut r = ExtensionResponse::json(status, &serde_json::json!({ "message": message }));
        r.headers
            .push(("x-amzn-errortype".to_string(), code.to_string()));
        r
    }
}

/// Answers `GET /kiln/v1/<path>?<query>`. Called on a blocking thread: it may read files and
/// run exports.
///
/// The request's signature was verified like an API call's; `caller` says whose it is. An
/// extension answers only about the caller's own account and region: anything else does not
/// exist for the caller (404), exactly as in the API.
pub trait Extension: Send + Sync {
    /// `path` is what follows [`PREFIX`]; `query` the decoded query pairs in order.
    fn handle(
        &self,
        caller: &Caller<'_>,
        path: &str,
        query: &[(String, String)],
    ) -> ExtensionResponse;

    /// Whether `caller` may upload to `path`, asked before the body is read (so that nobody
    /// else makes the server store one): `Err` is the answer. Extensions that take no uploads
    /// answer 404.
    fn accepts_upload(&self, caller: &Caller<'_>, path: &str) -> Result<(), ExtensionResponse> {
        let _ = caller;
        Err(ExtensionResponse::error(
            404,
            "ResourceNotFoundException",
            &format!("{PREFIX}{path} takes no uploads"),
        ))
    }

    /// Answers `POST /kiln/v1/<path>?<query>`, an upload: the server has stored the body in
    /// the file `body` (removed afterwards) and checked it against the SHA-256 the request
    /// signed. Extensions that take no uploads answer 404.
    fn upload(
        &self,
        caller: &Caller<'_>,
        path: &str,
        query: &[(String, String)],
        body: &std::path::Path,
    ) -> ExtensionResponse {
        let _ = (caller, query, body);
        ExtensionResponse::error(
            404,
            "ResourceNotFoundException",
            &format!("{PREFIX}{path} takes no uploads"),
        )
    }
}

/// Whether `arn` names a resource of `kind` in the caller's account and region: anything else
/// (another account's, another kind, not an Image Builder ARN) does not exist for the caller.
pub fn is_callers(caller: &Caller<'_>, arn: &str, kind: ResourceKind) -> bool {
    caller.owns(arn, kind)
}

/// The start of an extension that answers one path about one resource named by a query
/// parameter: `Ok(arn)` when `path` is `expected` and the parameter `name` is given, else the
/// answer to send (404 naming the path it serves, 400 naming the missing parameter).
pub fn one_resource_query<'a>(
    path: &str,
    expected: &str,
    query: &'a [(String, String)],
    name: &str,
) -> Result<&'a str, ExtensionResponse> {
    if path != expected {
        return Err(ExtensionResponse::error(
            404,
            "ResourceNotFoundException",
            &format!("no endpoint {PREFIX}{path}; did you mean {expected}?"),
        ));
    }
    param(query, name).ok_or_else(|| {
        ExtensionResponse::error(400, "InvalidRequestException", &format!("{name}: required"))
    })
}

/// A time as the extensions answer it: RFC 3339 with milliseconds, UTC.
pub fn rfc3339(millis: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The value of query parameter `name`, if given.
pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Several extensions behind one prefix: each answers the paths that start with its first
/// segment; `fallback` answers the rest (and says which paths exist).
pub struct Routes {
    pub routes: Vec<(&'static str, Arc<dyn Extension>)>,
    pub fallback: Arc<dyn Extension>,
}

impl Routes {
    /// The extension of the path's first segment, else the fallback.
    fn route(&self, path: &str) -> &Arc<dyn Extension> {
        let first = path.split('/').next().unwrap_or_default();
        self.routes
            .iter()
            .find(|(segment, _)| *segment == first)
            .map_or(&self.fallback, |(_, extension)| extension)
    }
}

impl Extension for Routes {
    fn handle(
        &self,
        caller: &Caller<'_>,
        path: &str,
        query: &[(String, String)],
    ) -> ExtensionResponse {
        self.route(path).handle(caller, path, query)
    }

    fn accepts_upload(&self, caller: &Caller<'_>, path: &str) -> Result<(), ExtensionResponse> {
        self.route(path).accepts_upload(caller, path)
    }

    fn upload(
        &self,
        caller: &Caller<'_>,
        path: &str,
        query: &[(String, String)],
        body: &std::path::Path,
    ) -> ExtensionResponse {
        self.route(path).upload(caller, path, query, body)
    }
}
