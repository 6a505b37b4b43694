//! No input makes the crate panic: every data file, mutated many times with the characters that
//! matter to the grammar (deterministic pseudo-random edits), goes through `parse`,
//! `expand_template`, `validate` and the expansion functions. `KILN_MUTATIONS` sets how many
//! mutations per input (default 40; 20000 ran clean in release).

use std::fs;
use std::path::Path;

use kiln_dockerfile::expand::{expand, expand_heredoc, expand_words};
use kiln_dockerfile::template::expand_template;
use kiln_dockerfile::{parse, validate::validate};

const PIECES: &[&str] = &[
    "\\",
    "`",
    "\"",
    "'",
    "$",
    "{",
    "}",
    "${",
    "<<",
    "<<-",
    "\n",
    "#",
    " ",
    "\t",
    "[",
    "]",
    "--",
    "=",
    "é",
    "\r\n",
    "EOF",
    "FROM x\n",
    "RUN ",
    "COPY ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "# escape=`\n",
    "{{{ imagebuilder:components }}}",
    "{{{ imagebuilder:parentImage }}}",
    ":-",
    "#",
    "%%",
    "/",
    "*",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize
    }
}

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.next() % 4 {
        let at = if chars.is_empty() {
            0
        } else {
            rng.next() % (chars.len() + 1)
        };
        match rng.next() % 3 {
            0 if !chars.is_empty() => {
                let end = (at + 1 + rng.next() % 8).min(chars.len());
                chars.drain(at.min(chars.len())..end);
            }
            _ => {
                let piece = PIECES[rng.next() % PIECES.len()];
                for (k, c) in piece.chars().enumerate() {
                    chars.insert(at + k, c);
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn exercise(text: &str) {
    if let Ok(d) = parse(text) {
        let _ = validate(&d);
    }
    if let Ok(d) = expand_template(text, "alpine:3.20") {
        let _ = validate(&d);
    }
    let lookup = |name: &str| {
        name.len()
            .is_multiple_of(2)
            .then(|| "v a*l\\ue".to_string())
    };
    for line in text.lines().take(50) {
        let _ = expand(line, '\\', &lookup);
        let _ = expand(line, '`', &lookup);
        let _ = expand_words(line, '\\', &lookup);
        let _ = expand_heredoc(line, &lookup);
    }
}

#[test]
fn mutated_inputs_do_not_panic() {
    let count: usize = std::env::var("KILN_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut inputs = Vec::new();
    for dir in [root.join("parse"), root.join("buildkit/parser")] {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = if path.is_dir() {
                path.join("Dockerfile")
            } else {
                path
            };
            if let Ok(text) = fs::read_to_string(&file) {
                inputs.push(text);
            }
        }
    }
    for name in ["parse-errors.txt", "validate.txt"] {
        let text = fs::read_to_string(root.join(name)).unwrap();
        inputs.extend(text.split("### ").map(str::to_string));
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for input in &inputs {
        exercise(input);
        let mut current = input.clone();
        for i in 0..count {
            if i % 20 == 0 {
                current = input.clone();
            }
            current = mutate(&current, &mut rng);
            exercise(&current);
        }
    }
}
