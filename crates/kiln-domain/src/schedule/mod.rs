//! Pipeline schedules: AWS `cron(...)` and `rate(...)` expressions.
//!
//! An Image Builder pipeline's `schedule.scheduleExpression` is parsed once
//! into a [`ScheduleExpression`], which then answers one question: when does
//! it fire next ([`ScheduleExpression::next_after`]), in the pipeline's time
//! zone ([`parse_timezone`]). The rules follow the Image Builder user guide
//! ("Use cron expressions"); where it is silent we follow Quartz, the library
//! the AWS syntax comes from, and where even that would be a guess we reject
//! the input with a message saying so.
//!
//! The calendar is croner's and the time zones are chrono-tz's; Kiln adds
//! the AWS rules on top: the syntax AWS accepts, with messages that name the
//! field, and what a run in a daylight-saving change does.
//!
//! The files each have one job:
//! - `mod.rs` (this file) recognises the `cron(...)` / `rate(...)` wrapper
//!   and dispatches.
//! - `cron.rs` splits the six cron fields, hands them to croner and applies
//!   the daylight-saving rules to the runs croner finds on the wall clock.
//! - `field.rs` checks each field's text against the AWS rules before croner
//!   sees it: bounds, names, increments, the `?` rule for the two day fields
//!   and where `L`, `W` and `#` may stand.
//! - `rate.rs` parses `rate(...)` and places its runs.
//! - `timezone.rs` resolves IANA zone names.
//! - `error.rs` holds [`ScheduleError`].
//! - `tests/` holds the table-driven tests of the public API.

mod cron;
mod error;
mod field;
mod rate;
mod timezone;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use cron::CronExpr;
pub use error::ScheduleError;
pub use rate::{RateExpr, RateUnit};
pub use timezone::parse_timezone;

use error::quote;

/// A parsed pipeline schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpression {
    Cron(CronExpr),
    Rate(RateExpr),
}

impl ScheduleExpression {
    /// Parses `cron(minute hour day-of-month month day-of-week year)` or
    /// `rate(value unit)`. The keyword is lowercase and nothing may surround
    /// the expression, as in AWS.
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        if s.is_empty() {
            return Err(ScheduleError::new("schedule expression is empty"));
        }
        if s.trim() != s {
            return Err(ScheduleError::new(
                "schedule expression must not have leading or trailing whitespace",
            ));
        }
        let Some((keyword, rest)) = s.split_once('(') else {
            return Err(not_an_expression(s));
        };
        let parse_body: fn(&str) -> Result<Self, ScheduleError> = match keyword {
            "cron" => |body| CronExpr::parse_fields(body).map(Self::Cron),
            "rate" => |body| RateExpr::parse_body(body).map(Self::Rate),
            _ if keyword.eq_ignore_ascii_case("cron") || keyword.eq_ignore_ascii_case("rate") => {
                return Err(ScheduleError::new(format!(
                    "schedule expression keyword {} must be lowercase '{}'",
                    quote(keyword),
                    keyword.to_ascii_lowercase()
                )))
            }
            _ => return Err(not_an_expression(s)),
        };
        let Some(body) = rest.strip_suffix(')') else {
            return Err(ScheduleError::new(format!(
                "{keyword} expression must end with ')'"
            )));
        };
        parse_body(body)
    }

    /// The first instant strictly after `after` at which the expression
    /// fires, or `None` if it never fires again.
    ///
    /// Cron expressions are evaluated on the wall clock of `tz`: a run whose
    /// local time falls in a spring-forward gap does not happen that day, and
    /// one whose local time occurs twice at fall-back happens once, at the
    /// earlier instant. The search ends with the year 2199, the last year the
    /// cron syntax can name.
    ///
    /// Rate expressions ignore `tz`: they fire at every whole multiple of
    /// their period counted from the Unix epoch (see [`RateExpr`]).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(cron) => cron.next_after(after, tz),
            Self::Rate(rate) => rate.next_after(after),
        }
    }
}

/// The next run strictly after `now` of each schedule `(expression, time zone)`, in order:
/// `None` for one that is invalid or never runs again. For callers that compute many next runs
/// at once: parsing an expression costs more than searching it (croner builds every field's
/// value set, several microseconds), so the schedules are visited grouped by expression and
/// each distinct expression is parsed once, holding one parsed expression at a time.
pub fn next_runs(schedules: &[(&str, &str)], now: DateTime<Utc>) -> Vec<Option<DateTime<Utc>>> {
    let mut order: Vec<usize> = (0..schedules.len()).collect();
    order.sort_unstable_by_key(|&i| schedules[i].0);
    let mut zones: std::collections::HashMap<&str, Option<Tz>> = Default::default();
    let mut parsed: Option<(&str, Option<ScheduleExpression>)> = None;
    let mut runs = vec![None; schedules.len()];
    for i in order {
        let (expression, zone) = schedules[i];
        if parsed.as_ref().map(|(text, _)| *text) != Some(expression) {
            parsed = Some((expression, ScheduleExpression::parse(expression).ok()));
        }
        let tz = *zones
            .entry(zone)
            .or_insert_with(|| parse_timezone(zone).ok());
        if let (Some((_, Some(expression))), Some(tz)) = (&parsed, tz) {
            runs[i] = expression.next_after(now, tz);
        }
    }
    runs
}

fn not_an_expression(s: &str) -> ScheduleError {
    ScheduleError::new(format!(
        "schedule expression must be 'cron(...)' or 'rate(...)', found {}",
        quote(s)
    ))
}
