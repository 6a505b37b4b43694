//! apk-tools' version order (`src/version.c`), ported token by token so that it agrees with
//! `apk version -t` on every string, valid or not.
//!
//! Alpine versions read `digit{.digit}...{letter}{_suffix{number}}...{~hash}{-rN}`.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    CommitHash,
    RevisionNo,
    End,
    Invalid,
}

/// Suffix ranks: the ones before `None` make a pre-release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Suffix {
    Invalid,
    Alpha,
    Beta,
    Pre,
    Rc,
    None,
    Cvs,
    Svn,
    Git,
    Hg,
    P,
}

fn suffix_value(s: &[u8]) -> Suffix {
    let (suffix, text): (Suffix, &[u8]) = match s.first() {
        Some(b'a') => (Suffix::Alpha, b"alpha"),
        Some(b'b') => (Suffix::Beta, b"beta"),
        Some(b'c') => (Suffix::Cvs, b"cvs"),
        Some(b'g') => (Suffix::Git, b"git"),
        Some(b'h') => (Suffix::Hg, b"hg"),
        Some(b'p') if s.len() > 1 => (Suffix::Pre, b"pre"),
        Some(b'p') => (Suffix::P, b"p"),
        Some(b'r') => (Suffix::Rc, b"rc"),
        Some(b's') => (Suffix::Svn, b"svn"),
        _ => return Suffix::Invalid,
    };
    if s == text {
        suffix
    } else {
        Suffix::Invalid
    }
}

/// The tokenizer's state: the current token and what it holds.
struct State<'a> {
    token: Token,
    suffix: Suffix,
    number: u64,
    value: &'a [u8],
    rest: &'a [u8],
}

impl<'a> State<'a> {
    fn first(text: &'a [u8]) -> Self {
        let mut s = State {
            token: Token::InitialDigit,
            suffix: Suffix::Invalid,
            number: 0,
            value: &[],
            rest: text,
        };
        s.digits();
        s
    }

    /// `apk_blob_pull_uint`: wrapping, as the C code's `uint64_t` does.
    fn digits(&mut self) {
        let n = self.rest.iter().take_while(|c| c.is_ascii_digit()).count();
        self.value = &self.rest[..n];
        self.number = self.value.iter().fold(0u64, |acc, c| {
            acc.wrapping_mul(10).wrapping_add(u64::from(c - b'0'))
        });
        self.rest = &self.rest[n..];
        if n == 0 {
            self.token = Token::Invalid;
        }
    }

    fn next(&mut self) {
        let Some(&c) = self.rest.first() else {
            self.token = Token::End;
            return;
        };
        match c {
            b'a'..=b'z' => {
                if self.token > Token::Digit {
                    return self.invalid();
                }
                self.value = &self.rest[..1];
                self.token = Token::Letter;
                self.rest = &self.rest[1..];
            }
            b'.' | b'0'..=b'9' => {
                if c == b'.' {
                    if self.token > Token::Digit {
                        return self.invalid();
                    }
                    self.rest = &self.rest[1..];
                }
                self.token = match self.token {
                    Token::InitialDigit | Token::Digit => Token::Digit,
                    Token::Suffix => Token::SuffixNo,
                    _ => return self.invalid(),
                };
                self.digits();
            }
            b'_' => {
                if self.token > Token::SuffixNo {
                    return self.invalid();
                }
                self.rest = &self.rest[1..];
                let n = self
                    .rest
                    .iter()
                    .take_while(|c| c.is_ascii_lowercase())
                    .count();
                self.value = &self.rest[..n];
                self.rest = &self.rest[n..];
                self.suffix = suffix_value(self.value);
                if self.suffix == Suffix::Invalid {
                    return self.invalid();
                }
                self.token = Token::Suffix;
            }
            b'~' => {
                if self.token >= Token::CommitHash {
                    return self.invalid();
                }
                self.rest = &self.rest[1..];
                let n = self
                    .rest
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
                    .count();
                self.value = &self.rest[..n];
                self.rest = &self.rest[n..];
                if n == 0 {
                    return self.invalid();
                }
                self.token = Token::CommitHash;
            }
            b'-' => {
                if self.token >= Token::RevisionNo || !self.rest.starts_with(b"-r") {
                    return self.invalid();
                }
                self.rest = &self.rest[2..];
                self.token = Token::RevisionNo;
                self.digits();
            }
            _ => self.invalid(),
        }
    }

    fn invalid(&mut self) {
        self.token = Token::Invalid;
    }
}

fn token_cmp(a: &State, b: &State) -> Ordering {
    let string_sort = |a: &[u8], b: &[u8]| a.cmp(b);
    match a.token {
        // A leading zero makes digits compare as strings (as Gentoo's rules say).
        Token::Digit if a.value.first() == Some(&b'0') || b.value.first() == Some(&b'0') => {
            string_sort(a.value, b.value)
        }
        Token::Digit | Token::InitialDigit | Token::SuffixNo | Token::RevisionNo => {
            a.number.cmp(&b.number)
        }
        Token::Letter => a.value.first().cmp(&b.value.first()),
        Token::Suffix => a.suffix.cmp(&b.suffix),
        _ => string_sort(a.value, b.value),
    }
}

/// `apk_version_validate`.
pub fn validate(version: &str) -> bool {
    let mut s = State::first(version.as_bytes());
    while s.token < Token::End {
        s.next();
    }
    s.token == Token::End
}

/// `apk_version_compare_fuzzy`: with `fuzzy`, `a` equal to `b` as a prefix matches (`~`).
pub fn compare_fuzzy(a: &str, b: &str, fuzzy: bool) -> Ordering {
    let (mut ta, mut tb) = (State::first(a.as_bytes()), State::first(b.as_bytes()));
    while ta.token == tb.token && ta.token < Token::End {
        match token_cmp(&ta, &tb) {
            Ordering::Equal => {}
            other => return other,
        }
        ta.next();
        tb.next();
    }
    if ta.token == tb.token || (tb.token == Token::End && fuzzy) {
        return Ordering::Equal;
    }
    // Equal so far: the longer one is newer, unless what follows is a pre-release suffix.
    if ta.token == Token::Suffix && ta.suffix < Suffix::None {
        return Ordering::Less;
    }
    if tb.token == Token::Suffix && tb.suffix < Suffix::None {
        return Ordering::Greater;
    }
    tb.token.cmp(&ta.token)
}

/// apk's order (`apk_version_compare`).
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_fuzzy(a, b, false)
}

/// `apk_version_match` with an operator as apk writes it (`<`, `<=`, `=`, `>=`, `>`, `~`,
/// `<~`, `>~`, and a leading `!` to negate), for the upstream test cases.
pub fn matches(a: &str, op: &str, b: &str) -> Option<bool> {
    let (negate, op) = match op.strip_prefix('!') {
        Some(op) => (true, op),
        None => (false, op),
    };
    let (mut less, mut equal, mut greater, mut fuzzy) = (false, false, false, false);
    for c in op.chars() {
        match c {
            '<' => less = true,
            '>' => greater = true,
            '=' => equal = true,
            '~' => {
                fuzzy = true;
                equal = true
            }
            _ => return None,
        }
    }
    if !(less || equal || greater) {
        return None;
    }
    let ok = match compare_fuzzy(a, b, fuzzy) {
        Ordering::Less => less,
        Ordering::Equal => equal,
        Ordering::Greater => greater,
    };
    Some(ok != negate)
}
