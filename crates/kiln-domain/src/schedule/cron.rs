//! `cron(...)` expressions: the AWS layer around croner.
//!
//! Parsing splits the six fields, checks each against the AWS rules
//! (`field.rs`), rewrites the two AWS forms that croner reads differently
//! (see [`to_croner`]) and hands the result to croner, which builds the value
//! sets. The search asks croner for the next matching wall-clock time in the
//! zone's naive local time and applies the AWS daylight-saving rules to each
//! candidate itself (see [`CronExpr::next_after`]): croner's own zoned search
//! follows a different convention for times in a spring-forward gap.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use super::error::{quote, ScheduleError};
use super::field::{check_day_fields, check_values, parse_number, HOUR, MINUTE, MONTH, YEAR};

/// A parsed `cron(minute hour day-of-month month day-of-week year)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    /// The pattern in croner's dialect, with a leading seconds field of 0.
    /// Boxed: croner's value sets are a few hundred bytes, and a
    /// [`super::ScheduleExpression`] is kept for every pipeline.
    cron: Box<Cron>,
    /// The last year that can have a run (0 if none can): past it,
    /// `next_after` answers without asking croner, whose search for a run
    /// that does not exist goes on to the year 5000.
    last_year: i32,
}

const FIELD_NAMES: [&str; 6] = [
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];

impl CronExpr {
    /// Parses what stands between the parentheses of `cron(...)`.
    pub(crate) fn parse_fields(body: &str) -> Result<Self, ScheduleError> {
        if body.trim() != body {
            return Err(ScheduleError::new(
                "cron expression must not have leading or trailing spaces inside the parentheses",
            ));
        }
        let fields: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split(' ').collect()
        };
        // Checked before the count so that `0  10 * * ? *` is not reported
        // as having seven fields.
        if fields
            .iter()
            .any(|f| f.is_empty() || f.contains(char::is_whitespace))
        {
            return Err(ScheduleError::new(
                "cron fields must be separated by single spaces",
            ));
        }
        let Ok(fields) = <[&str; 6]>::try_from(fields.as_slice()) else {
            return Err(ScheduleError::new(format!(
                "cron expression must have 6 fields ({}), found {}",
                FIELD_NAMES.join(" "),
                fields.len()
            )));
        };
        let [minute, hour, day_of_month, month, day_of_week, year] = fields;
        check_values(minute, &MINUTE)?;
        check_values(hour, &HOUR)?;
        check_day_fields(day_of_month, day_of_week)?;
        check_values(month, &MONTH)?;
        check_values(year, &YEAR)?;

        let cron = compile(&fields)?;
        let last_year = if names_a_missing_day(&cron) {
            0
        } else {
            last_year(year)
        };
        Ok(Self {
            cron: Box::new(cron),
            last_year,
        })
    }

    /// See [`super::ScheduleExpression::next_after`].
    ///
    /// croner yields candidates in local wall-clock order, and each is mapped
    /// to an instant with `earliest()`: a wall time inside a spring-forward
    /// gap has no instant and does not run that day; one inside a fall-back
    /// overlap maps to its earlier instant only, so it fires once. With that
    /// mapping instants grow with wall time, so the first candidate strictly
    /// after `after` is the answer, and the walk can start at `after`'s own
    /// wall-clock time. Candidates behind `after` occur only when `after` is
    /// in the second half of an overlap, so at most an hour of them.
    pub(crate) fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Years far outside 1970-2199 are settled on the UTC year, which is
        // within a day of the local one (and `naive_local` could overflow at
        // the ends of chrono's range).
        if after.year() > LAST_YEAR + 1 {
            return None;
        }
        let first = first_minute();
        // (where croner starts, whether a run exactly there counts)
        let (mut from, mut inclusive) = if after.year() < FIRST_YEAR - 1 {
            (first, true)
        } else {
            let local = after.with_timezone(&tz).naive_local();
            // The cheap answer for an expression whose years are all past.
            if local.year() > self.last_year {
                return None;
            }
            if local < first {
                (first, true)
            } else {
                (local, false)
            }
        };
        loop {
            // croner ends its search with an error once no year can match;
            // it never returns a year after `last_year`.
            let local = self.cron.find_next_occurrence(&from, inclusive).ok()?;
            match tz.from_local_datetime(&local).earliest() {
                Some(instant) => {
                    let instant = instant.with_timezone(&Utc);
                    // Fails only in an overlap that `after` is already past.
                    if instant > after {
                        return Some(instant);
                    }
                    (from, inclusive) = (local, false);
                }
                // In a gap: every run up to its end is skipped.
                None => (from, inclusive) = (end_of_gap(local, tz)?, true),
            }
        }
    }
}

const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2199;

/// 1970-01-01 00:00, the first wall-clock time the syntax can name.
fn first_minute() -> NaiveDateTime {
    NaiveDate::from_yo_opt(FIRST_YEAR, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// The first whole minute after `local` (itself inside a spring-forward gap of
/// `tz`) that exists. Runs are on whole minutes, so none is skipped by
/// resuming there; a gap longer than the two days looked at (none is) would
/// only cost another round.
fn end_of_gap(local: NaiveDateTime, tz: Tz) -> Option<NaiveDateTime> {
    const LOOK_AHEAD_MINUTES: u32 = 2 * 24 * 60;
    let mut minute = local;
    for _ in 0..LOOK_AHEAD_MINUTES {
        minute = minute.checked_add_signed(TimeDelta::minutes(1))?;
        if tz.from_local_datetime(&minute).earliest().is_some() {
            break;
        }
    }
    Some(minute)
}

/// The last year a checked year field names. Worked out from the text:
/// croner's own list of values walks all its years up to 5000, which would
/// cost more than the rest of the parse.
fn last_year(field: &str) -> i32 {
    field
        .split(',')
        .filter_map(|item| {
            let (base, step) = match item.split_once('/') {
                Some((base, step)) => (base, Some(parse_number(step)?)),
                None => (item, None),
            };
            let (first, last) = match base.split_once('-') {
                _ if base == "*" => (FIRST_YEAR.unsigned_abs(), LAST_YEAR.unsigned_abs()),
                Some((first, last)) => (parse_number(first)?, parse_number(last)?),
                // `2024/2` runs to the end of the field.
                None if step.is_some() => (parse_number(base)?, LAST_YEAR.unsigned_abs()),
                None => (parse_number(base)?, parse_number(base)?),
            };
            let step = step.unwrap_or(1).max(1);
            let last = first + (last.checked_sub(first)? / step) * step;
            i32::try_from(last).ok()
        })
        .max()
        .unwrap_or(0)
}

/// Whether the expression names only days that its months never have, such
/// as February 30 or the 31st of 30-day months: plain day numbers (no `L` or
/// `W`), all larger than the longest of the months (February has 29 days).
fn names_a_missing_day(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    if pattern.days.has_modifiers() {
        return false;
    }
    let longest_month = pattern
        .months
        .values()
        .into_iter()
        .map(|month| match month {
            2 => 29,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        })
        .max()
        .unwrap_or(0);
    pattern
        .days
        .values()
        .first()
        .is_some_and(|first_day| *first_day > longest_month)
}

/// The parser for the pattern [`to_croner`] writes: a seconds field (always
/// 0) and a year field; 1 = Sunday as in Quartz; `5/10` meaning "from 5,
/// every 10".
fn croner_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .alternative_weekdays(true)
        .sloppy_ranges(true)
        .build()
}

/// Rewrites a checked field into croner's dialect where the two differ:
///
/// - `L` alone in day-of-week is Saturday (7) in AWS and Quartz; croner
///   accepts it but it matches no day.
/// - croner's years run 1-5000, so `*` and increments are bounded to
///   1970-2199: `*/100` must be 1970, 2070, 2170 and not 2001, 2101, and no
///   run may fall after 2199.
///
/// Everything else, names and case included, croner reads as AWS does.
fn to_croner(index: usize, text: &str) -> Cow<'_, str> {
    match index {
        4 if text.eq_ignore_ascii_case("L") => Cow::Borrowed("7"),
        5 => Cow::Owned(
            text.split(',')
                .map(|item| match item.split_once('/') {
                    None if item == "*" => "1970-2199".to_string(),
                    Some(("*", step)) => format!("1970-2199/{step}"),
                    Some((from, step)) if !from.contains('-') => format!("{from}-2199/{step}"),
                    _ => item.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => Cow::Borrowed(text),
    }
}

/// Hands the six checked fields to croner. Anything croner still refuses is
/// blamed on the first field that it also refuses alone, all other fields
/// being `*` or `?`, so that the message can name the field.
fn compile(fields: &[&str; 6]) -> Result<Cron, ScheduleError> {
    let parser = croner_parser();
    let pattern = |fields: &[&str; 6]| {
        let fields: Vec<Cow<'_, str>> = fields
            .iter()
            .enumerate()
            .map(|(index, text)| to_croner(index, text))
            .collect();
        format!("0 {}", fields.join(" "))
    };
    let error = match parser.parse(&pattern(fields)) {
        Ok(cron) => return Ok(cron),
        Err(error) => error,
    };
    for (index, text) in fields.iter().enumerate() {
        let mut alone = ["*", "*", "*", "*", "?", "*"];
        if index == 4 {
            alone[2] = "?";
        }
        alone[index] = text;
        if let Err(error) = parser.parse(&pattern(&alone)) {
            return Err(ScheduleError::new(format!(
                "invalid {} field {}: {error}",
                FIELD_NAMES[index],
                quote(text)
            )));
        }
    }
    Err(ScheduleError::new(format!(
        "invalid cron expression {}: {error}",
        quote(&fields.join(" "))
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn croner_errors_name_the_field() {
        // Text that the AWS checks would stop, given straight to croner.
        for (fields, expected) in [
            (
                ["61", "10", "*", "*", "?", "*"],
                "invalid minute field '61': ",
            ),
            (
                ["0", "10", "?", "*", "1-2-3", "*"],
                "invalid day-of-week field '1-2-3': ",
            ),
            (
                ["0", "10", "*", "*", "?", "20x0"],
                "invalid year field '20x0': ",
            ),
        ] {
            match compile(&fields) {
                Ok(cron) => panic!("{fields:?} compiled to {cron:?}"),
                Err(e) => assert!(e.message.starts_with(expected), "{fields:?}: {e}"),
            }
        }
    }

    #[test]
    fn aws_forms_are_rewritten_for_croner() {
        assert_eq!(to_croner(4, "l"), "7");
        assert_eq!(to_croner(4, "7L"), "7L");
        assert_eq!(to_croner(5, "*"), "1970-2199");
        assert_eq!(
            to_croner(5, "*/100,2024/2,2030-2040/5,2050"),
            "1970-2199/100,2024-2199/2,2030-2040/5,2050"
        );
        assert_eq!(to_croner(0, "*/15"), "*/15");
    }

    #[test]
    fn last_year_of_the_year_field() {
        for (field, expected) in [
            ("*", 2199),
            ("2024", 2024),
            ("2020-2022,2019", 2022),
            ("*/100", 2170),
            ("2150/20", 2190),
            ("2024-2031/3", 2030),
            ("1970", 1970),
        ] {
            assert_eq!(last_year(field), expected, "{field}");
        }
    }
}
