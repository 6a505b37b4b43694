//! Who is calling: every request's SigV4 signature is verified before anything else happens.
//!
//! [`Authenticator::authenticate`] turns a request as it arrived into the caller's account and
//! region, or the AWS error that refuses it. Two modes:
//!
//! - **verify** (the default): the signature must be valid for a key of the credentials file
//!   (`kiln serve --credentials`), which says the key's account; the file is re-read on SIGHUP
//!   ([`Authenticator::reload`]);
//! - **insecure** (`--insecure-no-auth`, for throwaway test servers): signatures are not
//!   checked, the account comes from the access key id through `--accounts`, unsigned requests
//!   act as the default account.
//!
//! In both modes the credential scope must be well formed and name a region the server serves:
//! the region becomes part of every ARN the request creates.
//!
//! One endpoint answers two APIs ([`Api`]): Image Builder's rest-json calls, signed for the
//! service `imagebuilder`, and the EC2 Query calls for AMIs (`crate::ec2`), signed for `ec2`.
//! A signature for one service never passes for the other.
//!
//! Signature times are checked against the system clock, not the service's (a test clock moves
//! Kiln's own time; clients sign with the real one).

use crate::accounts::Accounts;
use chrono::{DateTime, Utc};
use kiln_auth::credentials::{CredentialsError, KeyStore};
use kiln_auth::regions::Regions;
use kiln_auth::sigv4::{self, SigV4Error, SigningKey};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The caller of a request whose signature was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: String,
    pub region: String,
    /// The verified key (`None` in insecure mode, where nothing is verified): Kiln signs reads
    /// it makes on the caller's behalf with it.
    pub credentials: Option<kiln_wire::CallerCredentials>,
}

enum Mode {
    Verify {
        path: PathBuf,
        keys: RwLock<Arc<KeyStore>>,
    },
    Insecure {
        accounts: Accounts,
    },
}

/// Which API a request is for: it decides the service its credential scope must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Image Builder's rest-json operations and Kiln's own `/kiln/v1/` endpoints: `imagebuilder`.
    ImageBuilder,
    /// The EC2 Query protocol (`POST /` with `Action=...`): `ec2`.
    Ec2,
    /// IAM's Query protocol (the cross-account distribution role, `crate::iam`): `iam`. IAM is
    /// global: its calls may be scoped to any Region.
    Iam,
}

pub struct Authenticator {
    mode: Mode,
    regions: Regions,
    imagebuilder: sigv4::Settings,
    ec2: sigv4::Settings,
    iam: sigv4::Settings,
}

impl Authenticator {
    /// Verifies every request against the keys of the credentials file at `path`.
    pub fn verify(path: PathBuf, regions: Regions) -> Result<Authenticator, CredentialsError> {
        let keys = KeyStore::load(&path)?;
        if keys.is_empty() {
            return Err(CredentialsError::Invalid {
                path,
                message: "the file has no key pairs: nobody could call Kiln".to_string(),
            });
        }
        Ok(Authenticator {
            mode: Mode::Verify {
                path,
                keys: RwLock::new(Arc::new(keys)),
            },
            regions,
            imagebuilder: sigv4::Settings::imagebuilder(),
            ec2: sigv4::Settings::ec2(),
            iam: sigv4::Settings::iam(),
        })
    }

    /// Accepts any signature (or none): the account comes from `accounts`.
    pub fn insecure(accounts: Accounts, regions: Regions) -> Authenticator {
        Authenticator {
            mode: Mode::Insecure { accounts },
            regions,
            imagebuilder: sigv4::Settings::imagebuilder(),
            ec2: sigv4::Settings::ec2(),
            iam: sigv4::Settings::iam(),
        }
    }

    pub fn is_insecure(&self) -> bool {
        matches!(self.mode, Mode::Insecure { .. })
    }

    /// Re-reads the credentials file. On an error the keys in use stay as they were. Returns the
    /// number of keys now in use.
    pub fn reload(&self) -> Result<usize, CredentialsError> {
        let Mode::Verify { path, keys } = &self.mode else {
            return Ok(0);
        };
        let fresh = KeyStore::load(path)?;
        if fresh.is_empty() {
            return Err(CredentialsError::Invalid {
                path: path.clone(),
                message: "the file has no key pairs; keeping the keys in use".to_string(),
            });
        }
        let n = fresh.len();
        if let Ok(mut current) = keys.write() {
            *current = Arc::new(fresh);
        }
        Ok(n)
    }

    /// Checks the request's signature for `api`; answers who is calling.
    pub fn authenticate(
        &self,
        request: &sigv4::Request,
        now: DateTime<Utc>,
        api: Api,
    ) -> Result<Caller, SigV4Error> {
        let auth = sigv4::extract(request)?;
        if let Some(a) = auth.as_ref().filter(|_| api != Api::Iam) {
            if !self.regions.contains(&a.scope.region) {
                return Err(SigV4Error::Incomplete(format!(
                    "Credential should be scoped to a valid region, not '{}'. This server serves {}.",
                    a.scope.region,
                    describe_regions(&self.regions)
                )));
            }
        }
        match &self.mode {
            Mode::Insecure { accounts } => Ok(match auth {
                Some(a) => Caller {
                    account_id: accounts
                        .account_for(Some(&a.scope.access_key_id))
                        .to_string(),
                    region: a.scope.region,
                    credentials: None,
                },
                None => Caller {
                    account_id: accounts.default_account.clone(),
                    region: accounts.default_region.clone(),
                    credentials: None,
                },
            }),
            Mode::Verify { keys, .. } => {
                let auth = auth.ok_or(SigV4Error::Missing)?;
                let store = keys
                    .read()
                    .map(|k| k.clone())
                    .map_err(|_| SigV4Error::UnknownKey)?;
                let key = store
                    .get(&auth.scope.access_key_id)
                    .ok_or(SigV4Error::UnknownKey)?;
                if key.expires.is_some_and(|e| e <= now) {
                    return Err(SigV4Error::ExpiredToken);
                }
                let signing = SigningKey {
                    secret_access_key: &key.secret_access_key,
                    session_token: key.session_token.as_deref(),
                };
                let settings = match api {
                    Api::ImageBuilder => &self.imagebuilder,
                    Api::Ec2 => &self.ec2,
                    Api::Iam => &self.iam,
                };
                sigv4::verify(request, &auth, &signing, now, settings)?;
                Ok(Caller {
                    account_id: key.account_id.clone(),
                    region: auth.scope.region,
                    credentials: Some(kiln_wire::CallerCredentials {
                        access_key_id: key.access_key_id.clone(),
                        secret_access_key: key.secret_access_key.clone(),
                        session_token: key.session_token.clone(),
                    }),
                })
            }
        }
    }
}

fn describe_regions(regions: &Regions) -> String {
    let names = regions.names();
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!(
            "{} regions, such as {}",
            names.len(),
            names
                .iter()
                .filter(|n| n.starts_with("us-") || n.starts_with("eu-"))
                .take(4)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_auth::credentials::{append, Key};

    const ACCOUNT: &str = "111111111111";

    /// Signs a request the way an SDK does, with `secret`, at `when`.
    fn signed(
        key: &Key,
        secret: &str,
        region: &str,
        when: DateTime<Utc>,
        body: &[u8],
    ) -> Vec<(String, String)> {
        signed_for("imagebuilder", key, secret, region, when, body)
    }

    /// The same, for `service`.
    fn signed_for(
        service: &str,
        key: &Key,
        secret: &str,
        region: &str,
        when: DateTime<Utc>,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let amz_date = when.format("%Y%m%dT%H%M%SZ").to_string();
        let scope = sigv4::Scope {
            access_key_id: key.access_key_id.clone(),
            date: amz_date[..8].to_string(),
            region: region.to_string(),
            service: service.to_string(),
        };
        let mut headers = vec![
            ("host".to_string(), "127.0.0.1:7070".to_string()),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        let auth = sigv4::Authorization {
            scope: scope.clone(),
            signed_headers: vec!["host".into(), "x-amz-date".into()],
            signature: String::new(),
            amz_date: amz_date.clone(),
            location: sigv4::Location::Header,
            security_token: None,
        };
        let request = sigv4::Request {
            method: "GET",
            raw_path: "/ListComponents",
            raw_query: "",
            headers: &headers,
            authority: None,
            body,
            body_follows: false,
        };
        let payload = sigv4::hex(&<sha2::Sha256 as sha2::Digest>::digest(body));
        let canonical =
            sigv4::canonical_request(&request, &auth, &payload, &sigv4::Settings::imagebuilder())
                .unwrap();
        let signature = sigv4::sign(
            secret,
            &scope,
            &sigv4::string_to_sign(&amz_date, &scope, &canonical),
        );
        headers.push((
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders=host;x-amz-date, Signature={signature}",
                key.access_key_id,
                scope.string()
            ),
        ));
        headers
    }

    fn request<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> sigv4::Request<'a> {
        sigv4::Request {
            method: "GET",
            raw_path: "/ListComponents",
            raw_query: "",
            headers,
            authority: None,
            body,
            body_follows: false,
        }
    }

    #[test]
    fn verified_keys_act_as_their_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let key = Key::generate("default", ACCOUNT, None);
        append(&path, &key).unwrap();
        let auth = Authenticator::verify(path.clone(), Regions::default()).unwrap();
        let now = Utc::now();
        let h = signed(&key, &key.secret_access_key, "eu-west-1", now, b"");
        let caller = auth
            .authenticate(&request(&h, b""), now, Api::ImageBuilder)
            .unwrap();
        assert_eq!(caller.account_id, ACCOUNT);
        assert_eq!(caller.region, "eu-west-1");
        // The verified key travels with the caller (reads on its behalf are signed with it).
        let credentials = caller.credentials.expect("a verified caller has its key");
        assert_eq!(credentials.access_key_id, key.access_key_id);
        assert_eq!(credentials.secret_access_key, key.secret_access_key);

        let code = |h: &[(String, String)], body: &[u8]| {
            auth.authenticate(&request(h, body), now, Api::ImageBuilder)
                .unwrap_err()
                .code()
        };
        assert_eq!(code(&[], b""), "MissingAuthenticationTokenException");
        let wrong = signed(&key, "not-the-secret", "eu-west-1", now, b"");
        assert_eq!(code(&wrong, b""), "InvalidSignatureException");
        let old = signed(
            &key,
            &key.secret_access_key,
            "eu-west-1",
            now - chrono::Duration::days(365),
            b"",
        );
        assert_eq!(code(&old, b""), "InvalidSignatureException");
        assert_eq!(code(&h, b"changed"), "InvalidSignatureException");
        let stranger = Key::generate("x", ACCOUNT, None);
        let unknown = signed(
            &stranger,
            &stranger.secret_access_key,
            "us-east-1",
            now,
            b"",
        );
        assert_eq!(code(&unknown, b""), "UnrecognizedClientException");
        let odd_region = signed(&key, &key.secret_access_key, "mars-north-1", now, b"");
        assert_eq!(code(&odd_region, b""), "IncompleteSignatureException");

        // A key added to the file works after a reload, and not before.
        let second = Key::generate("second", "222222222222", None);
        append(&path, &second).unwrap();
        let h2 = signed(&second, &second.secret_access_key, "us-east-1", now, b"");
        assert_eq!(code(&h2, b""), "UnrecognizedClientException");
        assert_eq!(auth.reload().unwrap(), 2);
        assert_eq!(
            auth.authenticate(&request(&h2, b""), now, Api::ImageBuilder)
                .unwrap()
                .account_id,
            "222222222222"
        );
    }

    #[test]
    fn each_api_takes_signatures_for_its_own_service_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let key = Key::generate("default", ACCOUNT, None);
        append(&path, &key).unwrap();
        let auth = Authenticator::verify(path, Regions::default()).unwrap();
        let now = Utc::now();
        let secret = &key.secret_access_key;
        let ec2 = signed_for("ec2", &key, secret, "us-east-1", now, b"");
        let imagebuilder = signed_for("imagebuilder", &key, secret, "us-east-1", now, b"");
        let caller = auth
            .authenticate(&request(&ec2, b""), now, Api::Ec2)
            .unwrap();
        assert_eq!(caller.account_id, ACCOUNT);
        assert_eq!(caller.region, "us-east-1");
        assert!(auth
            .authenticate(&request(&imagebuilder, b""), now, Api::ImageBuilder)
            .is_ok());
        for (headers, api, wanted) in [
            (&ec2, Api::ImageBuilder, "'imagebuilder'"),
            (&imagebuilder, Api::Ec2, "'ec2'"),
        ] {
            let refused = auth
                .authenticate(&request(headers, b""), now, api)
                .unwrap_err();
            assert_eq!(refused.code(), "InvalidSignatureException");
            assert!(refused.to_string().contains(wanted), "{refused}");
        }
    }

    #[test]
    fn expired_temporary_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let now = Utc::now();
        let key = Key::generate("temp", ACCOUNT, Some(now - chrono::Duration::minutes(1)));
        append(&path, &key).unwrap();
        let auth = Authenticator::verify(path, Regions::default()).unwrap();
        let h = signed(&key, &key.secret_access_key, "us-east-1", now, b"");
        assert_eq!(
            auth.authenticate(&request(&h, b""), now, Api::ImageBuilder)
                .unwrap_err()
                .code(),
            "ExpiredTokenException"
        );
    }

    #[test]
    fn insecure_mode_still_refuses_malformed_scopes() {
        let mut accounts = Accounts::default();
        accounts.parse_map("AKIDA=444455556666").unwrap();
        let auth = Authenticator::insecure(accounts, Regions::default());
        let now = Utc::now();
        let caller = auth
            .authenticate(&request(&[], b""), now, Api::ImageBuilder)
            .unwrap();
        assert_eq!(caller.account_id, crate::accounts::DEFAULT_ACCOUNT);
        let h = vec![(
            "authorization".to_string(),
            "AWS4-HMAC-SHA256 Credential=AKIDA/20260101/us-east-1:111111111111/imagebuilder/aws4_request, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000".to_string(),
        )];
        assert_eq!(
            auth.authenticate(&request(&h, b""), now, Api::ImageBuilder)
                .unwrap_err()
                .code(),
            "IncompleteSignatureException"
        );
        let h = vec![
            (
                "authorization".to_string(),
                "AWS4-HMAC-SHA256 Credential=AKIDA/20260101/us-west-2/imagebuilder/aws4_request, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000".to_string(),
            ),
            ("x-amz-date".to_string(), "20260101T000000Z".to_string()),
        ];
        let caller = auth
            .authenticate(&request(&h, b""), now, Api::ImageBuilder)
            .unwrap();
        assert_eq!(caller.account_id, "444455556666");
        assert_eq!(caller.credentials, None, "nothing was verified");
        assert_eq!(caller.region, "us-west-2");
    }
}
