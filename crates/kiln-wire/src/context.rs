//! Who is calling, and where: the part of a request that is not its input.

/// The caller's account and region and this request's id. The region comes from the verified
/// SigV4 credential scope; the account from the key that signed (see `kiln_api::auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub account_id: String,
    pub region: String,
    /// The current time, in milliseconds since the Unix epoch, fixed for the whole request.
    pub now_millis: i64,
    /// A handler whose answer depends on the time sets the instant (milliseconds) at which the
    /// answer may change, so that a cached copy is not served past it.
    pub valid_until: std::cell::Cell<Option<i64>>,
    /// The key that signed the request, when its signature was verified: what Kiln signs with
    /// when it reads something on the caller's behalf (a document in S3), so that the caller's
    /// permissions apply, never Kiln's. `None` under `--insecure-no-auth` and for Kiln's own
    /// calls.
    pub credentials: Option<CallerCredentials>,
    /// A document the request names by `uri`, read before the request's transaction began
    /// (network reads never hold the database's writer).
    pub fetched_document: Option<FetchedDocument>,
}

impl RequestContext {
    /// Notes that the answer being built may change at `millis`.
    pub fn valid_until(&self, millis: i64) {
        let earliest = self.valid_until.get().map_or(millis, |t| t.min(millis));
        self.valid_until.set(Some(earliest));
    }
}

/// A caller's secret key. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct CallerCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for CallerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The text of the object at `uri`, as read for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedDocument {
    pub uri: String,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let ctx = RequestContext {
            credentials: Some(CallerCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "very-secret".into(),
                session_token: Some("token-secret".into()),
            }),
            ..Default::default()
        };
        let text = format!("{ctx:?}");
        assert!(text.contains("AKIDEXAMPLE"), "{text}");
        assert!(!text.contains("very-secret"), "{text}");
        assert!(!text.contains("token-secret"), "{text}");
    }
}
