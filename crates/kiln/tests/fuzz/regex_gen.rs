//! Strings that match a model pattern, so that valid inputs get past validation.
//!
//! The model's patterns are simple (classes, repetitions, alternations, anchors) except for one
//! negative look-ahead (`^(?!aws:)...`), which the regex crate's parser does not take: it is
//! dropped, and the rare string it should have excluded is just one more invalid input.

use rand::rngs::StdRng;
use rand::Rng;
use regex_syntax::hir::{Class, Hir, HirKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Repetitions without an upper bound (`+`, `*`) and wide ones (`{1,1024}`) get at most this
/// many extra items over their minimum: long enough to be realistic, short enough to stay fast,
/// and version nodes (`[0-9]+`) stay under the service's 2^30.
const EXTRA_REPEATS: u32 = 6;

/// A string matching `pattern`, or `None` when the pattern cannot be parsed.
pub fn generate(pattern: &str, rng: &mut StdRng) -> Option<String> {
    let hir = parsed(pattern)?;
    let mut out = String::new();
    walk(&hir, rng, &mut out);
    Some(out)
}

/// Parsing is slow in a debug build and the model has few patterns: each is parsed once.
fn parsed(pattern: &str) -> Option<Arc<Hir>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Hir>>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| {
            regex_syntax::Parser::new()
                .parse(&without_lookahead(pattern))
                .ok()
                .map(Arc::new)
        })
        .clone()
}

fn without_lookahead(pattern: &str) -> String {
    let mut out = pattern.to_string();
    while let Some(start) = out.find("(?!") {
        match out[start..].find(')') {
            Some(len) => out.replace_range(start..start + len + 1, ""),
            None => break,
        }
    }
    out
}

fn walk(hir: &Hir, rng: &mut StdRng, out: &mut String) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => out.push_str(&String::from_utf8_lossy(&lit.0)),
        HirKind::Class(Class::Unicode(class)) => {
            let ranges: Vec<(u32, u32)> = class
                .ranges()
                .iter()
                .map(|r| (r.start() as u32, r.end() as u32))
                .collect();
            if let Some(c) = pick(&ranges, rng) {
                out.push(c);
            }
        }
        HirKind::Class(Class::Bytes(class)) => {
            let ranges: Vec<(u32, u32)> = class
                .ranges()
                .iter()
                .map(|r| (u32::from(r.start()), u32::from(r.end().min(0x7f))))
                .filter(|(s, e)| s <= e)
                .collect();
            if let Some(c) = pick(&ranges, rng) {
                out.push(c);
            }
        }
        HirKind::Repetition(rep) => {
            let top = match rep.max {
                Some(max) => max.min(rep.min + EXTRA_REPEATS),
                None => rep.min + EXTRA_REPEATS,
            };
            let count = rng.gen_range(rep.min..=top.max(rep.min));
            for _ in 0..count {
                walk(&rep.sub, rng, out);
            }
        }
        HirKind::Capture(cap) => walk(&cap.sub, rng, out),
        HirKind::Concat(parts) => {
            for part in parts {
                walk(part, rng, out);
            }
        }
        HirKind::Alternation(alternatives) => {
            if !alternatives.is_empty() {
                let i = rng.gen_range(0..alternatives.len());
                walk(&alternatives[i], rng, out);
            }
        }
    }
}

/// A character from the class. Classes like `[^\x00]` span all of Unicode: mostly printable
/// ASCII is drawn from them (what real names and descriptions are), sometimes anything.
fn pick(ranges: &[(u32, u32)], rng: &mut StdRng) -> Option<char> {
    if ranges.is_empty() {
        return None;
    }
    if rng.gen_bool(0.9) {
        let printable: Vec<(u32, u32)> = ranges
            .iter()
            .map(|&(s, e)| (s.max(0x20), e.min(0x7e)))
            .filter(|(s, e)| s <= e)
            .collect();
        if !printable.is_empty() {
            let (s, e) = printable[rng.gen_range(0..printable.len())];
            return char::from_u32(rng.gen_range(s..=e));
        }
    }
    for _ in 0..8 {
        let (s, e) = ranges[rng.gen_range(0..ranges.len())];
        if let Some(c) = char::from_u32(rng.gen_range(s..=e)) {
            return Some(c);
        }
    }
    None
}
