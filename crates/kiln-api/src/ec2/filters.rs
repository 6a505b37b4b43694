//! EC2's `Filter.N.Name` / `Filter.N.Value.M`: a resource passes when, for every filter, one
//! of its values for the filter's name matches one of the filter's values. Values may use
//! wildcards: `*` (any run of characters, also none) and `?` (exactly one character); `\*`,
//! `\?` and `\\` stand for the character itself. Matching is case-sensitive, as EC2's is.

use super::error::Ec2Error;
use super::form::Params;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// Reads `Filter.N` (or another list of the same shape) from the parameters. Each filter needs
/// a name and at least one value.
pub fn parse(params: &mut Params, prefix: &str) -> Result<Vec<Filter>, Ec2Error> {
    let mut out = Vec::new();
    for i in params.indices(prefix)? {
        let name = params.required(&format!("{prefix}.{i}.Name"))?;
        let values = params.list(&format!("{prefix}.{i}.Value"))?;
        if values.is_empty() {
            return Err(Ec2Error::missing(&format!("{prefix}.{i}.Value.1")));
        }
        out.push(Filter { name, values });
    }
    Ok(out)
}

/// One piece of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`
    Run,
    /// `?`
    One,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Token::Run,
            '?' => Token::One,
            // `\` makes the next character literal; a trailing one is itself.
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    out
}

/// Whether `value` matches the filter value `pattern`.
pub fn matches(pattern: &str, value: &str) -> bool {
    let pattern = tokens(pattern);
    let value: Vec<char> = value.chars().collect();
    // The classic greedy match with one backtrack point (the last `*`): linear for patterns
    // without `*`, at most pattern × value steps otherwise.
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some(Token::Char(c)) if *c == value[v] => {
                p += 1;
                v += 1;
            }
            Some(Token::One) => {
                p += 1;
                v += 1;
            }
            Some(Token::Run) => {
                star = Some((p, v));
                p += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    p = sp + 1;
                    v = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|t| *t == Token::Run)
}

/// Whether a resource passes every filter; `values_of` gives the resource's values for a
/// filter name (none when it has no such attribute, which then matches nothing).
pub fn accept(filters: &[Filter], values_of: impl Fn(&str) -> Vec<String>) -> bool {
    filters.iter().all(|f| {
        let actual = values_of(&f.name);
        actual
            .iter()
            .any(|a| f.values.iter().any(|pattern| matches(pattern, a)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_ec2_documents() {
        assert!(matches("web-*", "web-2026-01-01"));
        assert!(matches("web-*", "web-"));
        assert!(!matches("web-*", "api-web-1"));
        assert!(matches("*web*", "my-web-1"));
        assert!(matches("2021-09-29T*", "2021-09-29T11:04:43.305Z"));
        assert!(matches("web-?", "web-1"));
        assert!(!matches("web-?", "web-12"));
        assert!(!matches("web-?", "web-"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("a*b*c", "a-b-b-d"));
        assert!(matches("*", ""));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
        assert!(matches("x", "x"));
        assert!(!matches("X", "x"), "case-sensitive");
        assert!(matches("é?", "éü"));
    }

    #[test]
    fn backslash_escapes_wildcards() {
        assert!(matches(r"a\*", "a*"));
        assert!(!matches(r"a\*", "ab"));
        assert!(matches(r"what\?", "what?"));
        assert!(!matches(r"what\?", "whats"));
        assert!(matches(r"back\\slash", r"back\slash"));
        assert!(matches("trailing\\", "trailing\\"));
    }

    #[test]
    fn long_runs_do_not_blow_up() {
        let value = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pattern, &value));
    }

    #[test]
    fn filters_are_parsed_and_combined() {
        let mut p = Params::from_pairs([
            ("Filter.1.Name", "name"),
            ("Filter.1.Value.1", "web-*"),
            ("Filter.1.Value.2", "api"),
            ("Filter.2.Name", "state"),
            ("Filter.2.Value.1", "available"),
        ]);
        let filters = parse(&mut p, "Filter").unwrap();
        assert_eq!(filters.len(), 2);
        let of = |name: &'static str| {
            move |f: &str| match f {
                "name" => vec![name.to_string()],
                "state" => vec!["available".to_string()],
                _ => Vec::new(),
            }
        };
        assert!(accept(&filters, of("web-1")));
        assert!(accept(&filters, of("api")));
        assert!(!accept(&filters, of("db")));
        assert!(accept(&[], of("db")));

        let mut p = Params::from_pairs([("Filter.1.Name", "name")]);
        assert_eq!(
            parse(&mut p, "Filter").unwrap_err().code,
            "MissingParameter"
        );
        let mut p = Params::from_pairs([("Filter.1.Value.1", "x")]);
        let e = parse(&mut p, "Filter").unwrap_err();
        assert!(e.message.contains("Filter.1.Name"), "{e}");
    }
}
