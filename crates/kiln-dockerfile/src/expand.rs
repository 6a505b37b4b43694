//! The builder's word expansion: what BuildKit's shell lexer (`frontend/dockerfile/shell/lex.go`,
//! `ProcessWord` and `ProcessWords`) does to the words of `ENV`, `ARG`, `LABEL`, `WORKDIR`,
//! `USER`, `EXPOSE`, `VOLUME`, `STOPSIGNAL`, `COPY`, `ADD` and `FROM` before it uses them. The
//! parser keeps those words as written; the build engine calls [`expand`] on each of them with
//! the stage's ARG and ENV values at that point of the build.
//!
//! What it does, as BuildKit does it:
//!
//! - Single quotes keep everything literally up to the next single quote (no escapes inside).
//! - Double quotes keep everything literally except `$` expansions and the escape character
//!   before `"`, `$` or the escape character itself; any other escaped character keeps its
//!   escape character.
//! - Outside quotes the escape character (`\`, or `` ` `` after `# escape=``) makes the next
//!   character literal; a trailing escape character is dropped.
//! - `$NAME`, `${NAME}`; positional (`$1`) and special parameters (`$@`, `$#`, ...) are never
//!   set in a Dockerfile and expand to nothing; a `$` not followed by a name stays a `$`.
//! - `${NAME:-word}` / `${NAME-word}` (default when unset or empty / when unset),
//!   `${NAME:+word}` / `${NAME+word}` (alternative), `${NAME:?message}` / `${NAME?message}`
//!   (an error carrying the message), `${NAME#pattern}`, `${NAME##pattern}`, `${NAME%pattern}`,
//!   `${NAME%%pattern}` (remove the shortest or longest matching prefix or suffix) and
//!   `${NAME/pattern/replacement}`, `${NAME//pattern/replacement}` (replace the first or every
//!   match). Patterns have `*` and `?` wildcards and `\` to quote `*`, `?`, `\`, `}` and `/`;
//!   the word after the operator is itself expanded. `${NAME:=word}` and anything else BuildKit
//!   does not know is an error, as is a missing `}`.
//! - Unset variables expand to nothing.
//!
//! [`expand_words`] does the same and then splits the result on whitespace that was not quoted
//! or escaped (whitespace that came out of a variable splits too, as in a shell): BuildKit uses
//! that for `EXPOSE`. [`expand_heredoc`] is the expansion BuildKit applies to the body of an
//! unquoted `COPY <<EOF` here-document: variables only, quotes left alone.
//!
//! The errors are BuildKit's messages ("unexpected end of statement while looking for matching
//! double-quote", "NAME: message", ...); the caller says which instruction and line they come
//! from.

/// Expands one word (quotes removed, variables substituted) with `lookup` giving the value of
/// a variable (`None`: unset). `escape` is the Dockerfile's escape character.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    Lexer::new(word, escape, lookup, Options::default())
        .process()
        .map(|(result, _)| result)
}

/// Expands `text` like [`expand`] and splits the result into words on unquoted, unescaped
/// whitespace (including whitespace that came out of a variable). Quoted empty strings make no
/// word, as in BuildKit.
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    Lexer::new(text, escape, lookup, Options::default())
        .process()
        .map(|(_, words)| words)
}

/// The expansion of an unquoted `COPY <<EOF` here-document's body: `$NAME`, `${...}` and the
/// `\` escape, but quotes are ordinary characters (BuildKit's `SkipProcessQuotes`, always with
/// `\` as the escape character).
pub fn expand_heredoc(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let options = Options {
        skip_process_quotes: true,
        ..Options::default()
    };
    Lexer::new(content, '\\', lookup, options)
        .process()
        .map(|(result, _)| result)
}

/// The words of `line` with quotes, escapes and unset variables kept as written (BuildKit's
/// lexer with `RawQuotes`, `RawEscapes` and `SkipUnsetEnv`): how BuildKit finds `<<EOF` words in
/// an instruction. A line the lexer cannot read (an unterminated quote) has no words.
pub(crate) fn raw_words(line: &str) -> Vec<String> {
    let options = Options {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Options::default()
    };
    let nothing = |_: &str| None;
    Lexer::new(line, '\\', &nothing, options)
        .process()
        .map(|(_, words)| words)
        .unwrap_or_default()
}

/// [`expand_words`] with unset variables and, when `raw_quotes`, quotes kept: what BuildKit does
/// to the word after `<<` to find a here-document's delimiter and whether it was quoted.
pub(crate) fn heredoc_words(word: &str, raw_quotes: bool) -> Result<Vec<String>, String> {
    let options = Options {
        raw_quotes,
        skip_unset_env: true,
        ..Options::default()
    };
    let nothing = |_: &str| None;
    Lexer::new(word, '\\', &nothing, options)
        .process()
        .map(|(_, words)| words)
}

#[derive(Debug, Clone, Copy, Default)]
struct Options {
    /// Keep the quote characters in the result.
    raw_quotes: bool,
    /// Keep escape characters in the result.
    raw_escapes: bool,
    /// Quotes are ordinary characters.
    skip_process_quotes: bool,
    /// An unset variable stays as written (`$NAME`, `${NAME...}`).
    skip_unset_env: bool,
}

/// The words being collected by [`Lexer::process_stop_on`] (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    options: Options,
    /// The current raw-escapes mode (patterns of `${NAME#...}` and `${NAME/...}` keep escapes).
    raw_escapes: bool,
    /// How many `${...}` words are being read inside one another.
    depth: usize,
}

/// Nested `${...}` words deeper than this are refused (the lexer recurses: a hostile template
/// must not exhaust the stack).
const MAX_DEPTH: usize = 64;

impl<'a> Lexer<'a> {
    fn new(
        text: &str,
        escape: char,
        lookup: &'a dyn Fn(&str) -> Option<String>,
        options: Options,
    ) -> Lexer<'a> {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            lookup,
            options,
            raw_escapes: options.raw_escapes,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn process(mut self) -> Result<(String, Vec<String>), String> {
        let raw = self.options.raw_escapes;
        self.process_stop_on(None, raw)
    }

    /// Reads up to `stop` (consumed) or the end, returning the result and its words.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "more than {MAX_DEPTH} ${{...}} expansions inside one another"
            ));
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let result = self.process_stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        result
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            let quotes = !self.options.skip_process_quotes;
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '<' => {
                    let value = self.process_possible_heredoc();
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '\'' if quotes => {
                    let value = self.process_single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' if quotes => {
                    let value = self.process_double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character makes the next one literal; at the end it is
                        // dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.next();
        if self.options.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    )
                }
                Some('\'') => {
                    if self.options.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.next();
        if self.options.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.options.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape character at the end: dropped (the quote is then
                            // unterminated).
                            None => continue,
                            // Only these can be escaped; before anything else the escape
                            // character stays.
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        // `<<  EOF`: the blanks belong to the same word.
        let mut result = "<<".to_string();
        while let Some(ch @ ('\t' | '\r' | ' ')) = self.peek() {
            result.push(ch);
            self.next();
        }
        result
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                // `$1`, `$001`: positional parameters, read all the digits.
                while let Some(digit) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || ch.is_ascii_digit() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.options.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(first) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        match first {
            '}' => Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.options.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = first.to_string();
                let null_is_unset = first == ':';
                let op = if null_is_unset {
                    match self.next() {
                        Some(op) => {
                            modifier.push(op);
                            Some(op)
                        }
                        None => None,
                    }
                } else {
                    Some(first)
                };
                let raw = matches!(op, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                let (word, _) = self.process_stop_on(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                let value = self.get_env(&name);
                if value.is_none() && self.options.skip_unset_env {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let unset = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    Some('-') => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if unset { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    Some(op @ ('#' | '%')) => {
                        let value = value.unwrap_or_default();
                        // `##` and `%%` remove the longest match, `#` and `%` the shortest.
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let glob = Glob::compile(pattern).map_err(|e| {
                            format!("invalid pattern ({pattern}) in substitution: {e}")
                        })?;
                        Ok(if op == '%' {
                            glob.trim_suffix(&value, greedy)
                        } else {
                            glob.trim_prefix(&value, greedy)
                        })
                    }
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let (pattern, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_string()
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.process_stop_on(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                let value = self.get_env(&name);
                if value.is_none() && self.options.skip_unset_env {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let glob = Glob::compile(&pattern)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                Ok(glob.replace(&value.unwrap_or_default(), &replacement, replace_all))
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }
}

/// The special parameters of POSIX sh (`$@`, `$#`, ...): never set in a Dockerfile.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    Literal(char),
    /// `?`
    Any,
    /// `*`
    Star,
}

/// A shell pattern of `${NAME#...}`, `${NAME%...}` and `${NAME/.../...}`: `*`, `?` and literal
/// characters, `\` quoting `*`, `?` and `\` (and dropped before `}` and `/`). No bracket
/// expressions, as in BuildKit.
struct Glob {
    tokens: Vec<GlobToken>,
}

impl Glob {
    fn compile(pattern: &str) -> Result<Glob, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => tokens.push(GlobToken::Star),
                '?' => tokens.push(GlobToken::Any),
                '\\' => {
                    if matches!(chars.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match chars.next() {
                        Some(quoted @ ('*' | '?' | '\\')) => {
                            tokens.push(GlobToken::Literal(quoted))
                        }
                        Some(other) => return Err(format!("invalid escape '\\{other}'")),
                        None => return Err("invalid escape '\\' at the end".to_string()),
                    }
                }
                other => tokens.push(GlobToken::Literal(other)),
            }
        }
        Ok(Glob { tokens })
    }

    /// `ends[j]`: whether the pattern matches `text[..j]`, for every `j` (one pass).
    fn prefix_matches(tokens: &[GlobToken], text: &[char]) -> Vec<bool> {
        let mut matched = vec![false; text.len() + 1];
        matched[0] = true;
        let mut next = vec![false; text.len() + 1];
        for token in tokens {
            next.fill(false);
            match token {
                GlobToken::Star => {
                    let mut any = false;
                    for j in 0..=text.len() {
                        any |= matched[j];
                        next[j] = any;
                    }
                }
                GlobToken::Any => next[1..].copy_from_slice(&matched[..text.len()]),
                GlobToken::Literal(c) => {
                    for j in 0..text.len() {
                        next[j + 1] = matched[j] && text[j] == *c;
                    }
                }
            }
            std::mem::swap(&mut matched, &mut next);
        }
        matched
    }

    fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = Glob::prefix_matches(&self.tokens, &chars);
        let end = if longest {
            ends.iter().rposition(|&m| m)
        } else {
            ends.iter().position(|&m| m)
        };
        match end {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, longest: bool) -> String {
        // The suffixes of the value are the prefixes of its reverse, for the reversed pattern.
        let reversed: Vec<char> = value.chars().rev().collect();
        let tokens: Vec<GlobToken> = self.tokens.iter().rev().copied().collect();
        let ends = Glob::prefix_matches(&tokens, &reversed);
        let len = if longest {
            ends.iter().rposition(|&m| m)
        } else {
            ends.iter().position(|&m| m)
        };
        match len {
            Some(len) => reversed[len..].iter().rev().collect(),
            None => value.to_string(),
        }
    }

    /// The leftmost match at or after `from`, the longest there.
    fn find(&self, chars: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=chars.len()).find_map(|start| {
            Glob::prefix_matches(&self.tokens, &chars[start..])
                .iter()
                .rposition(|&m| m)
                .map(|len| (start, start + len))
        })
    }

    /// Replaces the first match, or every match as Go's `Regexp.ReplaceAllString` does
    /// (an empty match right after a match is not replaced).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        if !all {
            return match self.find(&chars, 0) {
                Some((start, end)) => {
                    let mut out: String = chars[..start].iter().collect();
                    out.push_str(replacement);
                    out.extend(&chars[end..]);
                    out
                }
                None => value.to_string(),
            };
        }
        let mut out = String::new();
        let mut last_match_end = 0;
        let mut search = 0;
        while search <= chars.len() {
            let Some((start, end)) = self.find(&chars, search) else {
                break;
            };
            out.extend(&chars[last_match_end..start]);
            if end > last_match_end || start == 0 {
                out.push_str(replacement);
            }
            last_match_end = end;
            search = if search + 1 > end { search + 1 } else { end };
        }
        out.extend(&chars[last_match_end.min(chars.len())..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "${a:-".repeat(100_000) + &"}".repeat(100_000);
        let nothing = |_: &str| None;
        assert!(expand(&deep, '\\', &nothing)
            .unwrap_err()
            .contains("inside one another"));
        assert!(raw_words(&format!("RUN <<EOF {deep}")).is_empty());
        let ok = "${a:-".repeat(60) + "x" + &"}".repeat(60);
        assert_eq!(expand(&ok, '\\', &nothing).unwrap(), "x");
    }

    #[test]
    fn glob_matching() {
        let glob = Glob::compile("*x*y").unwrap();
        assert_eq!(glob.trim_prefix("xxyy", false), "y");
        assert_eq!(glob.trim_prefix("xxyy", true), "");
        assert!(Glob::compile("\\x").is_err());
        assert!(Glob::compile("\\").is_err());
        assert_eq!(Glob::compile("a\\}").unwrap().tokens.len(), 2);
    }

    #[test]
    fn mandatory_variables() {
        // BuildKit's TestShellParserMandatoryEnvVars.
        let set = env(&[("VAR", "plain"), ("ARG", "x")]);
        let empty = env(&[("VAR", ""), ("ARG", "x")]);
        let unset = env(&[("ARG", "x")]);
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        assert_eq!(expand(no_empty, '\\', &set).unwrap(), "plain");
        assert!(expand(no_empty, '\\', &empty)
            .unwrap_err()
            .contains("message herex"));
        assert!(expand(no_empty, '\\', &unset)
            .unwrap_err()
            .contains("message herex"));
        assert_eq!(expand(no_unset, '\\', &set).unwrap(), "plain");
        assert_eq!(expand(no_unset, '\\', &empty).unwrap(), "");
        assert_eq!(
            expand(no_unset, '\\', &unset).unwrap_err(),
            "VAR: message herex"
        );
        assert_eq!(
            expand("${VAR?}", '\\', &unset).unwrap_err(),
            "VAR: is not allowed to be unset"
        );
        assert_eq!(
            expand("${VAR:?}", '\\', &empty).unwrap_err(),
            "VAR: is not allowed to be empty"
        );
    }

    #[test]
    fn raw_words_keep_everything() {
        assert_eq!(
            raw_words(r#"RUN <<'EOF' "a b" \x $Y ${Z:-w} <<  END"#),
            vec!["RUN", "<<'EOF'", "\"a b\"", "\\x", "$Y", "${Z:-w}", "<<  END"]
        );
        assert!(raw_words("RUN 'unterminated").is_empty());
    }

    #[test]
    fn heredoc_expansion_keeps_quotes() {
        let lookup = env(&[("NAME", "kiln")]);
        assert_eq!(
            expand_heredoc("say \"$NAME\" '${NAME}' \\$NAME\n", &lookup).unwrap(),
            "say \"kiln\" 'kiln' $NAME\n"
        );
    }

    #[test]
    fn backtick_escape() {
        let lookup = env(&[("A", "1")]);
        assert_eq!(expand("a`$A", '`', &lookup).unwrap(), "a$A");
        assert_eq!(expand("a\\$A", '`', &lookup).unwrap(), "a\\1");
        assert_eq!(expand("\"a`\"b\"", '`', &lookup).unwrap(), "a\"b");
        assert_eq!(
            expand_words("a` b c", '`', &lookup).unwrap(),
            vec!["a b", "c"]
        );
    }
}
