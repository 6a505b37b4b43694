//! Robustness: no input makes the parser or the search panic, and the
//! slowest searches stay far below the 50 ms budget.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::schedule::{parse_timezone, ScheduleExpression};

/// xorshift64: a fixed, dependency-free sequence, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

/// Characters that mean something to the grammar, plus some that do not.
const ALPHABET: &[&str] = &[
    "cron(",
    "rate(",
    ")",
    "(",
    " ",
    " ",
    "*",
    "?",
    ",",
    "-",
    "/",
    "#",
    "L",
    "W",
    "l",
    "w",
    "0",
    "1",
    "2",
    "5",
    "6",
    "7",
    "9",
    "12",
    "15",
    "31",
    "59",
    "2030",
    "2199",
    "99999999999",
    "MON",
    "fri",
    "JAN",
    "dec",
    "minute",
    "minutes",
    "hours",
    "day",
    "\t",
    "é",
    "\u{0}",
];

/// Valid expressions that the mutation loop starts from.
const SEEDS: &[&str] = &[
    "cron(0 10 * * ? *)",
    "cron(*/15 8-18 ? * MON-FRI 2024-2030)",
    "cron(30 22 ? * tue#2 *)",
    "cron(0 0 15W * ? *)",
    "cron(0 0 ? * 6L *)",
    "cron(0,30 1 L jan-jun/2 ? *)",
    "rate(5 minutes)",
    "rate(1 day)",
];

#[test]
fn random_input_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let zones = [
        chrono_tz::UTC,
        chrono_tz::America::Los_Angeles,
        chrono_tz::Europe::Berlin,
    ];
    let after = DateTime::<Utc>::from_timestamp(1_714_557_600, 0).unwrap_or_default();
    let mut parsed = 0;
    let mut try_input = |input: &str, rng: &mut Rng| {
        if let Ok(expression) = ScheduleExpression::parse(input) {
            parsed += 1;
            let _ = expression.next_after(after, zones[rng.below(zones.len())]);
        }
        let _ = parse_timezone(input);
    };
    // Token soup: mostly wrong, reaching the wrapper and field checks.
    for _ in 0..10_000 {
        let mut input = String::from(if rng.below(2) == 0 { "cron(" } else { "" });
        for _ in 0..rng.below(14) {
            input.push_str(ALPHABET[rng.below(ALPHABET.len())]);
        }
        if rng.below(2) == 0 {
            input.push(')');
        }
        try_input(&input, &mut rng);
    }
    // Mutated valid expressions: close to valid, so many still parse and
    // the search runs on odd but legal field combinations.
    for _ in 0..10_000 {
        let mut input = SEEDS[rng.below(SEEDS.len())].to_string();
        for _ in 0..=rng.below(3) {
            let at = rng.below(input.len() + 1);
            let at = (0..=at)
                .rev()
                .find(|i| input.is_char_boundary(*i))
                .unwrap_or(0);
            let token = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(3) {
                0 => input.insert_str(at, token),
                1 if at < input.len() => {
                    input.remove(at);
                }
                _ => {
                    let end = (at + token.len()).min(input.len());
                    if input.is_char_boundary(end) {
                        input.replace_range(at..end, token);
                    }
                }
            }
        }
        try_input(&input, &mut rng);
    }
    // Raw bytes, lossily decoded, inside and outside the wrappers.
    for _ in 0..5_000 {
        let bytes: Vec<u8> = (0..rng.below(24)).map(|_| rng.next() as u8).collect();
        let input = String::from_utf8_lossy(&bytes);
        for wrapped in [
            input.to_string(),
            format!("cron({input})"),
            format!("rate({input})"),
        ] {
            try_input(&wrapped, &mut rng);
        }
    }
    // Not a correctness check, only that the search was exercised too.
    assert!(parsed > 100, "only {parsed} generated inputs parsed");
}

#[test]
fn exhaustive_searches_are_fast() {
    let after = DateTime::<Utc>::from_timestamp(1_714_557_600, 0).unwrap_or_default();
    let berlin = parse_timezone("Europe/Berlin").ok();
    for input in [
        "cron(0 0 30 2 ? *)",
        "cron(59 23 31 2 ? *)",
        "cron(0 0 31 4,6,9,11 ? *)",
        "cron(0 0 29 2 ? *)",
        "cron(0 0 ? 2 1#5 *)",
        "cron(* 2 ? 3 1L *)",
        "cron(*/1 */1 31W 2 ? *)",
    ] {
        let Ok(expression) = ScheduleExpression::parse(input) else {
            panic!("{input} did not parse");
        };
        let started = Instant::now();
        let _ = expression.next_after(after, berlin.unwrap_or(chrono_tz::UTC));
        let took = started.elapsed();
        // The budget is 50 ms in release builds; debug builds get 4x.
        assert!(took < Duration::from_millis(200), "{input} took {took:?}");
    }
}
