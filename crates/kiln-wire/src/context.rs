//! Who is calling, and where: the part of a request that is not its input.

/// The caller's account and region and this request's id. The region comes from the verified
/// SigV4 credential scope; the account from the key that signed (see `kiln_api::auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub account_id: String,
    pub region: String,
    /// The current time, in milliseconds since the Unix epoch, fixed for the whole request.
    pub now_millis: i64,
    /// A handler whose answer depends on the time sets the instant (milliseconds) at which the
    /// answer may change, so that a cached copy is not served past it.
    pub valid_until: std::cell::Cell<Option<i64>>,
}

impl RequestContext {
    /// Notes that the answer being built may change at `millis`.
    pub fn valid_until(&self, millis: i64) {
        let earliest = self.valid_until.get().map_or(millis, |t| t.min(millis));
        self.valid_until.set(Some(earliest));
    }
}
