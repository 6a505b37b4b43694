//! Which days of a month a cron expression fires on.
//!
//! The day-of-month and day-of-week fields are two ways of saying the same
//! thing, so AWS makes exactly one of them `?` ("no constraint"). This file
//! folds the pair into one [`DayRule`] and answers, for a given month, the
//! set of matching days as a bit mask. Working a month at a time is what keeps
//! the search in `cron.rs` fast: `L`, `W` and `#` depend on the whole month
//! (its length, the weekday of its first day), and an impossible date such as
//! February 30 costs one empty mask per month instead of a day-by-day walk.

use chrono::{Datelike, NaiveDate};

use super::error::{quote, ScheduleError};
use super::field::{
    is_digits, parse_number, parse_value, parse_values, ValueSet, DAY_OF_MONTH, DAY_OF_WEEK,
};

/// The day constraint of a cron expression: the field that is not `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DayRule {
    Month(DayOfMonth),
    Week(DayOfWeek),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DayOfMonth {
    /// Plain days, `*`, lists, ranges, increments.
    Days(ValueSet),
    /// `L`: the last day of the month.
    Last,
    /// `LW`: the last weekday (Monday-Friday) of the month.
    LastWeekday,
    /// `nW`: the weekday nearest to day `n`, never leaving the month.
    NearestWeekday(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DayOfWeek {
    /// Plain weekdays, 1 = Sunday ... 7 = Saturday (`L` alone means 7).
    Days(ValueSet),
    /// `nL`: the last weekday `n` of the month, e.g. `6L` = last Friday.
    LastOfMonth(u32),
    /// `n#k`: the `k`-th weekday `n` of the month, e.g. `6#2` = 2nd Friday.
    Nth { weekday: u32, occurrence: u32 },
}

const EXACTLY_ONE: &str = "day-of-month and day-of-week: exactly one must be '?'";

impl DayRule {
    /// Parses the two day fields; exactly one of them must be `?`.
    pub fn parse(day_of_month: &str, day_of_week: &str) -> Result<Self, ScheduleError> {
        match (
            parse_day_of_month(day_of_month)?,
            parse_day_of_week(day_of_week)?,
        ) {
            (Some(rule), None) => Ok(Self::Month(rule)),
            (None, Some(rule)) => Ok(Self::Week(rule)),
            (None, None) => Err(ScheduleError::new(format!("{EXACTLY_ONE}, but both are"))),
            (Some(_), Some(_)) => Err(ScheduleError::new(format!(
                "{EXACTLY_ONE}, but neither is (put '?' in the field you do not use)"
            ))),
        }
    }

    /// The matching days of `month` in `year`: bit `d` set for day `d`.
    pub fn days_in(&self, year: i32, month: u32) -> u32 {
        let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
            return 0;
        };
        let month = Month {
            length: days_in_month(year, month),
            first_weekday: first.weekday().number_from_sunday(),
        };
        match self {
            Self::Month(rule) => month.days_of_month(rule),
            Self::Week(rule) => month.days_of_week(rule),
        }
    }
}

/// The two facts about a month that every day rule needs.
struct Month {
    length: u32,
    /// 1 = Sunday ... 7 = Saturday.
    first_weekday: u32,
}

const SUNDAY: u32 = 1;
const SATURDAY: u32 = 7;

impl Month {
    fn weekday(&self, day: u32) -> u32 {
        (self.first_weekday - 1 + day - 1) % 7 + 1
    }

    fn days_of_month(&self, rule: &DayOfMonth) -> u32 {
        match rule {
            DayOfMonth::Days(set) => (1..=self.length)
                .filter(|d| u16::try_from(*d).is_ok_and(|d| set.contains(d)))
                .fold(0, |mask, d| mask | 1 << d),
            DayOfMonth::Last => 1 << self.length,
            DayOfMonth::LastWeekday => {
                let last = self.length;
                1 << match self.weekday(last) {
                    SATURDAY => last - 1,
                    SUNDAY => last - 2,
                    _ => last,
                }
            }
            // `31W` in a 30-day month does not fire, exactly as `31` would
            // not: the documented rule only ever moves within the month.
            DayOfMonth::NearestWeekday(day) if *day > self.length => 0,
            DayOfMonth::NearestWeekday(day) => {
                let day = *day;
                1 << match self.weekday(day) {
                    // Saturday the 1st moves forward to Monday the 3rd rather
                    // than back into the previous month.
                    SATURDAY if day == 1 => 3,
                    SATURDAY => day - 1,
                    // Likewise a Sunday on the last day moves back to Friday.
                    SUNDAY if day == self.length => day - 2,
                    SUNDAY => day + 1,
                    _ => day,
                }
            }
        }
    }

    fn days_of_week(&self, rule: &DayOfWeek) -> u32 {
        match rule {
            DayOfWeek::Days(set) => (1..=self.length)
                .filter(|d| u16::try_from(self.weekday(*d)).is_ok_and(|w| set.contains(w)))
                .fold(0, |mask, d| mask | 1 << d),
            DayOfWeek::LastOfMonth(weekday) => {
                let last = self.length;
                1 << (last - (self.weekday(last) + 7 - weekday) % 7)
            }
            DayOfWeek::Nth {
                weekday,
                occurrence,
            } => {
                let first = 1 + (weekday + 7 - self.first_weekday) % 7;
                let day = first + 7 * (occurrence - 1);
                if day <= self.length {
                    1 << day
                } else {
                    0
                }
            }
        }
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `None` for `?`.
fn parse_day_of_month(text: &str) -> Result<Option<DayOfMonth>, ScheduleError> {
    let spec = &DAY_OF_MONTH;
    if text == "?" {
        return Ok(None);
    }
    if text.contains('?') {
        return Err(stand_alone("'?'", spec.name, ""));
    }
    if text.eq_ignore_ascii_case("L") {
        return Ok(Some(DayOfMonth::Last));
    }
    if text.eq_ignore_ascii_case("LW") {
        return Ok(Some(DayOfMonth::LastWeekday));
    }
    // `get`, not indexing: the first two bytes may split a multibyte char.
    if text.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("L-")) {
        return Err(ScheduleError::new(format!(
            "day-of-month {} (days before the last day) is not supported; use 'L' for the last day or 'LW' for the last weekday",
            quote(text)
        )));
    }
    if let Some(day) = strip_suffix_ignore_case(text, 'W').filter(|d| is_digits(d)) {
        return match parse_number(day) {
            Some(n) if (1..=31).contains(&n) => Ok(Some(DayOfMonth::NearestWeekday(n))),
            _ => Err(ScheduleError::new(format!(
                "day-of-month value {day} in {} is out of range 1-31",
                quote(text)
            ))),
        };
    }
    if text.contains(['L', 'l', 'W', 'w']) {
        return Err(stand_alone("'L' and 'W'", spec.name, "'L', 'LW' or '15W'"));
    }
    parse_values(text, spec).map(|set| Some(DayOfMonth::Days(set)))
}

/// `None` for `?`.
fn parse_day_of_week(text: &str) -> Result<Option<DayOfWeek>, ScheduleError> {
    let spec = &DAY_OF_WEEK;
    if text == "?" {
        return Ok(None);
    }
    if text.contains('?') {
        return Err(stand_alone("'?'", spec.name, ""));
    }
    // As in Quartz, `L` alone is the last day of the week, Saturday: every
    // Saturday, not the last Saturday of the month (that is `7L`).
    if text.eq_ignore_ascii_case("L") {
        return Ok(Some(DayOfWeek::Days(ValueSet::single(spec, 7))));
    }
    // A single weekday is all `#` and `nL` combine with; lists of them are
    // rejected, as Quartz does, rather than given a meaning of our own.
    let is_single = |day: &str| !day.contains([',', '-', '*', '/', '#']);
    if let Some((day, occurrence)) = text.split_once('#') {
        if !is_single(day) || !is_single(occurrence) {
            return Err(stand_alone("'#'", spec.name, "'FRI#2' or '6#2'"));
        }
        let weekday = u32::from(parse_value(day, spec)?);
        return match parse_number(occurrence) {
            Some(occurrence) if (1..=5).contains(&occurrence) => Ok(Some(DayOfWeek::Nth {
                weekday,
                occurrence,
            })),
            _ => Err(ScheduleError::new(format!(
                "day-of-week occurrence {} in {} is out of range 1-5",
                quote(occurrence),
                quote(text)
            ))),
        };
    }
    // No weekday name ends in L, so a trailing L is always the `nL` form.
    if let Some(day) = strip_suffix_ignore_case(text, 'L') {
        if !is_single(day) {
            return Err(stand_alone("'L'", spec.name, "'L' or '6L'"));
        }
        let weekday = u32::from(parse_value(day, spec)?);
        return Ok(Some(DayOfWeek::LastOfMonth(weekday)));
    }
    parse_values(text, spec).map(|set| Some(DayOfWeek::Days(set)))
}

/// `example` may be empty.
fn stand_alone(what: &str, field: &str, example: &str) -> ScheduleError {
    let example = if example.is_empty() {
        String::new()
    } else {
        format!(" (as in {example})")
    };
    ScheduleError::new(format!(
        "{what} must stand alone in the {field} field{example}, not in a list or range"
    ))
}

fn strip_suffix_ignore_case(text: &str, suffix: char) -> Option<&str> {
    text.strip_suffix(suffix.to_ascii_uppercase())
        .or_else(|| text.strip_suffix(suffix.to_ascii_lowercase()))
}
