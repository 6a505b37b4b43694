//! `rate(value unit)` expressions: a fixed period.

use chrono::{DateTime, TimeDelta, Utc};

use super::error::{quote, ScheduleError};
use super::field::{is_digits, parse_number};

/// The unit of a rate expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Minutes,
    Hours,
    Days,
}

impl RateUnit {
    fn seconds(self) -> i64 {
        match self {
            Self::Minutes => 60,
            Self::Hours => 3_600,
            Self::Days => 86_400,
        }
    }
}

/// A parsed `rate(value unit)`, e.g. `rate(12 hours)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateExpr {
    value: u32,
    unit: RateUnit,
}

impl RateExpr {
    /// The number of units, at least 1.
    pub fn value(&self) -> u32 {
        self.value
    }

    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    /// The time between two runs.
    pub fn period(&self) -> TimeDelta {
        TimeDelta::seconds(self.period_seconds())
    }

    fn period_seconds(&self) -> i64 {
        // At most u32::MAX * 86_400, far inside i64.
        i64::from(self.value) * self.unit.seconds()
    }

    /// Parses what stands between the parentheses of `rate(...)`.
    pub(crate) fn parse_body(body: &str) -> Result<Self, ScheduleError> {
        if body.trim() != body {
            return Err(ScheduleError::new(
                "rate expression must not have leading or trailing spaces inside the parentheses",
            ));
        }
        let Some((value, unit_text)) = body.split_once(' ') else {
            return Err(ScheduleError::new(format!(
                "rate expression must be 'rate(value unit)' with a single space, as in 'rate(12 hours)', found 'rate({body})'"
            )));
        };
        if unit_text.contains(char::is_whitespace) {
            return Err(ScheduleError::new(
                "rate value and unit must be separated by a single space",
            ));
        }
        if !is_digits(value) {
            return Err(ScheduleError::new(format!(
                "rate value {} must be a positive whole number",
                quote(value)
            )));
        }
        let value = match parse_number(value) {
            Some(0) => {
                return Err(ScheduleError::new(
                    "rate value must be greater than 0, found 0",
                ))
            }
            Some(n) => n,
            None => {
                return Err(ScheduleError::new(format!(
                    "rate value {value} is too large (at most {})",
                    u32::MAX
                )))
            }
        };
        let (unit, plural) = match unit_text {
            "minute" => (RateUnit::Minutes, false),
            "minutes" => (RateUnit::Minutes, true),
            "hour" => (RateUnit::Hours, false),
            "hours" => (RateUnit::Hours, true),
            "day" => (RateUnit::Days, false),
            "days" => (RateUnit::Days, true),
            other => {
                return Err(ScheduleError::new(format!(
                    "unknown rate unit {}: use minute(s), hour(s) or day(s)",
                    quote(other)
                )))
            }
        };
        // AWS insists on grammatical agreement: `rate(1 hour)`, `rate(2 hours)`.
        if plural != (value != 1) {
            return Err(ScheduleError::new(format!(
                "rate unit must be '{}' when the value is {value}, found '{unit_text}'",
                unit_word(unit, value != 1)
            )));
        }
        Ok(Self { value, unit })
    }

    /// See [`super::ScheduleExpression::next_after`]. AWS does not document
    /// where a rate's runs are anchored (pipeline creation? last run?), so we
    /// choose one that needs no state: runs fall on every whole multiple of
    /// the period counted from the Unix epoch, in UTC. `rate(1 day)` thus runs
    /// at 00:00 UTC and `rate(5 minutes)` at :00, :05, ... in every time zone.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let period = self.period_seconds();
        // Flooring the whole seconds is enough for "strictly after": the next
        // multiple is more than `after` even when `after` has a fraction.
        let next = after
            .timestamp()
            .div_euclid(period)
            .checked_add(1)?
            .checked_mul(period)?;
        DateTime::from_timestamp(next, 0)
    }
}

fn unit_word(unit: RateUnit, plural: bool) -> &'static str {
    match (unit, plural) {
        (RateUnit::Minutes, false) => "minute",
        (RateUnit::Minutes, true) => "minutes",
        (RateUnit::Hours, false) => "hour",
        (RateUnit::Hours, true) => "hours",
        (RateUnit::Days, false) => "day",
        (RateUnit::Days, true) => "days",
    }
}
