//! The AWS rules for the text of each cron field, checked before croner sees it.
//!
//! croner parses a wider dialect than AWS accepts: it skips empty list items,
//! takes `?` anywhere in the day fields, reads the `+` and `@` extensions,
//! replaces weekday and month names anywhere in the pattern, and knows no
//! bounds on years or increments. So every field is checked here first, with
//! messages that name the field and the offending text; only text that passes
//! is handed to croner, which builds the value sets and does the calendar.
//! Nothing here computes which values a field matches.
//!
//! Every field shares one grammar (`5`, `1,3`, `MON-FRI`, `*/15`, `10-40/5`);
//! what differs between fields is data, held in a [`FieldSpec`]. The two day
//! fields add `?` and the special forms `L`, `W` and `#`
//! ([`check_day_fields`]).

use super::error::{quote, ScheduleError};

/// The bounds, names and operators of one cron field.
#[derive(Debug)]
pub(crate) struct FieldSpec {
    /// The field's name as used in error messages.
    pub name: &'static str,
    pub min: u16,
    pub max: u16,
    /// Three-letter names for `min`, `min + 1`, ..., matched case-insensitively.
    pub names: &'static [&'static str],
    /// Whether `/` increments are allowed (AWS documents none for day-of-week).
    pub allows_step: bool,
    /// What the AWS documentation lists for the field, quoted in errors.
    pub allowed: &'static str,
}

pub(crate) const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    allows_step: true,
    allowed: ", - * /",
};

pub(crate) const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    allows_step: true,
    allowed: ", - * /",
};

pub(crate) const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allows_step: true,
    allowed: ", - * ? / L W",
};

pub(crate) const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    allows_step: true,
    allowed: ", - * /",
};

/// Day-of-week counts from 1 = Sunday, as in AWS (and Quartz), not ISO.
pub(crate) const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    allows_step: false,
    allowed: ", - * ? L #",
};

/// croner counts years up to 5000; the AWS syntax ends with 2199.
pub(crate) const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
    allows_step: true,
    allowed: ", - * /",
};

/// Checks a field made only of numbers, names, `*`, `,`, `-` and `/`.
pub(crate) fn check_values(text: &str, spec: &FieldSpec) -> Result<(), ScheduleError> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err(ScheduleError::new(format!(
                "{} field {} has an empty list item",
                spec.name,
                quote(text)
            )));
        }
        check_item(item, spec)?;
    }
    Ok(())
}

/// Checks one list item: `*`, a value, or a range, optionally with `/step`.
fn check_item(item: &str, spec: &FieldSpec) -> Result<(), ScheduleError> {
    let base = match item.split_once('/') {
        None => item,
        Some(_) if !spec.allows_step => {
            return Err(ScheduleError::new(format!(
                "the {} field does not allow '/' increments (allowed: {})",
                spec.name, spec.allowed
            )))
        }
        Some((base, step)) => {
            check_step(step, spec)?;
            base
        }
    };
    if base == "*" {
        return Ok(());
    }
    let Some((from, to)) = base.split_once('-') else {
        // `5/10` means "from 5 to the end of the field, every 10".
        return parse_value(base, spec).map(|_| ());
    };
    if from.is_empty() || to.is_empty() {
        return Err(ScheduleError::new(format!(
            "incomplete range {} in the {} field",
            quote(base),
            spec.name
        )));
    }
    if parse_value(from, spec)? > parse_value(to, spec)? {
        // Quartz wraps such ranges (FRI-MON); AWS does not document it, so it
        // is refused rather than guessed at (croner refuses it too).
        return Err(ScheduleError::new(format!(
            "{} range {} goes backwards: the start must not be after the end",
            spec.name,
            quote(base)
        )));
    }
    Ok(())
}

fn check_step(text: &str, spec: &FieldSpec) -> Result<(), ScheduleError> {
    if !is_digits(text) {
        return Err(ScheduleError::new(format!(
            "{} increment {} is not a positive whole number",
            spec.name,
            quote(text)
        )));
    }
    // An increment wider than the field would only ever hit its first value;
    // allow up to the span (`*/60` on minutes) and refuse anything larger.
    let span = u32::from(spec.max - spec.min + 1);
    match parse_number(text) {
        Some(step) if (1..=span).contains(&step) => Ok(()),
        _ => Err(ScheduleError::new(format!(
            "{} increment {text} is out of range 1-{span}",
            spec.name
        ))),
    }
}

/// Parses a single number or name and checks it against the field's bounds.
pub(crate) fn parse_value(text: &str, spec: &FieldSpec) -> Result<u16, ScheduleError> {
    if is_digits(text) {
        // Too many digits for a u32 is just another out-of-range value.
        return match parse_number(text).and_then(|n| u16::try_from(n).ok()) {
            Some(n) if (spec.min..=spec.max).contains(&n) => Ok(n),
            _ => Err(ScheduleError::new(format!(
                "{} value {text} is out of range {}-{}",
                spec.name, spec.min, spec.max
            ))),
        };
    }
    if !spec.names.is_empty() && !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        // Only this field's own names: croner would read `JAN` in the
        // day-of-week field as 1, Sunday.
        let index = spec
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text));
        return match index.and_then(|i| u16::try_from(i).ok()) {
            Some(i) => Ok(spec.min + i),
            None => Err(ScheduleError::new(format!(
                "unknown {} name {}",
                spec.name,
                quote(text)
            ))),
        };
    }
    let names = if spec.names.is_empty() {
        String::new()
    } else {
        format!(
            " or {}-{}",
            spec.names.first().copied().unwrap_or_default(),
            spec.names.last().copied().unwrap_or_default()
        )
    };
    Err(ScheduleError::new(format!(
        "invalid {} value {}: the field allows {}-{}{names} and {}",
        spec.name,
        quote(text),
        spec.min,
        spec.max,
        spec.allowed
    )))
}

const EXACTLY_ONE: &str = "day-of-month and day-of-week: exactly one must be '?'";

/// Checks the two day fields, which say the same thing two ways: exactly one
/// of them must be `?` ("no constraint"), and only they may contain it.
pub(crate) fn check_day_fields(day_of_month: &str, day_of_week: &str) -> Result<(), ScheduleError> {
    match (
        check_day_of_month(day_of_month)?,
        check_day_of_week(day_of_week)?,
    ) {
        (Constraint::Some, Constraint::None) | (Constraint::None, Constraint::Some) => Ok(()),
        (Constraint::None, Constraint::None) => {
            Err(ScheduleError::new(format!("{EXACTLY_ONE}, but both are")))
        }
        (Constraint::Some, Constraint::Some) => Err(ScheduleError::new(format!(
            "{EXACTLY_ONE}, but neither is (put '?' in the field you do not use)"
        ))),
    }
}

/// Whether a day field constrains the day (`None` for `?`).
enum Constraint {
    None,
    Some,
}

/// Day-of-month adds `L` (last day), `LW` (last weekday) and `15W` (the
/// weekday nearest the 15th, never leaving the month), each standing alone.
fn check_day_of_month(text: &str) -> Result<Constraint, ScheduleError> {
    let spec = &DAY_OF_MONTH;
    if text == "?" {
        return Ok(Constraint::None);
    }
    if text.contains('?') {
        return Err(stand_alone("'?'", spec.name, ""));
    }
    if text.eq_ignore_ascii_case("L") || text.eq_ignore_ascii_case("LW") {
        return Ok(Constraint::Some);
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
            Some(n) if (1..=31).contains(&n) => Ok(Constraint::Some),
            _ => Err(ScheduleError::new(format!(
                "day-of-month value {day} in {} is out of range 1-31",
                quote(text)
            ))),
        };
    }
    if text.contains(['L', 'l', 'W', 'w']) {
        return Err(stand_alone("'L' and 'W'", spec.name, "'L', 'LW' or '15W'"));
    }
    check_values(text, spec).map(|()| Constraint::Some)
}

/// Day-of-week adds `L` alone (Saturday, as in Quartz: every Saturday, not
/// the last one of the month), `6L` (the last Friday of the month) and `6#2`
/// (the second Friday), the last two standing alone.
fn check_day_of_week(text: &str) -> Result<Constraint, ScheduleError> {
    let spec = &DAY_OF_WEEK;
    if text == "?" {
        return Ok(Constraint::None);
    }
    if text.contains('?') {
        return Err(stand_alone("'?'", spec.name, ""));
    }
    if text.eq_ignore_ascii_case("L") {
        return Ok(Constraint::Some);
    }
    // A single weekday is all `#` and `nL` combine with; lists of them are
    // rejected, as Quartz does, rather than given a meaning of our own.
    let is_single = |day: &str| !day.contains([',', '-', '*', '/', '#']);
    if let Some((day, occurrence)) = text.split_once('#') {
        if !is_single(day) || !is_single(occurrence) {
            return Err(stand_alone("'#'", spec.name, "'FRI#2' or '6#2'"));
        }
        parse_value(day, spec)?;
        return match parse_number(occurrence) {
            Some(1..=5) => Ok(Constraint::Some),
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
        return parse_value(day, spec).map(|_| Constraint::Some);
    }
    check_values(text, spec).map(|()| Constraint::Some)
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

/// Whether `text` is a non-empty run of ASCII digits.
pub(crate) fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Decimal digits only: `str::parse` alone would also take a leading `+`.
/// `None` also for numbers too large for a `u32`.
pub(crate) fn parse_number(text: &str) -> Option<u32> {
    if !is_digits(text) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ranges_increments_and_names_pass() {
        for (text, spec) in [
            ("*/15", &MINUTE),
            ("5/10", &MINUTE),
            ("10-40/5", &MINUTE),
            ("*/60", &MINUTE),
            ("1,3,5-7", &HOUR),
            ("jan,Mar-MAY", &MONTH),
            ("MON-fri", &DAY_OF_WEEK),
            ("2198-2199", &YEAR),
            ("*/100", &YEAR),
            ("0005", &MINUTE),
        ] {
            if let Err(e) = check_values(text, spec) {
                panic!("{text}: {e}");
            }
        }
    }

    #[test]
    #[rustfmt::skip] // one row per line reads as a table
    fn rejects_with_the_field_name() {
        let cases = [
            ("60", &MINUTE, "minute value 60 is out of range 0-59"),
            ("99999999999999", &HOUR, "hour value 99999999999999 is out of range"),
            ("*/0", &MINUTE, "minute increment 0 is out of range 1-60"),
            ("*/231", &YEAR, "year increment 231 is out of range 1-230"),
            ("*/x", &MINUTE, "minute increment 'x' is not a positive whole number"),
            ("*/+5", &MINUTE, "not a positive whole number"),
            ("1/2", &DAY_OF_WEEK, "does not allow '/'"),
            ("5-", &HOUR, "incomplete range '5-'"),
            ("40-10", &MINUTE, "minute range '40-10' goes backwards"),
            ("FRI-MON", &DAY_OF_WEEK, "goes backwards"),
            ("foo", &MONTH, "unknown month name 'foo'"),
            ("MON", &MONTH, "unknown month name 'MON'"),
            ("JAN", &DAY_OF_WEEK, "unknown day-of-week name 'JAN'"),
            ("abc", &MINUTE, "invalid minute value 'abc'"),
            ("1,,2", &MINUTE, "empty list item"),
            ("2024,", &YEAR, "empty list item"),
            ("+5", &MINUTE, "invalid minute value '+5'"),
            ("1-2-3", &MINUTE, "invalid minute value '2-3'"),
        ];
        for (text, spec, expected) in cases {
            match check_values(text, spec) {
                Ok(()) => panic!("{text} passed"),
                Err(e) => assert!(e.message.contains(expected), "{text}: {e}"),
            }
        }
    }
}
