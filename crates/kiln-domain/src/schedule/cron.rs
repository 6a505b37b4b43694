//! `cron(...)` expressions: splitting the six fields and finding the next run.
//!
//! Parsing hands each field to `field.rs` (or, for the two day fields, to
//! `day.rs`) and keeps the resulting sets. The search for the next run walks
//! the calendar from the coarsest unit down - year, month, day, hour, minute -
//! only ever visiting values that are in the sets, so a sparse expression
//! skips whole years at once and the worst case (no run before 2199) is a few
//! thousand month masks, never a minute-by-minute scan.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::day::DayRule;
use super::error::ScheduleError;
use super::field::{parse_values, ValueSet, YearSet, HOUR, MINUTE, MONTH, YEAR};

/// A parsed `cron(minute hour day-of-month month day-of-week year)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    minutes: ValueSet,
    hours: ValueSet,
    days: DayRule,
    months: ValueSet,
    years: YearSet,
}

const FIELD_NAMES: &str = "minute hour day-of-month month day-of-week year";

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
        let [minute, hour, day_of_month, month, day_of_week, year] = fields[..] else {
            return Err(ScheduleError::new(format!(
                "cron expression must have 6 fields ({FIELD_NAMES}), found {}",
                fields.len()
            )));
        };
        Ok(Self {
            minutes: parse_values(minute, &MINUTE)?,
            hours: parse_values(hour, &HOUR)?,
            days: DayRule::parse(day_of_month, day_of_week)?,
            months: parse_values(month, &MONTH)?,
            years: parse_values(year, &YEAR)?,
        })
    }

    /// See [`super::ScheduleExpression::next_after`].
    ///
    /// Candidates are generated in local wall-clock order and each is mapped
    /// to an instant: a wall time inside a spring-forward gap has no instant
    /// and is skipped; one inside a fall-back overlap maps to its earlier
    /// instant only, so it fires once. With that mapping instants grow with
    /// wall time, so the first candidate after `after` is the answer, and the
    /// walk can start at `after`'s own wall-clock minute.
    pub(crate) fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = after.with_timezone(&tz).naive_local();
        self.dates_from(start.date()).find_map(|date| {
            let from = if date == start.date() {
                start.time()
            } else {
                NaiveTime::MIN
            };
            self.first_run_on(date, from, after, tz)
        })
    }

    /// The matching dates on or after `from`, ascending, up to 2199.
    fn dates_from(&self, from: NaiveDate) -> impl Iterator<Item = NaiveDate> + '_ {
        // Years before 0 clamp to 0 (and so to 1970); after u16 to nothing.
        let first_year = u16::try_from(from.year().max(0)).unwrap_or(u16::MAX);
        self.years
            .iter_from(first_year)
            .map(i32::from)
            .flat_map(move |year| {
                self.months
                    .iter_from(1)
                    .map(u32::from)
                    .flat_map(move |month| {
                        let mask = self.days.days_in(year, month);
                        (1..=31)
                            .filter(move |day| mask & (1 << day) != 0)
                            .filter_map(move |day| NaiveDate::from_ymd_opt(year, month, day))
                    })
            })
            // Costs at most the rest of the first year's months to skip.
            .filter(move |date| *date >= from)
    }

    /// The first run on `date` at or after wall time `from` (seconds
    /// ignored) that is also strictly after `after`.
    fn first_run_on(
        &self,
        date: NaiveDate,
        from: NaiveTime,
        after: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let to_u16 = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        for hour in self.hours.iter_from(to_u16(from.hour())) {
            let first_minute = if u32::from(hour) == from.hour() {
                from.minute()
            } else {
                0
            };
            for minute in self.minutes.iter_from(to_u16(first_minute)) {
                let local = date.and_hms_opt(u32::from(hour), u32::from(minute), 0)?;
                // `earliest` is None in a gap and the first of two instants
                // in an overlap: the DST rules above.
                let fire = tz.from_local_datetime(&local).earliest();
                if let Some(instant) = fire.map(|t| t.with_timezone(&Utc)) {
                    // Fails only in an overlap that `after` is already past.
                    if instant > after {
                        return Some(instant);
                    }
                }
            }
        }
        None
    }
}
