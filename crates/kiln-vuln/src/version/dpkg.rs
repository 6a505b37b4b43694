//! dpkg's version order, through `debversion`, with dpkg's own validity rules on top (the crate's
//! parser accepts some strings `parseversion` refuses, such as `1.0-` and `0:`).

use debversion::Version;
use std::cmp::Ordering;

/// The largest epoch dpkg accepts (it parses into an `int`).
const MAX_EPOCH: u64 = i32::MAX as u64;

/// Parses a version as dpkg's `parseversion` would accept it (surrounding blanks trimmed).
pub fn parse(text: &str) -> Option<Version> {
    let text = text.trim_matches([' ', '\t']);
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    let (epoch, rest) = match text.split_once(':') {
        Some((epoch, rest)) => (Some(epoch), rest),
        None => (None, text),
    };
    if let Some(epoch) = epoch {
        if epoch.is_empty()
            || !epoch.bytes().all(|b| b.is_ascii_digit())
            || epoch.parse::<u64>().map_or(true, |e| e > MAX_EPOCH)
        {
            return None;
        }
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, Some(revision)),
        None => (rest, None),
    };
    let upstream_ok = upstream.starts_with(|c: char| c.is_ascii_digit())
        && upstream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c));
    let revision_ok = revision.is_none_or(|r| {
        !r.is_empty()
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c))
    });
    if !upstream_ok || !revision_ok {
        return None;
    }
    text.parse().ok()
}

/// dpkg's order; unparsable versions sort after valid ones, and among themselves as strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// (epoch, upstream version, revision) as dpkg splits a version, for a finding's package.
pub fn split(text: &str) -> (Option<u32>, String, Option<String>) {
    match parse(text) {
        Some(v) => (v.epoch, v.upstream_version, v.debian_revision),
        None => (None, text.to_string(), None),
    }
}
