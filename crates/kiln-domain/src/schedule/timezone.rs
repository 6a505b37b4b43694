//! Time zone names for `Schedule.timezone`.
//!
//! Image Builder takes an IANA zone name; the tz database shipped with
//! `chrono-tz` is the authority on which names exist. Matching is exact
//! (case-sensitive) like the database itself; `UTC` is accepted because the
//! database carries it as a link to `Etc/UTC`.

use chrono_tz::Tz;

use super::error::{quote, ScheduleError};

/// Parses an IANA time zone name such as `Etc/UTC` or `America/Los_Angeles`.
pub fn parse_timezone(s: &str) -> Result<Tz, ScheduleError> {
    s.parse::<Tz>()
        .map_err(|_| ScheduleError::new(format!("unknown time zone {}", quote(s))))
}
