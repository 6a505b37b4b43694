//! Kiln's key pairs, in the AWS shared credentials file format.
//!
//! One profile per key pair; `aws_account_id` says which account the key acts as. The aws CLI
//! and the SDKs read the same file (`AWS_SHARED_CREDENTIALS_FILE`, `--profile`), and ignore the
//! keys they do not know:
//!
//! ```ini
//! [platform-team]
//! aws_access_key_id = AKIA...
//! aws_secret_access_key = ...
//! aws_account_id = 111111111111
//! ```
//!
//! A profile with `aws_session_token` is a temporary key: requests must carry that token
//! (`X-Amz-Security-Token`), and `kiln_session_expiration` (RFC 3339), when given, is when it
//! stops working. Every profile must be complete: a file Kiln cannot read entirely is refused,
//! so that no key silently goes missing.

use chrono::{DateTime, Utc};
use rand::Rng;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const ACCESS_KEY_ID: &str = "aws_access_key_id";
pub const SECRET_ACCESS_KEY: &str = "aws_secret_access_key";
pub const ACCOUNT_ID: &str = "aws_account_id";
pub const SESSION_TOKEN: &str = "aws_session_token";
pub const SESSION_EXPIRATION: &str = "kiln_session_expiration";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One key pair and the account it acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub profile: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
    pub session_token: Option<String>,
    pub expires: Option<DateTime<Utc>>,
}

impl Key {
    /// A new random key for `account`: a long-term one (`AKIA...`), or a temporary one
    /// (`ASIA...` with a session token) that expires at `expires`.
    pub fn generate(profile: &str, account_id: &str, expires: Option<DateTime<Utc>>) -> Key {
        const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET_ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::thread_rng();
        let mut pick = |alphabet: &[u8], n: usize| -> String {
            (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
                .collect()
        };
        let prefix = if expires.is_some() { "ASIA" } else { "AKIA" };
        Key {
            profile: profile.to_string(),
            access_key_id: format!("{prefix}{}", pick(KEY_ALPHABET, 16)),
            secret_access_key: pick(SECRET_ALPHABET, 40),
            account_id: account_id.to_string(),
            session_token: expires.map(|_| pick(SECRET_ALPHABET, 96)),
            expires,
        }
    }

    /// The profile as it is written to the file.
    pub fn to_ini(&self) -> String {
        let mut s = format!(
            "[{}]\n{ACCESS_KEY_ID} = {}\n{SECRET_ACCESS_KEY} = {}\n{ACCOUNT_ID} = {}\n",
            self.profile, self.access_key_id, self.secret_access_key, self.account_id
        );
        if let Some(token) = &self.session_token {
            s.push_str(&format!("{SESSION_TOKEN} = {token}\n"));
        }
        if let Some(expires) = &self.expires {
            s.push_str(&format!(
                "{SESSION_EXPIRATION} = {}\n",
                expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        s
    }
}

/// An account id is twelve digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A profile name Kiln writes: letters, digits, `-`, `_`, `.`.
pub fn is_profile_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Every key of a credentials file, by access key id.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: HashMap<String, Key>,
}

impl KeyStore {
    pub fn get(&self, access_key_id: &str) -> Option<&Key> {
        self.keys.get(access_key_id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A key that acts as `account` at `now`, for work Kiln does on the account's behalf (S3
    /// transfers of its images): a long-term key before a temporary one, then the first profile
    /// by name, so that the same file always gives the same key. Expired keys are skipped.
    pub fn for_account(&self, account: &str, now: DateTime<Utc>) -> Option<&Key> {
        self.keys
            .values()
            .filter(|k| k.account_id == account)
            .filter(|k| k.expires.is_none_or(|t| t > now))
            .min_by_key(|k| (k.session_token.is_some(), k.profile.as_str()))
    }

    pub fn load(path: &Path) -> Result<KeyStore, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        KeyStore::parse(&text).map_err(|message| CredentialsError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the text of a credentials file; the error names the profile and the field.
    pub fn parse(text: &str) -> Result<KeyStore, String> {
        let ini = ini::Ini::load_from_str(text).map_err(|e| e.to_string())?;
        let mut keys: HashMap<String, Key> = HashMap::new();
        for (section, props) in ini.iter() {
            let Some(profile) = section else {
                if props.iter().next().is_some() {
                    return Err(
                        "settings before the first [profile] line belong to no profile".to_string(),
                    );
                }
                continue;
            };
            let field = |name: &str| -> Result<String, String> {
                let mut values = props.get_all(name);
                let value = values
                    .next()
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("profile [{profile}] has no {name}"))?;
                if values.next().is_some() {
                    return Err(format!("profile [{profile}] has {name} twice"));
                }
                Ok(value)
            };
            let key = Key {
                profile: profile.to_string(),
                access_key_id: field(ACCESS_KEY_ID)?,
                secret_access_key: field(SECRET_ACCESS_KEY)?,
                account_id: field(ACCOUNT_ID)?,
                session_token: field(SESSION_TOKEN).ok(),
                expires: match field(SESSION_EXPIRATION) {
                    Ok(v) => Some(
                        DateTime::parse_from_rfc3339(&v)
                            .map_err(|e| {
                                format!(
                                    "profile [{profile}]: {SESSION_EXPIRATION} '{v}' is not an RFC 3339 time: {e}"
                                )
                            })?
                            .with_timezone(&Utc),
                    ),
                    Err(_) => None,
                },
            };
            if !key.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
                || !(16..=128).contains(&key.access_key_id.len())
            {
                return Err(format!(
                    "profile [{profile}]: {ACCESS_KEY_ID} must be 16 to 128 letters and digits"
                ));
            }
            if !is_account_id(&key.account_id) {
                return Err(format!(
                    "profile [{profile}]: {ACCOUNT_ID} '{}' must be 12 digits",
                    key.account_id
                ));
            }
            if key.expires.is_some() && key.session_token.is_none() {
                return Err(format!(
                    "profile [{profile}]: {SESSION_EXPIRATION} is only for keys with an {SESSION_TOKEN}"
                ));
            }
            if let Some(other) = keys.get(&key.access_key_id) {
                return Err(format!(
                    "profiles [{}] and [{profile}] have the same {ACCESS_KEY_ID}",
                    other.profile
                ));
            }
            keys.insert(key.access_key_id.clone(), key);
        }
        Ok(KeyStore { keys })
    }
}

/// The profile names in a credentials file (empty when it does not exist).
fn profiles_in(path: &Path) -> Result<Vec<String>, CredentialsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let ini = ini::Ini::load_from_str(&text).map_err(|e| CredentialsError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            Ok(ini.sections().flatten().map(str::to_string).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CredentialsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A profile name not yet in the file: `profile` when given (an error if taken), otherwise
/// `default` for the first key, then `account-<id>`, `account-<id>-2`, ...
pub fn free_profile_name(
    path: &Path,
    profile: Option<&str>,
    account_id: &str,
) -> Result<String, CredentialsError> {
    let taken = profiles_in(path)?;
    let invalid = |message: String| CredentialsError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if let Some(p) = profile {
        if !is_profile_name(p) {
            return Err(invalid(format!(
                "profile name '{p}' must be letters, digits, '-', '_' or '.'"
            )));
        }
        if taken.iter().any(|t| t == p) {
            return Err(invalid(format!("there is a profile [{p}] already")));
        }
        return Ok(p.to_string());
    }
    if taken.is_empty() {
        return Ok("default".to_string());
    }
    let base = format!("account-{account_id}");
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    Ok(name)
}

/// Appends `key` to the credentials file at `path`, creating it (mode 0600) if needed. The
/// file stays readable by the aws CLI and by [`KeyStore::load`].
pub fn append(path: &Path, key: &Key) -> Result<(), CredentialsError> {
    let io = |source| CredentialsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let existing = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mut text = String::new();
    if !existing.is_empty() {
        if !existing.ends_with(b"\n") {
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&key.to_ini());
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The static keys of `profile` in an AWS credentials or config file, as a client reads them
/// (the aws CLI's rules: `[name]` in the credentials file, `[profile name]` or `[default]` in the
/// config file). `None` when the file or the profile does not exist or has no key pair.
pub fn read_client_profile(
    path: &Path,
    profile: &str,
    config_file: bool,
) -> Option<crate::sigv4::Credentials> {
    let props = client_section(path, profile, config_file)?;
    Some(crate::sigv4::Credentials {
        access_key_id: props.get(ACCESS_KEY_ID)?.trim().to_string(),
        secret_access_key: props.get(SECRET_ACCESS_KEY)?.trim().to_string(),
        session_token: props.get(SESSION_TOKEN).map(|t| t.trim().to_string()),
    })
}

/// A setting of `profile` in an AWS config file (`region`, say).
pub fn read_config_setting(path: &Path, profile: &str, name: &str) -> Option<String> {
    client_section(path, profile, true)?
        .get(name)
        .map(|v| v.trim().to_string())
}

/// The section of `profile` in a credentials file (`[name]`) or a config file (`[profile name]`,
/// but `[default]`).
fn client_section(path: &Path, profile: &str, config_file: bool) -> Option<ini::Properties> {
    let text = std::fs::read_to_string(path).ok()?;
    let ini = ini::Ini::load_from_str(&text).ok()?;
    let section = if config_file && profile != "default" {
        format!("profile {profile}")
    } else {
        profile.to_string()
    };
    ini.section(Some(section.as_str())).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_with_complete_profiles_load() {
        let store = KeyStore::parse(
            "[platform-team]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = s3cr3t\naws_account_id = 111111111111\nregion = us-east-1\n\n[temp]\naws_access_key_id=ASIAAAAAAAAAAAAAAAAA\naws_secret_access_key=x\naws_account_id=222222222222\naws_session_token=tok\nkiln_session_expiration=2026-12-05T10:00:00Z\n",
        )
        .unwrap();
        assert_eq!(store.len(), 2);
        let k = store.get("AKIAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(k.account_id, "111111111111");
        assert_eq!(k.profile, "platform-team");
        let t = store.get("ASIAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(t.session_token.as_deref(), Some("tok"));
        assert!(t.expires.is_some());
        assert_eq!(t.account_id, "222222222222");
    }

    #[test]
    fn an_accounts_key_is_chosen_the_same_way_every_time() {
        let store = KeyStore::parse(
            "[zeta]\naws_access_key_id = AKIAZZZZZZZZZZZZZZZZ\naws_secret_access_key = z\naws_account_id = 111111111111\n\n\
             [alpha]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = a\naws_account_id = 111111111111\n\n\
             [atemp]\naws_access_key_id = ASIAAAAAAAAAAAAAAAAA\naws_secret_access_key = t\naws_account_id = 111111111111\naws_session_token = tok\n\n\
             [old]\naws_access_key_id = ASIABBBBBBBBBBBBBBBB\naws_secret_access_key = o\naws_account_id = 222222222222\naws_session_token = tok\nkiln_session_expiration = 2020-01-01T00:00:00Z\n",
        )
        .unwrap();
        let now = Utc::now();
        assert_eq!(
            store.for_account("111111111111", now).unwrap().profile,
            "alpha"
        );
        assert_eq!(store.for_account("222222222222", now), None, "expired");
        assert_eq!(store.for_account("333333333333", now), None);
    }

    #[test]
    fn incomplete_or_conflicting_profiles_are_refused_by_name() {
        let cases = [
            (
                "[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = s\n",
                "[a] has no aws_account_id",
            ),
            (
                "[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = s\naws_account_id = 12\n",
                "must be 12 digits",
            ),
            (
                "[a]\naws_access_key_id = AKIA\naws_secret_access_key = s\naws_account_id = 111111111111\n",
                "16 to 128",
            ),
            (
                "[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = s\naws_account_id = 111111111111\n[b]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = t\naws_account_id = 111111111111\n",
                "same aws_access_key_id",
            ),
            ("x = 1\n[a]\n", "belong to no profile"),
        ];
        for (text, expected) in cases {
            let e = KeyStore::parse(text).unwrap_err();
            assert!(e.contains(expected), "{e} for {text}");
        }
    }

    #[test]
    fn generated_keys_append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/credentials");
        let name = free_profile_name(&path, None, "111111111111").unwrap();
        assert_eq!(name, "default");
        let first = Key::generate(&name, "111111111111", None);
        append(&path, &first).unwrap();
        let name = free_profile_name(&path, None, "111111111111").unwrap();
        assert_eq!(name, "account-111111111111");
        let expires = Utc::now() + chrono::Duration::hours(1);
        let second = Key::generate(&name, "111111111111", Some(expires));
        append(&path, &second).unwrap();
        assert!(free_profile_name(&path, Some("default"), "1").is_err());
        let store = KeyStore::load(&path).unwrap();
        assert_eq!(store.get(&first.access_key_id), Some(&first));
        let read = store.get(&second.access_key_id).unwrap();
        assert!(read.access_key_id.starts_with("ASIA"));
        assert_eq!(read.session_token, second.session_token);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the file is private: {mode:o}");
    }
}
