//! The plain numeric part of a cron field: lists, ranges, increments, names.
//!
//! Every one of the six fields shares this grammar (`5`, `1,3`, `MON-FRI`,
//! `*/15`, `10-40/5`); the day fields add their own special forms (`?`, `L`,
//! `W`, `#`) in `day.rs` and fall back to this parser for everything else.
//! What differs between fields is data, held in a [`FieldSpec`], so that the
//! rules and the error messages stay uniform.

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

pub(crate) const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
    allows_step: true,
    allowed: ", - * /",
};

/// A set of field values, `WORDS` x 64 bits counted from the field's minimum.
/// One word covers every field but the year (230 values), which takes four;
/// sizing per field keeps [`super::CronExpr`] small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueSet<const WORDS: usize = 1> {
    min: u16,
    max: u16,
    bits: [u64; WORDS],
}

/// The years 1970-2199.
pub(crate) type YearSet = ValueSet<4>;

impl<const WORDS: usize> ValueSet<WORDS> {
    fn empty(spec: &FieldSpec) -> Self {
        Self {
            min: spec.min,
            max: spec.max,
            bits: [0; WORDS],
        }
    }

    /// A set holding a single value (used for `L` = Saturday in day-of-week).
    pub fn single(spec: &FieldSpec, value: u16) -> Self {
        let mut set = Self::empty(spec);
        set.insert(value);
        set
    }

    /// The word and bit of `value`, or `None` outside the set's range.
    fn position(&self, value: u16) -> Option<(usize, u64)> {
        let offset = usize::from(value.checked_sub(self.min)?);
        (value <= self.max && offset / 64 < WORDS).then(|| (offset / 64, 1 << (offset % 64)))
    }

    fn insert(&mut self, value: u16) {
        if let Some((word, bit)) = self.position(value) {
            self.bits[word] |= bit;
        }
    }

    pub fn contains(&self, value: u16) -> bool {
        self.position(value)
            .is_some_and(|(word, bit)| self.bits[word] & bit != 0)
    }

    /// The members not smaller than `from`, ascending.
    pub fn iter_from(&self, from: u16) -> impl Iterator<Item = u16> + '_ {
        (from.max(self.min)..=self.max).filter(move |v| self.contains(*v))
    }
}

/// Parses a field made only of numbers, names, `*`, `,`, `-` and `/`.
pub(crate) fn parse_values<const WORDS: usize>(
    text: &str,
    spec: &FieldSpec,
) -> Result<ValueSet<WORDS>, ScheduleError> {
    let mut set = ValueSet::empty(spec);
    for item in text.split(',') {
        if item.is_empty() {
            return Err(ScheduleError::new(format!(
                "{} field {} has an empty list item",
                spec.name,
                quote(text)
            )));
        }
        let (first, last, step) = parse_item(item, spec)?;
        let mut value = first;
        while value <= last {
            set.insert(value);
            // Saturating: the loop ends once past `last`, and `last` <= 2199.
            value = value.saturating_add(step);
        }
    }
    Ok(set)
}

/// Parses one list item into `(first, last, step)`.
fn parse_item(item: &str, spec: &FieldSpec) -> Result<(u16, u16, u16), ScheduleError> {
    let (base, step) = match item.split_once('/') {
        None => (item, None),
        Some(_) if !spec.allows_step => {
            return Err(ScheduleError::new(format!(
                "the {} field does not allow '/' increments (allowed: {})",
                spec.name, spec.allowed
            )))
        }
        Some((base, step)) => (base, Some(parse_step(step, spec)?)),
    };
    let (first, last) = if base == "*" {
        (spec.min, spec.max)
    } else if let Some((from, to)) = base.split_once('-') {
        if from.is_empty() || to.is_empty() {
            return Err(ScheduleError::new(format!(
                "incomplete range {} in the {} field",
                quote(base),
                spec.name
            )));
        }
        let (start, end) = (parse_value(from, spec)?, parse_value(to, spec)?);
        if start > end {
            // Quartz wraps such ranges (FRI-MON); AWS does not document it,
            // so it is refused rather than guessed at.
            return Err(ScheduleError::new(format!(
                "{} range {} goes backwards: the start must not be after the end",
                spec.name,
                quote(base)
            )));
        }
        (start, end)
    } else {
        let value = parse_value(base, spec)?;
        // `5/10` means "from 5 to the end of the field, every 10".
        (value, if step.is_some() { spec.max } else { value })
    };
    Ok((first, last, step.unwrap_or(1)))
}

fn parse_step(text: &str, spec: &FieldSpec) -> Result<u16, ScheduleError> {
    if !is_digits(text) {
        return Err(ScheduleError::new(format!(
            "{} increment {} is not a positive whole number",
            spec.name,
            quote(text)
        )));
    }
    // An increment wider than the field would only ever hit its first value;
    // allow up to the span (`*/60` on minutes) and refuse anything larger.
    let span = spec.max - spec.min + 1;
    match parse_number(text).and_then(|n| u16::try_from(n).ok()) {
        Some(step) if (1..=span).contains(&step) => Ok(step),
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

    fn values(text: &str, spec: &FieldSpec) -> Vec<u16> {
        match parse_values::<4>(text, spec) {
            Ok(set) => set.iter_from(0).collect(),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn lists_ranges_and_increments() {
        assert_eq!(values("*/15", &MINUTE), [0, 15, 30, 45]);
        assert_eq!(values("5/10", &MINUTE), [5, 15, 25, 35, 45, 55]);
        assert_eq!(values("10-40/5", &MINUTE), [10, 15, 20, 25, 30, 35, 40]);
        assert_eq!(values("1,3,5-7", &HOUR), [1, 3, 5, 6, 7]);
        assert_eq!(values("jan,Mar-MAY", &MONTH), [1, 3, 4, 5]);
        assert_eq!(values("MON-fri", &DAY_OF_WEEK), [2, 3, 4, 5, 6]);
        assert_eq!(values("2198-2199", &YEAR), [2198, 2199]);
        assert_eq!(values("*/100", &YEAR), [1970, 2070, 2170]);
        assert_eq!(values("*/60", &MINUTE), [0]);
    }

    #[test]
    #[rustfmt::skip] // one row per line reads as a table
    fn rejects_with_the_field_name() {
        let cases = [
            ("60", &MINUTE, "minute value 60 is out of range 0-59"),
            ("99999999999999", &HOUR, "hour value 99999999999999 is out of range"),
            ("*/0", &MINUTE, "minute increment 0 is out of range 1-60"),
            ("*/x", &MINUTE, "minute increment 'x' is not a positive whole number"),
            ("*/+5", &MINUTE, "not a positive whole number"),
            ("1/2", &DAY_OF_WEEK, "does not allow '/'"),
            ("5-", &HOUR, "incomplete range '5-'"),
            ("40-10", &MINUTE, "minute range '40-10' goes backwards"),
            ("FRI-MON", &DAY_OF_WEEK, "goes backwards"),
            ("foo", &MONTH, "unknown month name 'foo'"),
            ("abc", &MINUTE, "invalid minute value 'abc'"),
            ("1,,2", &MINUTE, "empty list item"),
            ("+5", &MINUTE, "invalid minute value '+5'"),
            ("1-2-3", &MINUTE, "invalid minute value '2-3'"),
        ];
        for (text, spec, expected) in cases {
            match parse_values::<4>(text, spec) {
                Ok(set) => panic!("{text} parsed as {set:?}"),
                Err(e) => assert!(e.message.contains(expected), "{text}: {e}"),
            }
        }
    }
}
