//! `next_after`: one row per (expression, after, zone) and the expected run.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::schedule::{parse_timezone, ScheduleExpression};

fn instant(text: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("bad test timestamp {text}: {e}"),
    }
}

fn zone(name: &str) -> Tz {
    match parse_timezone(name) {
        Ok(tz) => tz,
        Err(e) => panic!("{e}"),
    }
}

/// Runs each row and reports every mismatch at once, so one broken rule does
/// not hide the others.
fn check(rows: &[(&str, &str, &str, Option<&str>)]) {
    let mut failures = Vec::new();
    for &(expression, after, tz, expected) in rows {
        let parsed = match ScheduleExpression::parse(expression) {
            Ok(parsed) => parsed,
            Err(e) => {
                failures.push(format!("{expression}: did not parse: {e}"));
                continue;
            }
        };
        let got = parsed.next_after(instant(after), zone(tz));
        if got != expected.map(instant) {
            failures.push(format!(
                "{expression} after {after} in {tz}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
#[rustfmt::skip] // one row per line reads as a table
fn cron_fields_and_calendar_rules() {
    check(&[
        // Daily; "strictly after" skips a run at exactly `after`.
        ("cron(0 10 * * ? *)", "2024-05-01T09:00:00Z", "UTC", Some("2024-05-01T10:00:00Z")),
        ("cron(0 10 * * ? *)", "2024-05-01T10:00:00Z", "UTC", Some("2024-05-02T10:00:00Z")),
        ("cron(0 10 * * ? *)", "2024-05-01T09:59:59.999Z", "Etc/UTC", Some("2024-05-01T10:00:00Z")),
        ("cron(0 10 ? * * *)", "2024-05-01T10:00:00Z", "UTC", Some("2024-05-02T10:00:00Z")),
        // Weekdays, 1 = Sunday: Friday 2024-05-03 -> Monday 2024-05-06.
        ("cron(0 10 ? * 2-6 *)", "2024-05-03T10:00:00Z", "UTC", Some("2024-05-06T10:00:00Z")),
        ("cron(0 18 ? * mon-fri *)", "2024-05-04T00:00:00Z", "UTC", Some("2024-05-06T18:00:00Z")),
        ("cron(0 18 ? * MON-FRI *)", "2024-05-06T17:00:00Z", "UTC", Some("2024-05-06T18:00:00Z")),
        ("cron(0 10 ? * 1 *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-05T10:00:00Z")),
        ("cron(0 10 ? * SUN *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-05T10:00:00Z")),
        // `L` alone in day-of-week is Saturday.
        ("cron(0 12 ? * L *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-04T12:00:00Z")),
        // First of the month, across a year end.
        ("cron(0 8 1 * ? *)", "2024-01-15T00:00:00Z", "UTC", Some("2024-02-01T08:00:00Z")),
        ("cron(0 8 1 * ? *)", "2024-12-01T08:00:00Z", "UTC", Some("2025-01-01T08:00:00Z")),
        // 2nd Tuesday: May 2024 -> the 14th, June 2024 -> the 11th.
        ("cron(30 22 ? * tue#2 *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-14T22:30:00Z")),
        ("cron(30 22 ? * 3#2 *)", "2024-05-14T22:30:00Z", "UTC", Some("2024-06-11T22:30:00Z")),
        // 5th Sunday: none in May 2024, June 30th.
        ("cron(0 0 ? * 1#5 *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-06-30T00:00:00Z")),
        // Last day of the month, leap and non-leap Februaries (2100 is not leap).
        ("cron(0 0 L * ? *)", "2024-02-01T00:00:00Z", "UTC", Some("2024-02-29T00:00:00Z")),
        ("cron(0 0 L * ? *)", "2023-02-01T00:00:00Z", "UTC", Some("2023-02-28T00:00:00Z")),
        ("cron(0 0 L * ? *)", "2024-02-29T00:00:00Z", "UTC", Some("2024-03-31T00:00:00Z")),
        ("cron(0 0 l * ? *)", "2100-02-01T00:00:00Z", "UTC", Some("2100-02-28T00:00:00Z")),
        // Nearest weekday: Saturday 15th -> Friday 14th, Sunday 15th -> Monday 16th.
        ("cron(0 0 15W * ? *)", "2024-06-01T00:00:00Z", "UTC", Some("2024-06-14T00:00:00Z")),
        ("cron(0 0 15W * ? *)", "2024-09-01T00:00:00Z", "UTC", Some("2024-09-16T00:00:00Z")),
        ("cron(0 0 15W * ? *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-15T00:00:00Z")),
        // Saturday the 1st moves forward to Monday the 3rd, not back into May.
        ("cron(0 0 1W * ? *)", "2024-05-02T00:00:00Z", "UTC", Some("2024-06-03T00:00:00Z")),
        ("cron(0 0 1W * ? *)", "2024-08-02T00:00:00Z", "UTC", Some("2024-09-02T00:00:00Z")),
        // `31W` never fires in a 30-day month.
        ("cron(0 0 31W * ? *)", "2024-04-01T00:00:00Z", "UTC", Some("2024-05-31T00:00:00Z")),
        // Last weekday: Saturday 31st -> 30th, Sunday 30th -> 28th.
        ("cron(0 0 LW * ? *)", "2024-08-01T00:00:00Z", "UTC", Some("2024-08-30T00:00:00Z")),
        ("cron(0 0 LW * ? *)", "2024-06-01T00:00:00Z", "UTC", Some("2024-06-28T00:00:00Z")),
        // Last Friday: May 31st, then June 28th.
        ("cron(0 0 ? * 6L *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-31T00:00:00Z")),
        ("cron(0 0 ? * FRIL *)", "2024-05-31T00:00:00Z", "UTC", Some("2024-06-28T00:00:00Z")),
        // Increments.
        ("cron(*/15 * * * ? *)", "2024-05-01T10:07:30Z", "UTC", Some("2024-05-01T10:15:00Z")),
        ("cron(*/15 * * * ? *)", "2024-05-01T10:45:00Z", "UTC", Some("2024-05-01T11:00:00Z")),
        ("cron(*/15 * * * ? *)", "2024-05-01T23:59:00Z", "UTC", Some("2024-05-02T00:00:00Z")),
        ("cron(5/10 * * * ? *)", "2024-05-01T10:56:00Z", "UTC", Some("2024-05-01T11:05:00Z")),
        ("cron(10-40/5 3 * * ? *)", "2024-05-01T03:41:00Z", "UTC", Some("2024-05-02T03:10:00Z")),
        ("cron(0 0 1 jan,Jul ? *)", "2024-02-01T00:00:00Z", "UTC", Some("2024-07-01T00:00:00Z")),
        // Rare and impossible dates.
        ("cron(0 0 29 2 ? *)", "2024-03-01T00:00:00Z", "UTC", Some("2028-02-29T00:00:00Z")),
        ("cron(0 0 31 * ? *)", "2024-04-01T00:00:00Z", "UTC", Some("2024-05-31T00:00:00Z")),
        ("cron(0 0 30 2 ? *)", "2024-01-01T00:00:00Z", "UTC", None),
        // Years.
        ("cron(0 0 1 1 ? 2030)", "2024-06-01T00:00:00Z", "UTC", Some("2030-01-01T00:00:00Z")),
        ("cron(0 0 1 1 ? 2030)", "2030-01-01T00:00:00Z", "UTC", None),
        ("cron(0 0 1 1 ? 2020-2022)", "2024-06-01T00:00:00Z", "UTC", None),
        ("cron(0 0 1 1 ? 2024/2)", "2024-06-01T00:00:00Z", "UTC", Some("2026-01-01T00:00:00Z")),
        ("cron(0 0 1 1 ? *)", "1960-06-01T00:00:00Z", "UTC", Some("1970-01-01T00:00:00Z")),
        ("cron(* * * * ? *)", "2199-12-31T23:58:00Z", "UTC", Some("2199-12-31T23:59:00Z")),
        ("cron(* * * * ? *)", "2199-12-31T23:59:00Z", "UTC", None),
        ("cron(* * * * ? *)", "2250-01-01T00:00:00Z", "UTC", None),
    ]);
}

#[test]
#[rustfmt::skip] // one row per line reads as a table
fn cron_in_time_zones_and_across_dst() {
    let la = "America/Los_Angeles";
    let berlin = "Europe/Berlin";
    check(&[
        // The local wall clock is what counts, whatever the offset.
        ("cron(0 10 * * ? *)", "2024-05-01T00:00:00Z", "Asia/Kolkata", Some("2024-05-01T04:30:00Z")),
        ("cron(0 10 * * ? *)", "2024-01-15T00:00:00Z", la, Some("2024-01-15T18:00:00Z")),
        // Days are local: 18:00 on Friday in LA is 01:00 on Saturday in UTC.
        ("cron(0 18 ? * FRI *)", "2024-05-03T23:00:00Z", la, Some("2024-05-04T01:00:00Z")),
        // Spring forward (LA 2024-03-10 02:00 -> 03:00): 10:00 keeps its wall time...
        ("cron(0 10 * * ? *)", "2024-03-09T18:00:00Z", la, Some("2024-03-10T17:00:00Z")),
        // ...and 02:30, which does not exist that day, is skipped.
        ("cron(30 2 * * ? *)", "2024-03-09T12:00:00Z", la, Some("2024-03-11T09:30:00Z")),
        ("cron(*/30 * * * ? *)", "2024-03-10T09:45:00Z", la, Some("2024-03-10T10:00:00Z")),
        // Fall back (LA 2024-11-03 02:00 PDT -> 01:00 PST): 01:30 fires once,
        // at the earlier (PDT) instant, and not again an hour later.
        ("cron(30 1 * * ? *)", "2024-11-02T12:00:00Z", la, Some("2024-11-03T08:30:00Z")),
        ("cron(30 1 * * ? *)", "2024-11-03T08:30:00Z", la, Some("2024-11-04T09:30:00Z")),
        ("cron(0 * * * ? *)", "2024-11-03T08:00:00Z", la, Some("2024-11-03T10:00:00Z")),
        ("cron(0 * * * ? *)", "2024-11-03T09:30:00Z", la, Some("2024-11-03T10:00:00Z")),
        ("cron(*/15 * * * ? *)", "2024-11-03T08:50:00Z", la, Some("2024-11-03T10:00:00Z")),
        ("cron(*/15 * * * ? *)", "2024-11-03T08:40:00Z", la, Some("2024-11-03T08:45:00Z")),
        // Berlin: spring forward 2024-03-31 02:00 -> 03:00, fall back 2024-10-27 03:00 -> 02:00.
        ("cron(30 2 * * ? *)", "2024-03-30T12:00:00Z", berlin, Some("2024-04-01T00:30:00Z")),
        ("cron(30 2 * * ? *)", "2024-10-26T12:00:00Z", berlin, Some("2024-10-27T00:30:00Z")),
        ("cron(30 2 * * ? *)", "2024-10-27T00:30:00Z", berlin, Some("2024-10-28T01:30:00Z")),
        ("cron(0 8 ? * MON *)", "2024-03-30T00:00:00Z", berlin, Some("2024-04-01T06:00:00Z")),
        // A run that exists only in the gap never fires: 02:xx on the last
        // Sunday of March in Berlin, every year the rule has held.
        ("cron(* 2 ? 3 1L 2000-2099)", "2000-01-01T00:00:00Z", berlin, None),
    ]);
}

#[test]
#[rustfmt::skip] // one row per line reads as a table
fn rate_runs_on_multiples_of_the_period_from_the_epoch() {
    check(&[
        ("rate(1 hour)", "2024-05-01T10:20:00Z", "UTC", Some("2024-05-01T11:00:00Z")),
        ("rate(1 hour)", "2024-05-01T11:00:00Z", "UTC", Some("2024-05-01T12:00:00Z")),
        ("rate(12 hours)", "2024-05-01T11:00:00Z", "UTC", Some("2024-05-01T12:00:00Z")),
        ("rate(5 minutes)", "2024-05-01T10:20:00Z", "UTC", Some("2024-05-01T10:25:00Z")),
        ("rate(5 minutes)", "2024-05-01T10:22:59.999Z", "UTC", Some("2024-05-01T10:25:00Z")),
        ("rate(1 minute)", "2024-05-01T10:22:00.001Z", "UTC", Some("2024-05-01T10:23:00Z")),
        ("rate(1 day)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-02T00:00:00Z")),
        // The zone does not move a rate.
        ("rate(1 day)", "2024-05-01T00:00:00Z", "America/Los_Angeles", Some("2024-05-02T00:00:00Z")),
        // The epoch was a Thursday, so weekly rates run on Thursdays.
        ("rate(7 days)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-02T00:00:00Z")),
        ("rate(1 hour)", "1960-01-01T00:30:00Z", "UTC", Some("1960-01-01T01:00:00Z")),
    ]);
}

#[test]
fn time_zone_names() {
    for name in [
        "UTC",
        "Etc/UTC",
        "America/Los_Angeles",
        "Europe/Berlin",
        "Asia/Kolkata",
    ] {
        assert!(parse_timezone(name).is_ok(), "{name}");
    }
    for (name, message) in [
        ("Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("", "unknown time zone ''"),
        (" UTC", "unknown time zone ' UTC'"),
    ] {
        assert_eq!(
            parse_timezone(name).map_err(|e| e.to_string()),
            Err(message.to_string())
        );
    }
}
