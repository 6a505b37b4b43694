//! PostgreSQL's text cannot hold NUL, which SQLite's can and which callers may send (a tag
//! value, a clientToken, an ARN to look up). Every string is stored through this reversible
//! escape: U+0001 becomes U+0001 U+0001 and NUL becomes U+0001 '0'. Strings without either
//! character, which is all of them in practice, are stored as they are and keep their order.

use std::borrow::Cow;

const ESCAPE: char = '\u{1}';

pub(super) fn enc(s: &str) -> Cow<'_, str> {
    if !s.contains(['\0', ESCAPE]) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\u{1}0"),
            ESCAPE => out.push_str("\u{1}\u{1}"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub(super) fn dec(s: String) -> String {
    if !s.contains(ESCAPE) {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != ESCAPE {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push(ESCAPE),
        }
    }
    out
}

pub(super) fn dec_opt(s: Option<String>) -> Option<String> {
    s.map(dec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_comes_back_as_it_went_in() {
        for s in [
            "",
            "plain",
            "a\0b",
            "\u{1}",
            "\u{1}0",
            "\0\u{1}\0",
            "x\u{1}\u{1}0\0",
        ] {
            let stored = enc(s).into_owned();
            assert!(!stored.contains('\0'), "{s:?}");
            assert_eq!(dec(stored), s);
        }
        assert!(matches!(enc("plain"), Cow::Borrowed(_)));
    }
}
