//! Telling the three JSON formats apart by content.

use serde::de::IgnoredAny;
use std::collections::BTreeMap;

pub enum Kind {
    Osv,
    AlpineSecdb,
    DebianTracker,
}

/// Whether a file starts like the Debian tracker: `{"<package>": {"CVE-...` (or `TEMP-`).
/// Looks at the first bytes only, so the tracker can then be read as a stream.
pub fn is_debian_tracker(prefix: &[u8]) -> bool {
    let mut p = Cursor { b: prefix, i: 0 };
    p.punct(b'{')
        && p.string().is_some()
        && p.punct(b':')
        && p.punct(b'{')
        && p.string()
            .is_some_and(|k| k.starts_with("CVE-") || k.starts_with("TEMP-"))
}

/// The kind of a whole JSON document by its top-level keys.
pub fn kind_of(bytes: &[u8]) -> Result<Kind, String> {
    let keys: BTreeMap<String, IgnoredAny> = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a JSON object of a known format: {e}"))?;
    let has = |k: &str| keys.contains_key(k);
    if has("id") && has("modified") {
        Ok(Kind::Osv)
    } else if has("distroversion") && has("packages") {
        Ok(Kind::AlpineSecdb)
    } else if is_debian_tracker(bytes) {
        Ok(Kind::DebianTracker)
    } else if has("id") || has("schema_version") || has("affected") {
        Err("an OSV record needs both `id` and `modified`".to_string())
    } else {
        Err(
            "neither an OSV record (`id`, `modified`), an Alpine secdb file (`distroversion`, \
             `packages`) nor the Debian security tracker JSON (packages of CVE ids)"
                .to_string(),
        )
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn punct(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A JSON string (escapes decoded by serde_json).
    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.i;
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        while let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return serde_json::from_slice(&self.b[start..self.i]).ok(),
                _ => {}
            }
        }
        None
    }
}
