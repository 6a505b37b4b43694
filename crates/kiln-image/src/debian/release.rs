//! The suite's signed release: `dists/SUITE/InRelease`, an OpenPGP clearsigned text whose
//! signature must verify with a key of the keyring (the primary key or a subkey, with rpgp, a
//! pure-Rust OpenPGP). Only the signed text is parsed: its SHA256 section gives the size and
//! hash of every index file, which `packages.rs` checks before it reads one.

use super::{get, DebianMirror};
use crate::{Error, Result};
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use std::collections::HashMap;

/// The most an `InRelease` may weigh (Debian's are about 150 KB).
const MAX_RELEASE: u64 = 16 << 20;

/// What the signed release says.
#[derive(Debug)]
pub(crate) struct Release {
    /// The URL it was read from (for errors).
    pub url: String,
    /// `Suite` and `Codename`.
    pub suite: String,
    pub codename: String,
    /// Path under `dists/SUITE/` → (size, SHA256 hex).
    pub sha256: HashMap<String, (u64, String)>,
}

/// The public keys of a keyring file (binary or armored); keys rpgp cannot read are skipped,
/// but a keyring with none it can read is an error.
pub(crate) fn keyring(bytes: &[u8]) -> Result<Vec<SignedPublicKey>> {
    let bad = |e: pgp::errors::Error| Error::Invalid(format!("reading the Debian keyring: {e}"));
    let (keys, _) = SignedPublicKey::from_reader_many(bytes).map_err(bad)?;
    let keys: Vec<SignedPublicKey> = keys.filter_map(|k| k.ok()).collect();
    if keys.is_empty() {
        return Err(Error::Invalid(
            "the Debian keyring holds no OpenPGP public key".to_string(),
        ));
    }
    Ok(keys)
}

/// The text `inrelease` signs, if a key of `keys` (or one of their subkeys) made one of its
/// signatures; otherwise an error that names `url`.
pub(crate) fn verified_text(
    inrelease: &str,
    keys: &[SignedPublicKey],
    url: &str,
) -> Result<String> {
    let (msg, _) = CleartextSignedMessage::from_string(inrelease)
        .map_err(|e| Error::Invalid(format!("{url} is not an OpenPGP clearsigned release: {e}")))?;
    let signed = keys
        .iter()
        .any(|k| msg.verify(k).is_ok() || k.public_subkeys.iter().any(|s| msg.verify(s).is_ok()));
    if !signed {
        return Err(Error::Invalid(format!(
            "the OpenPGP signature of {url} does not verify with the Debian keyring (no key of \
             the keyring made a valid signature of it)"
        )));
    }
    Ok(msg.signed_text().replace("\r\n", "\n"))
}

/// Parses a release's fields and its SHA256 section.
pub(crate) fn parse(text: &str, url: &str) -> Result<Release> {
    let mut release = Release {
        url: url.to_string(),
        suite: String::new(),
        codename: String::new(),
        sha256: HashMap::new(),
    };
    let mut in_sha256 = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            if in_sha256 {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let [hash, size, path] = parts[..] else {
                    return Err(Error::Invalid(format!("{url}: bad SHA256 line `{line}`")));
                };
                let size: u64 = size
                    .parse()
                    .map_err(|_| Error::Invalid(format!("{url}: bad size in `{line}`")))?;
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::Invalid(format!("{url}: bad SHA256 in `{line}`")));
                }
                release
                    .sha256
                    .insert(path.to_string(), (size, hash.to_ascii_lowercase()));
            }
            continue;
        }
        in_sha256 = false;
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "SHA256" => in_sha256 = true,
            "Suite" => release.suite = value.trim().to_string(),
            "Codename" => release.codename = value.trim().to_string(),
            _ => {}
        }
    }
    if release.sha256.is_empty() {
        return Err(Error::Invalid(format!("{url} has no SHA256 section")));
    }
    Ok(release)
}

/// Fetches, verifies and parses `dists/SUITE/InRelease` of `mirror`.
pub(crate) fn fetch(mirror: &DebianMirror, suite: &str) -> Result<Release> {
    let keys = keyring(mirror.keyring_bytes())?;
    let url = mirror.url_of(&format!("dists/{suite}/InRelease"));
    let data = get::bytes(&url, MAX_RELEASE)?;
    let text =
        String::from_utf8(data).map_err(|_| Error::Invalid(format!("{url} is not UTF-8 text")))?;
    let signed = verified_text(&text, &keys, &url)?;
    let release = parse(&signed, &url)?;
    // A release of another suite, signed all the same, is not what was asked for.
    if release.suite != suite && release.codename != suite {
        return Err(Error::Invalid(format!(
            "{url} is the release of `{}` ({}), not of `{suite}`",
            release.suite, release.codename
        )));
    }
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha256_section_is_parsed() {
        let text = "Origin: Debian\nSuite: stable\nCodename: bookworm\nMD5Sum:\n 0123 12 main/x\nSHA256:\n \
            aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1234 main/binary-amd64/Packages.xz\n \
            bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb    99 main/binary-amd64/Release\n";
        let r = parse(text, "u").unwrap();
        assert_eq!(r.codename, "bookworm");
        assert_eq!(r.suite, "stable");
        assert_eq!(r.sha256.len(), 2);
        assert_eq!(
            r.sha256["main/binary-amd64/Packages.xz"],
            (1234, "a".repeat(64))
        );
        assert!(!r.sha256.contains_key("main/x"));
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(parse("SHA256:\n zz 1 a\n", "u").is_err());
        assert!(parse("SHA256:\n a b\n", "u").is_err());
        assert!(parse("Suite: x\n", "u").is_err());
    }

    #[test]
    fn the_embedded_keyring_reads() {
        let keys = keyring(super::super::DEBIAN_ARCHIVE_KEYRING).unwrap();
        assert!(keys.len() >= 3, "{}", keys.len());
    }
}
