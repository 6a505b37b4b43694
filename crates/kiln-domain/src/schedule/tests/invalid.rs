//! Rejected expressions: each row names the input and a fragment that the
//! message must contain, so that the messages stay precise.

use crate::schedule::ScheduleExpression;

#[rustfmt::skip] // one row per line reads as a table
const ROWS: &[(&str, &str)] = &[
    // Shape.
    ("", "schedule expression is empty"),
    ("garbage", "must be 'cron(...)' or 'rate(...)', found 'garbage'"),
    ("at(2024-05-01T10:00:00)", "must be 'cron(...)' or 'rate(...)'"),
    ("cron", "must be 'cron(...)' or 'rate(...)'"),
    ("CRON(0 10 * * ? *)", "keyword 'CRON' must be lowercase 'cron'"),
    ("Rate(1 hour)", "keyword 'Rate' must be lowercase 'rate'"),
    ("cron(0 10 * * ? *", "cron expression must end with ')'"),
    ("cron(0 10 * * ? *) ", "leading or trailing whitespace"),
    (" rate(1 hour)", "leading or trailing whitespace"),
    ("cron()", "cron expression must have 6 fields (minute hour day-of-month month day-of-week year), found 0"),
    ("cron(0 10 * * ?)", "cron expression must have 6 fields (minute hour day-of-month month day-of-week year), found 5"),
    ("cron(0 10 * * ? * *)", "must have 6 fields (minute hour day-of-month month day-of-week year), found 7"),
    ("cron( 0 10 * * ? *)", "must not have leading or trailing spaces inside the parentheses"),
    ("cron(0 10 * * ? * )", "must not have leading or trailing spaces inside the parentheses"),
    ("cron(0  10 * * ? *)", "separated by single spaces"),
    ("cron(0 0 10 * * ? *)", "must have 6 fields (minute hour day-of-month month day-of-week year), found 7"),
    ("cron(@daily)", "must have 6 fields (minute hour day-of-month month day-of-week year), found 1"),
    ("cron(0\t10 * * ? *)", "separated by single spaces"),
    // The `?` rule.
    ("cron(0 10 ? * ? *)", "day-of-month and day-of-week: exactly one must be '?', but both are"),
    ("cron(0 10 * * * *)", "day-of-month and day-of-week: exactly one must be '?', but neither is"),
    ("cron(0 10 1 * MON *)", "exactly one must be '?'"),
    ("cron(0 10 1,? * ? *)", "'?' must stand alone in the day-of-month field"),
    ("cron(? 10 * * ? *)", "invalid minute value '?'"),
    // Ranges of each field.
    ("cron(61 10 * * ? *)", "minute value 61 is out of range 0-59"),
    ("cron(0 24 * * ? *)", "hour value 24 is out of range 0-23"),
    ("cron(0 10 0 * ? *)", "day-of-month value 0 is out of range 1-31"),
    ("cron(0 10 32 * ? *)", "day-of-month value 32 is out of range 1-31"),
    ("cron(0 10 * 13 ? *)", "month value 13 is out of range 1-12"),
    ("cron(0 10 ? * 0 *)", "day-of-week value 0 is out of range 1-7"),
    ("cron(0 10 ? * 8 *)", "day-of-week value 8 is out of range 1-7"),
    ("cron(0 10 * * ? 1969)", "year value 1969 is out of range 1970-2199"),
    ("cron(0 10 * * ? 2200)", "year value 2200 is out of range 1970-2199"),
    ("cron(0 10 * * ? 2024-2200)", "year value 2200 is out of range 1970-2199"),
    ("cron(0 10 * * ? 2024/0)", "year increment 0 is out of range 1-230"),
    ("cron(0 10 ? * 1-8 *)", "day-of-week value 8 is out of range 1-7"),
    ("cron(0 10 ? * 0#1 *)", "day-of-week value 0 is out of range 1-7"),
    ("cron(0 99999999999999999999 * * ? *)", "hour value 99999999999999999999 is out of range 0-23"),
    ("cron(0 10 * * ? -1)", "incomplete range '-1' in the year field"),
    ("cron(40-10 10 * * ? *)", "minute range '40-10' goes backwards"),
    ("cron(0 10 ? * FRI-MON *)", "day-of-week range 'FRI-MON' goes backwards"),
    ("cron(*/0 10 * * ? *)", "minute increment 0 is out of range 1-60"),
    ("cron(0 */25 * * ? *)", "hour increment 25 is out of range 1-24"),
    ("cron(0 10 ? * */2 *)", "the day-of-week field does not allow '/' increments"),
    // Names.
    ("cron(0 10 * foo ? *)", "unknown month name 'foo'"),
    ("cron(0 10 ? * funday *)", "unknown day-of-week name 'funday'"),
    ("cron(0 10 ? * MON-foo *)", "unknown day-of-week name 'foo'"),
    ("cron(0 10 * JANUARY ? *)", "unknown month name 'JANUARY'"),
    // Each field takes only its own names (croner would read JAN as 1 anywhere).
    ("cron(0 10 ? * JAN *)", "unknown day-of-week name 'JAN'"),
    ("cron(0 10 * MON ? *)", "unknown month name 'MON'"),
    // croner extensions that AWS does not have.
    ("cron(0 10 ? * +MON *)", "invalid day-of-week value '+MON'"),
    ("cron(0 10 1,,2 * ? *)", "day-of-month field '1,,2' has an empty list item"),
    ("cron(0 10 1, * ? *)", "day-of-month field '1,' has an empty list item"),
    ("cron(a 10 * * ? *)", "invalid minute value 'a'"),
    ("cron(0 10 * * ? 20x0)", "invalid year value '20x0'"),
    // L, W and #.
    ("cron(0 10 ? * 6#6 *)", "day-of-week occurrence '6' in '6#6' is out of range 1-5"),
    ("cron(0 10 ? * 6#0 *)", "day-of-week occurrence '0' in '6#0' is out of range 1-5"),
    ("cron(0 10 ? * FRI# *)", "occurrence '' in 'FRI#' is out of range 1-5"),
    ("cron(0 10 ? * 9#2 *)", "day-of-week value 9 is out of range 1-7"),
    ("cron(0 10 ? * 2#1,6#2 *)", "'#' must stand alone in the day-of-week field"),
    ("cron(0 10 ? * 8L *)", "day-of-week value 8 is out of range 1-7"),
    ("cron(0 10 ? * MON,6L *)", "'L' must stand alone in the day-of-week field"),
    ("cron(0 10 0W * ? *)", "day-of-month value 0 in '0W' is out of range 1-31"),
    ("cron(0 10 32W * ? *)", "day-of-month value 32 in '32W' is out of range 1-31"),
    ("cron(0 10 1,15W * ? *)", "'L' and 'W' must stand alone in the day-of-month field"),
    ("cron(0 10 L,15 * ? *)", "'L' and 'W' must stand alone in the day-of-month field"),
    ("cron(0 10 LW,1 * ? *)", "'L' and 'W' must stand alone in the day-of-month field"),
    ("cron(0 10 L-3 * ? *)", "day-of-month 'L-3' (days before the last day) is not supported"),
    ("cron(0 10 * L ? *)", "unknown month name 'L'"),
    ("cron(0 10 W * ? *)", "'L' and 'W' must stand alone in the day-of-month field"),
    // Rates.
    ("rate(1 days)", "rate unit must be 'day' when the value is 1, found 'days'"),
    ("rate(2 hour)", "rate unit must be 'hours' when the value is 2, found 'hour'"),
    ("rate(0 hours)", "rate value must be greater than 0, found 0"),
    ("rate(-1 hours)", "rate value '-1' must be a positive whole number"),
    ("rate(1.5 hours)", "rate value '1.5' must be a positive whole number"),
    ("rate(99999999999 minutes)", "rate value 99999999999 is too large"),
    ("rate(1 week)", "unknown rate unit 'week'"),
    ("rate(5 Minutes)", "unknown rate unit 'Minutes'"),
    ("rate(5minutes)", "'rate(value unit)' with a single space"),
    ("rate()", "'rate(value unit)' with a single space"),
    ("rate(5  minutes)", "separated by a single space"),
    ("rate( 5 minutes)", "leading or trailing spaces inside the parentheses"),
    ("rate(5 minutes", "rate expression must end with ')'"),
];

#[test]
fn invalid_expressions_are_rejected_with_a_precise_message() {
    let mut failures = Vec::new();
    for &(input, fragment) in ROWS {
        match ScheduleExpression::parse(input) {
            Ok(parsed) => failures.push(format!("{input:?} parsed as {parsed:?}")),
            Err(e) if !e.message.contains(fragment) => failures.push(format!(
                "{input:?}: expected {fragment:?} in {:?}",
                e.message
            )),
            Err(e) => assert_eq!(e.to_string(), e.message, "Display is the message"),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn long_input_is_not_echoed_whole() {
    let long = "x".repeat(10_000);
    match ScheduleExpression::parse(&long) {
        Ok(parsed) => panic!("parsed as {parsed:?}"),
        Err(e) => assert!(e.message.len() < 200, "{}", e.message),
    }
}

#[test]
fn valid_expressions_parse() {
    for input in [
        "cron(0 10 * * ? *)",
        "cron(0 10 ? * * *)",
        "cron(0 10 ? * mon-FRI *)",
        "cron(0,30 8-18/2 1-15 JAN-jun,dec ? 2024-2030/2)",
        "cron(0 0 LW * ? *)",
        "cron(0 0 lw * ? *)",
        "cron(0 0 15w * ? *)",
        "cron(0 0 ? * 7l *)",
        "cron(0 0 ? * sat#5 *)",
        "cron(05 09 * * ? *)",
        "rate(1 minute)",
        "rate(1 hour)",
        "rate(1 day)",
        "rate(2 minutes)",
        "rate(12 hours)",
        "rate(30 days)",
    ] {
        if let Err(e) = ScheduleExpression::parse(input) {
            panic!("{input}: {e}");
        }
    }
}
