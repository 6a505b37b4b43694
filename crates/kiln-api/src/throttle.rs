//! Per-account request rates: a token bucket per account, refilled at a steady rate, with a
//! burst allowance. A request that finds its bucket empty is answered 429 with `Retry-After`
//! before anything else is done for it, so a flood from one account costs little and does not
//! slow the others.
//!
//! Reads (`Get*`, `List*`, `GET /kiln/v1/...`) and writes (everything else) have separate
//! buckets with the same settings, as EC2 separates its describe and mutating calls: a client
//! polling an image never stops the same account from creating one, and the other way round.
//!
//! The error is `TooManyRequestsException` for the operations whose model lists it
//! (DistributeImage, ImportDiskImage) and `ThrottlingException` everywhere else. Both are in
//! botocore's list of throttling codes, so its `standard` and `adaptive` retry modes back off
//! and retry without user code; `CallRateLimitExceededException` is not (it is about EC2 calls
//! made on the caller's behalf) and is not used for this.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// How fast an account may call: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// The defaults: far above what a person, the aws CLI, Terraform or the test suites do,
    /// low enough that one runaway script cannot monopolise the server.
    pub const DEFAULT: RateLimit = RateLimit {
        per_second: 100.0,
        burst: 200,
    };

    /// `None` when either number is 0 (no limit).
    pub fn new(per_second: f64, burst: u32) -> Result<Option<RateLimit>, String> {
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(format!(
                "the rate limit {per_second} must be a number of requests per second, 0 or more"
            ));
        }
        if per_second == 0.0 || burst == 0 {
            return Ok(None);
        }
        // One request per day is the slowest rate that still makes sense.
        if per_second < 1.0 / 86_400.0 {
            return Err(format!(
                "the rate limit {per_second} is below one request per day"
            ));
        }
        Ok(Some(RateLimit { per_second, burst }))
    }

    fn quota(self) -> Option<Quota> {
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(self.burst)?))
    }
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    Reads,
    Writes,
}

/// A refused request: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Whole seconds, at least 1 (the unit of `Retry-After`).
    pub retry_after_seconds: u64,
}

/// The buckets of every account. Accounts are few (they come from verified keys), so the map
/// stays small.
pub struct Throttle {
    limit: Option<RateLimit>,
    reads: Option<DefaultKeyedRateLimiter<String>>,
    writes: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Some(RateLimit::DEFAULT))
    }
}

impl Throttle {
    /// `None`: no limit.
    pub fn new(limit: Option<RateLimit>) -> Throttle {
        let quota = limit.and_then(RateLimit::quota);
        Throttle {
            limit,
            reads: quota.map(RateLimiter::keyed),
            writes: quota.map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    pub fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    /// Takes a token from `account`'s bucket for `calls`, or says how long until there is one.
    pub fn admit(&self, account: &str, calls: Calls) -> Result<(), Throttled> {
        let limiter = match calls {
            Calls::Reads => &self.reads,
            Calls::Writes => &self.writes,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .check_key(&account.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                Throttled {
                    retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
                .at_least_one_second()
            })
    }
}

impl Throttled {
    fn at_least_one_second(self) -> Throttled {
        Throttled {
            retry_after_seconds: self.retry_after_seconds.max(1),
        }
    }
}

impl Calls {
    pub fn of(def: &kiln_wire::schema::OperationDef) -> Calls {
        if def.is_read_only() {
            Calls::Reads
        } else {
            Calls::Writes
        }
    }
}

/// The 429 answer to a throttled request for `what` (an operation or a path).
pub(crate) fn response(
    what: &str,
    account: &str,
    throttled: Throttled,
    request_id: &str,
) -> hyper::Response<crate::server::Body> {
    let mut response = crate::server::protocol_error(
        hyper::StatusCode::TOO_MANY_REQUESTS,
        error_code(what),
        &format!(
            "Rate exceeded: account {account} is over its request rate for {what}; retry after {} s",
            throttled.retry_after_seconds
        ),
        request_id,
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(throttled.retry_after_seconds),
    );
    response
}

/// The error code a throttled call of `operation` answers.
pub fn error_code(operation: &str) -> &'static str {
    match operation {
        "DistributeImage" | "ImportDiskImage" => "TooManyRequestsException",
        _ => "ThrottlingException",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_retry_time() {
        let throttle = Throttle::new(RateLimit::new(0.5, 3).unwrap());
        for _ in 0..3 {
            throttle.admit("111111111111", Calls::Writes).unwrap();
        }
        let refused = throttle.admit("111111111111", Calls::Writes).unwrap_err();
        // One token every two seconds.
        assert!(
            (1..=2).contains(&refused.retry_after_seconds),
            "{refused:?}"
        );
        // Reads and other accounts have buckets of their own.
        throttle.admit("111111111111", Calls::Reads).unwrap();
        throttle.admit("222222222222", Calls::Writes).unwrap();
    }

    #[test]
    fn zero_disables_and_nonsense_is_refused() {
        assert_eq!(RateLimit::new(0.0, 10).unwrap(), None);
        assert_eq!(RateLimit::new(10.0, 0).unwrap(), None);
        assert!(RateLimit::new(-1.0, 10).is_err());
        assert!(RateLimit::new(f64::NAN, 10).is_err());
        let unlimited = Throttle::new(None);
        for _ in 0..10_000 {
            unlimited.admit("111111111111", Calls::Writes).unwrap();
        }
    }

    #[test]
    fn the_model_decides_the_code() {
        assert_eq!(error_code("DistributeImage"), "TooManyRequestsException");
        assert_eq!(error_code("ImportDiskImage"), "TooManyRequestsException");
        assert_eq!(error_code("CreateImage"), "ThrottlingException");
    }
}
