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
fn cron_edge_cases() {
    let la = "America/Los_Angeles";
    let berlin = "Europe/Berlin";
    check(&[
        // `L`: last day of February, leap (2024, 2028) and not (2023, 2100).
        ("cron(0 0 L 2 ? *)", "2023-03-01T00:00:00Z", "UTC", Some("2024-02-29T00:00:00Z")),
        ("cron(0 0 L 2 ? *)", "2027-03-01T00:00:00Z", "UTC", Some("2028-02-29T00:00:00Z")),
        ("cron(0 0 L 2 ? *)", "2022-03-01T00:00:00Z", "UTC", Some("2023-02-28T00:00:00Z")),
        ("cron(0 0 L 2 ? *)", "2099-03-01T00:00:00Z", "UTC", Some("2100-02-28T00:00:00Z")),
        ("cron(0 0 29 2 ? *)", "2096-03-01T00:00:00Z", "UTC", Some("2104-02-29T00:00:00Z")),
        // `LW` when the last day is a weekday (Fri 2024-05-31), a Saturday
        // (2026-02-28 -> Fri 27th) and in a leap February (Thu 2024-02-29).
        ("cron(0 0 LW * ? *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-31T00:00:00Z")),
        ("cron(0 0 LW 2 ? *)", "2026-01-01T00:00:00Z", "UTC", Some("2026-02-27T00:00:00Z")),
        ("cron(0 0 LW 2 ? *)", "2024-01-01T00:00:00Z", "UTC", Some("2024-02-29T00:00:00Z")),
        // `W` at the month edges: Sunday the 1st -> Monday the 2nd (June
        // 2025); Sunday the 31st -> Friday the 29th, not into September
        // (August 2025); Saturday the 31st -> Friday the 30th (May 2025).
        ("cron(0 0 1W * ? *)", "2025-05-02T00:00:00Z", "UTC", Some("2025-06-02T00:00:00Z")),
        ("cron(0 0 31W * ? *)", "2025-08-01T00:00:00Z", "UTC", Some("2025-08-29T00:00:00Z")),
        ("cron(0 0 31W * ? *)", "2025-05-01T00:00:00Z", "UTC", Some("2025-05-30T00:00:00Z")),
        // `#`: the 5th Friday exists in May 2024 (31st), not in June or July.
        ("cron(0 0 ? * 6#5 *)", "2024-05-01T00:00:00Z", "UTC", Some("2024-05-31T00:00:00Z")),
        ("cron(0 0 ? * FRI#5 *)", "2024-06-01T00:00:00Z", "UTC", Some("2024-08-30T00:00:00Z")),
        ("cron(0 0 ? * 1#1 *)", "2024-05-06T00:00:00Z", "UTC", Some("2024-06-02T00:00:00Z")),
        // A 5th Sunday in February needs a leap year starting on a Sunday.
        ("cron(0 0 ? 2 1#5 *)", "2024-03-01T00:00:00Z", "UTC", Some("2032-02-29T00:00:00Z")),
        ("cron(0 0 ? 2 1#5 2025-2031)", "2024-03-01T00:00:00Z", "UTC", None),
        // `L` alone in day-of-week is every Saturday, `7L` the last one.
        ("cron(0 12 ? * l *)", "2024-05-04T12:00:00Z", "UTC", Some("2024-05-11T12:00:00Z")),
        ("cron(0 12 ? * 7L *)", "2024-05-04T12:00:00Z", "UTC", Some("2024-05-25T12:00:00Z")),
        // Years: the first and last the syntax names, a range in the past,
        // and the end of 2199 on the local wall clock.
        ("cron(0 0 1 1 ? 1970)", "1969-06-01T00:00:00Z", "UTC", Some("1970-01-01T00:00:00Z")),
        ("cron(0 0 1 1 ? 1970)", "1970-01-01T00:00:00Z", "UTC", None),
        ("cron(0 0 1 1 ? 2199)", "2024-06-01T00:00:00Z", "UTC", Some("2199-01-01T00:00:00Z")),
        ("cron(0 0 1 1 ? */100)", "2024-06-01T00:00:00Z", "UTC", Some("2070-01-01T00:00:00Z")),
        ("cron(0 0 1 1 ? 2150/20)", "2024-06-01T00:00:00Z", "UTC", Some("2150-01-01T00:00:00Z")),
        ("cron(0 0 1 1 ? 2150/20)", "2190-06-01T00:00:00Z", "UTC", None),
        ("cron(0 10 * * ? 1990-1999,2005)", "2024-06-01T00:00:00Z", la, None),
        ("cron(59 23 31 12 ? 2199)", "2199-12-31T00:00:00Z", la, Some("2200-01-01T07:59:00Z")),
        ("cron(* * * * ? *)", "2200-01-01T07:58:00Z", la, Some("2200-01-01T07:59:00Z")),
        ("cron(* * * * ? *)", "2200-01-01T07:59:00Z", la, None),
        ("cron(* * * * ? *)", "2199-12-31T23:59:00Z", berlin, None),
    ]);
}

#[test]
#[rustfmt::skip] // one row per line reads as a table
fn dst_gaps_and_overlaps_in_two_zones() {
    let la = "America/Los_Angeles";
    let berlin = "Europe/Berlin";
    check(&[
        // LA spring forward 2024-03-10 02:00 PST (10:00Z) -> 03:00 PDT.
        // Daily 02:30: no run on the gap day, the next is 02:30 PDT on the 11th.
        ("cron(30 2 * * ? *)", "2024-03-10T00:00:00Z", la, Some("2024-03-11T09:30:00Z")),
        ("cron(30 2 * * ? *)", "2024-03-09T10:29:00Z", la, Some("2024-03-09T10:30:00Z")),
        // Every 15 minutes: 01:45 PST, then 03:00 PDT.
        ("cron(*/15 * * * ? *)", "2024-03-10T09:40:00Z", la, Some("2024-03-10T09:45:00Z")),
        ("cron(*/15 * * * ? *)", "2024-03-10T09:45:00Z", la, Some("2024-03-10T10:00:00Z")),
        ("cron(*/15 * * * ? *)", "2024-03-10T10:00:00Z", la, Some("2024-03-10T10:15:00Z")),
        // LA fall back 2024-11-03 02:00 PDT (09:00Z) -> 01:00 PST: 01:00-01:59 twice.
        // Daily 01:30 fires at 01:30 PDT only.
        ("cron(30 1 * * ? *)", "2024-11-03T08:29:00Z", la, Some("2024-11-03T08:30:00Z")),
        ("cron(30 1 * * ? *)", "2024-11-03T09:00:00Z", la, Some("2024-11-04T09:30:00Z")),
        // Every 15 minutes: 01:45 PDT, then 02:00 PST; the repeated hour is not run again.
        ("cron(*/15 * * * ? *)", "2024-11-03T08:45:00Z", la, Some("2024-11-03T10:00:00Z")),
        ("cron(*/15 * * * ? *)", "2024-11-03T09:20:00Z", la, Some("2024-11-03T10:00:00Z")),
        // Berlin spring forward 2024-03-31 02:00 CET (01:00Z) -> 03:00 CEST.
        ("cron(30 2 * * ? *)", "2024-03-31T00:00:00Z", berlin, Some("2024-04-01T00:30:00Z")),
        ("cron(30 2 * * ? *)", "2024-03-30T01:29:00Z", berlin, Some("2024-03-30T01:30:00Z")),
        ("cron(*/15 * * * ? *)", "2024-03-31T00:40:00Z", berlin, Some("2024-03-31T00:45:00Z")),
        ("cron(*/15 * * * ? *)", "2024-03-31T00:45:00Z", berlin, Some("2024-03-31T01:00:00Z")),
        ("cron(*/15 * * * ? *)", "2024-03-31T01:00:00Z", berlin, Some("2024-03-31T01:15:00Z")),
        // Berlin fall back 2024-10-27 03:00 CEST (01:00Z) -> 02:00 CET: 02:00-02:59 twice.
        // Daily 02:30 fires at 02:30 CEST only.
        ("cron(30 2 * * ? *)", "2024-10-27T00:29:00Z", berlin, Some("2024-10-27T00:30:00Z")),
        ("cron(30 2 * * ? *)", "2024-10-27T00:30:00Z", berlin, Some("2024-10-28T01:30:00Z")),
        ("cron(30 2 * * ? *)", "2024-10-27T01:15:00Z", berlin, Some("2024-10-28T01:30:00Z")),
        ("cron(*/15 * * * ? *)", "2024-10-27T00:40:00Z", berlin, Some("2024-10-27T00:45:00Z")),
        ("cron(*/15 * * * ? *)", "2024-10-27T00:45:00Z", berlin, Some("2024-10-27T02:00:00Z")),
        ("cron(*/15 * * * ? *)", "2024-10-27T01:20:00Z", berlin, Some("2024-10-27T02:00:00Z")),
        // Since 1981 Berlin's clocks go forward on the last Sunday of March,
        // so 02:30 on that day does not run; before 1980 there was no DST.
        ("cron(30 2 ? 3 1L 1981-2099)", "1975-01-01T00:00:00Z", berlin, None),
        ("cron(30 2 ? 3 1L *)", "1975-01-01T00:00:00Z", berlin, Some("1975-03-30T01:30:00Z")),
        // chrono-tz's tables end with 2099: from 2100 on, no zone changes
        // its clocks, so the day has a 02:30 again.
        ("cron(30 2 ? 3 1L *)", "2024-03-01T00:00:00Z", berlin, Some("2100-03-28T01:30:00Z")),
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

#[test]
fn next_runs_in_a_batch_equal_one_at_a_time() {
    let after = instant("2026-11-27T10:00:00Z");
    let schedules = [
        ("cron(0 10 * * ? *)", "America/Los_Angeles"),
        ("rate(1 hour)", "UTC"),
        ("cron(0 10 * * ? *)", "Europe/Berlin"),
        ("cron(30 2 ? * 1L *)", "Europe/Berlin"),
        ("not an expression", "UTC"),
        ("cron(0 10 * * ? *)", "Mars/Olympus_Mons"),
        ("cron(0 0 1 1 ? 2020)", "UTC"),
        ("cron(0 10 * * ? *)", "UTC"),
        ("rate(1 hour)", "Asia/Kolkata"),
    ];
    let batch = crate::schedule::next_runs(&schedules, after);
    let one_by_one: Vec<_> = schedules
        .iter()
        .map(|(e, z)| {
            let parsed = ScheduleExpression::parse(e).ok()?;
            parsed.next_after(after, parse_timezone(z).ok()?)
        })
        .collect();
    assert_eq!(batch, one_by_one);
    assert_eq!(batch.iter().filter(|r| r.is_some()).count(), 6);
}
