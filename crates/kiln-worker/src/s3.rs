//! The S3-compatible endpoint the worker transfers disk images with (`--s3-endpoint`, the one
//! the component engine and the API's document reads use), and whose key signs each transfer.
//!
//! A transfer acts for the account of the image it belongs to (an import reads the account's
//! bucket, an export writes to it), as the API's document reads act for their caller: it is
//! signed with a key of that account from the server's credentials file (`kiln serve
//! --credentials`, `kiln worker --credentials`), so S3 applies the account's permissions, not
//! Kiln's. The file is read at each transfer, so keys added or removed since start count. Only
//! when the account has no key there (or there is no file: `--insecure-no-auth`, a `kiln
//! worker` without `--credentials`) is the operator's `--s3-access-key-id` used; without it the
//! transfer fails naming the account.

use kiln_toe::actions::S3Config;
use std::path::PathBuf;

/// The endpoint and where keys come from.
#[derive(Clone)]
pub struct S3Settings {
    /// Base URL, path-style requests.
    pub endpoint: String,
    pub region: String,
    /// The credentials file whose keys carry `aws_account_id`.
    pub credentials: Option<PathBuf>,
    /// `--s3-access-key-id` and its secret.
    pub fallback_key: Option<(String, String)>,
}

// By hand, so that no log line prints the secret.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field(
                "fallback_key",
                &self.fallback_key.as_ref().map(|(id, _)| id.as_str()),
            )
            .finish()
    }
}

impl S3Settings {
    /// The endpoint, signed with a key of `account` (see the module documentation).
    pub fn config_for(&self, account: &str) -> Result<S3Config, String> {
        let config = |access_key_id: String, secret_access_key: String, session_token| S3Config {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id,
            secret_access_key,
            session_token,
        };
        if let Some(path) = &self.credentials {
            let keys = kiln_auth::credentials::KeyStore::load(path)
                .map_err(|e| format!("reading the keys of account {account}: {e}"))?;
            if let Some(key) = keys.for_account(account, chrono::Utc::now()) {
                tracing::debug!(account, access_key_id = %key.access_key_id, "S3 transfer signed with the account's key");
                return Ok(config(
                    key.access_key_id.clone(),
                    key.secret_access_key.clone(),
                    key.session_token.clone(),
                ));
            }
        }
        match &self.fallback_key {
            Some((id, secret)) => Ok(config(id.clone(), secret.clone(), None)),
            None => Err(format!(
                "no key to reach S3 for account {account}: {} and no --s3-access-key-id is configured",
                match &self.credentials {
                    Some(path) => format!("the credentials file {} has no key of it", path.display()),
                    None => "this process has no credentials file".to_string(),
                }
            )),
        }
    }
}

/// The worker's endpoint signed for `account`, or why there is none.
pub fn config_for(shared: &crate::Shared, account: &str) -> Result<S3Config, String> {
    shared
        .config
        .s3
        .as_ref()
        .ok_or_else(|| {
            "this Kiln process has no S3 endpoint configured (--s3-endpoint)".to_string()
        })?
        .config_for(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accounts_own_key_signs_else_the_operators() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = sa\naws_account_id = 111111111111\n",
        )
        .unwrap();
        let mut settings = S3Settings {
            endpoint: "http://127.0.0.1:9".into(),
            region: "us-east-1".into(),
            credentials: Some(path),
            fallback_key: None,
        };
        let own = settings.config_for("111111111111").unwrap();
        assert_eq!(own.access_key_id, "AKIAAAAAAAAAAAAAAAAA");
        let err = settings.config_for("222222222222").unwrap_err();
        assert!(
            err.contains("account 222222222222") && err.contains("has no key"),
            "{err}"
        );
        settings.fallback_key = Some(("OPERATOR".into(), "s".into()));
        assert_eq!(
            settings.config_for("222222222222").unwrap().access_key_id,
            "OPERATOR"
        );
        assert_eq!(
            settings.config_for("111111111111").unwrap().access_key_id,
            "AKIAAAAAAAAAAAAAAAAA"
        );
        assert!(
            !format!("{settings:?}").contains("\"s\""),
            "no secret in Debug"
        );
    }
}
