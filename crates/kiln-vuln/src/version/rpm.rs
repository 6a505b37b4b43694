//! rpm's `rpmvercmp` and its `[epoch:]version[-release]` comparison (`rpmio/rpmvercmp.cc`,
//! `rpmio/rpmver.cc`), ported. Only ASCII letters and digits form segments, as in rpm.

use std::cmp::Ordering;

/// `rpmvercmp(a, b)`.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        // Tilde sorts before everything, even the end of the string.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // Caret sorts after the end of the string but before anything else.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let ea = i + a[i..].iter().take_while(|&&c| class(c)).count();
        let eb = j + b[j..].iter().take_while(|&&c| class(c)).count();
        let (mut sa, mut sb) = (&a[i..ea], &b[j..eb]);
        // Segments of different kinds: numeric is newer than alpha.
        if sb.is_empty() {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
        i = ea;
        j = eb;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// An rpm `[epoch:]version[-release]` split as `parseEVR` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evr<'a> {
    pub epoch: Option<&'a str>,
    pub version: &'a str,
    pub release: Option<&'a str>,
}

/// `parseEVR`: leading digits then `:` make the epoch; the last `-` starts the release.
pub fn parse_evr(evr: &str) -> Evr<'_> {
    let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = if evr[digits..].starts_with(':') {
        let epoch = &evr[..digits];
        (
            Some(if epoch.is_empty() { "0" } else { epoch }),
            &evr[digits + 1..],
        )
    } else {
        (None, evr)
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => Evr {
            epoch,
            version,
            release: Some(release),
        },
        None => Evr {
            epoch,
            version: rest,
            release: None,
        },
    }
}

/// `rpmverCmp`: epochs (missing = 0), then versions, then releases (a missing one is lower).
pub fn compare_evr(a: &str, b: &str) -> Ordering {
    let (a, b) = (parse_evr(a), parse_evr(b));
    let values = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (Some(x), Some(y)) => rpmvercmp(x, y),
    };
    rpmvercmp(a.epoch.unwrap_or("0"), b.epoch.unwrap_or("0"))
        .then_with(|| rpmvercmp(a.version, b.version))
        .then_with(|| values(a.release, b.release))
}
