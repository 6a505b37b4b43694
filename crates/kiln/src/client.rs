//! The client side of Kiln's own endpoints (`GET /kiln/v1/...`), for the subcommands that act
//! on a running server: `kiln logs`, `kiln image export`, `kiln instance shell`.
//!
//! A small blocking client (ureq). Requests are signed with SigV4 like the aws CLI's, with the
//! credentials the aws CLI would use ([`find_credentials`]: `--profile`, the `AWS_*` environment
//! variables, the shared credentials and config files), so that the server knows the caller's
//! account. Every failure names the endpoint; an error answer of the server
//! (`{"message": ...}`) becomes an error carrying its message.

use anyhow::{anyhow, Context, Result};
use kiln_auth::sigv4::{sign_request, Credentials, Request, Settings};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

/// Everything but the unreserved characters of RFC 3986 is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the server is, and who is asking.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EndpointArgs {
    /// The Kiln server (`kiln serve`).
    #[arg(long, env = "KILN_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// The profile of the AWS credentials file to sign with (default: the AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY environment variables, else AWS_PROFILE, else `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// The region of the request (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's
    /// region in the AWS config file, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
}

pub struct Client {
    endpoint: String,
    agent: ureq::Agent,
    credentials: Credentials,
    region: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn aws_file(variable: &str, default_name: &str) -> Option<PathBuf> {
    env(variable)
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".aws").join(default_name)))
}

/// The profile the aws CLI would use: `--profile`, else AWS_PROFILE, else `default`.
fn profile_name(profile: Option<&str>) -> String {
    profile
        .map(str::to_string)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_string())
}

/// The credentials the aws CLI would sign with: an explicit profile; else the environment's
/// keys; else the profile named by AWS_PROFILE (or `default`) in the credentials file, then in
/// the config file.
pub fn find_credentials(profile: Option<&str>) -> Result<Credentials> {
    if profile.is_none() {
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env("AWS_SESSION_TOKEN"),
            });
        }
    }
    let name = profile_name(profile);
    let credentials_file = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = aws_file("AWS_CONFIG_FILE", "config");
    credentials_file
        .as_deref()
        .and_then(|f| kiln_auth::credentials::read_client_profile(f, &name, false))
        .or_else(|| {
            config_file
                .as_deref()
                .and_then(|f| kiln_auth::credentials::read_client_profile(f, &name, true))
        })
        .ok_or_else(|| {
            anyhow!(
                "no AWS credentials to sign with: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or point AWS_SHARED_CREDENTIALS_FILE at the credentials file `kiln serve` printed \
                 (profile '{name}' was not found in {})",
                credentials_file
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "~/.aws/credentials".to_string())
            )
        })
}

/// The region the aws CLI would use.
fn find_region(region: Option<&str>, profile: Option<&str>) -> String {
    region
        .map(str::to_string)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| {
            aws_file("AWS_CONFIG_FILE", "config").and_then(|f| {
                kiln_auth::credentials::read_config_setting(&f, &profile_name(profile), "region")
            })
        })
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// A successful answer: its headers, and its body to read.
pub struct Answer {
    pub headers: ureq::http::HeaderMap,
    pub body: ureq::Body,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body (the small answers: JSON, log chunks).
    pub fn bytes(self, endpoint: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body
            .into_reader()
            .read_to_end(&mut out)
            .map_err(|e| anyhow!("reading the answer of Kiln at {endpoint}: {e}"))?;
        Ok(out)
    }
}

impl Client {
    pub fn new(args: &EndpointArgs) -> Result<Client> {
        let endpoint = args.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            anyhow::bail!("--endpoint '{endpoint}' must be an http:// or https:// URL");
        }
        let mut config = ureq::Agent::config_builder();
        // Like the aws CLI: a server with a certificate of its own (`kiln serve --tls-cert`) is
        // trusted through AWS_CA_BUNDLE.
        if let Some(bundle) = env("AWS_CA_BUNDLE") {
            let pem = std::fs::read(&bundle).map_err(|e| anyhow!("AWS_CA_BUNDLE {bundle}: {e}"))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                anyhow::bail!("AWS_CA_BUNDLE {bundle}: no PEM certificate in the file");
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        let config = config
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // The server is Kiln on this machine or the local network: never a proxy's.
            .proxy(None)
            .build();
        Ok(Client {
            endpoint,
            agent: config.into(),
            credentials: find_credentials(args.profile.as_deref())?,
            region: find_region(args.region.as_deref(), args.profile.as_deref()),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of `GET /kiln/v1/<path>?<query>`; `path` segments and query values are encoded.
    pub fn url(&self, path: &[&str], query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{}", self.endpoint, kiln_core::extension::PREFIX);
        let segments: Vec<String> = path
            .iter()
            .map(|s| utf8_percent_encode(s, COMPONENT).to_string())
            .collect();
        url.push_str(&segments.join("/"));
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&utf8_percent_encode(k, COMPONENT).to_string());
            url.push('=');
            url.push_str(&utf8_percent_encode(v, COMPONENT).to_string());
        }
        url
    }

    /// `GET /kiln/v1/<path>?<query>`: the answer when it is a 2xx, otherwise an error with the
    /// server's message.
    pub fn get(&self, path: &[&str], query: &[(&str, &str)]) -> Result<Answer> {
        self.get_url(&self.url(path, query))
    }

    /// [`Client::get`] of an endpoint that answers JSON: the parsed answer.
    pub fn get_json(&self, path: &[&str], query: &[(&str, &str)]) -> Result<serde_json::Value> {
        let body = self.get(path, query)?.bytes(self.endpoint())?;
        serde_json::from_slice(&body).context("the server's answer is not JSON")
    }

    /// Calls Image Builder operation `operation` routed as `GET /<operation>?<query>`
    /// (GetImage, ...): its JSON answer, or an error with the server's message.
    pub fn call_api_get(
        &self,
        operation: &str,
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value> {
        let mut url = format!("{}/{operation}", self.endpoint);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&utf8_percent_encode(k, COMPONENT).to_string());
            url.push('=');
            url.push_str(&utf8_percent_encode(v, COMPONENT).to_string());
        }
        let body = self.get_url(&url)?.bytes(&self.endpoint)?;
        serde_json::from_slice(&body)
            .map_err(|e| anyhow!("Kiln at {} answered what is not JSON: {e}", self.endpoint))
    }

    fn get_url(&self, url: &str) -> Result<Answer> {
        let url = url.to_string();
        let mut request = self.agent.get(&url);
        for (name, value) in self.signature(&url) {
            request = request.header(name, value);
        }
        let response = request
            .call()
            .map_err(|e| anyhow!("cannot reach Kiln at {}: {e}", self.endpoint))?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        if status.is_success() {
            return Ok(Answer {
                headers: parts.headers,
                body,
            });
        }
        let mut text = Vec::new();
        let _ = body
            .into_with_config()
            .limit(1 << 20)
            .reader()
            .read_to_end(&mut text);
        Err(anyhow!(error_message(
            &self.endpoint,
            status.as_u16(),
            &text
        )))
    }
}

impl Client {
    /// `POST /kiln/v1/<path>?<query>` with the file at `body` streamed as the body (signed
    /// over its SHA-256, as uploads are: see `kiln_api::server::upload`): the answer's JSON
    /// when it is a 2xx, otherwise an error with the server's message.
    pub fn upload(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
        body: &std::path::Path,
    ) -> Result<serde_json::Value> {
        use sha2::Digest;
        let url = self.url(path, query);
        let mut hasher = sha2::Sha256::new();
        let mut file =
            std::fs::File::open(body).map_err(|e| anyhow!("reading {}: {e}", body.display()))?;
        std::io::copy(&mut file, &mut hasher)
            .map_err(|e| anyhow!("reading {}: {e}", body.display()))?;
        let digest = kiln_auth::sigv4::hex(&hasher.finalize());
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
        let headers = vec![
            ("host".to_string(), authority.to_string()),
            ("x-amz-content-sha256".to_string(), digest.clone()),
        ];
        let request = Request {
            method: "POST",
            raw_path,
            raw_query,
            headers: &headers,
            authority: Some(authority),
            body: b"",
            body_follows: true,
        };
        let signature = sign_request(
            &request,
            &self.credentials,
            &self.region,
            chrono::Utc::now(),
            &Settings::imagebuilder(),
        );
        let file =
            std::fs::File::open(body).map_err(|e| anyhow!("reading {}: {e}", body.display()))?;
        let mut call = self
            .agent
            .post(&url)
            .header("x-amz-content-sha256", digest)
            .header("content-type", "application/octet-stream");
        for (name, value) in signature {
            call = call.header(name, value);
        }
        let response = call
            .send(ureq::SendBody::from_reader(&mut std::io::BufReader::new(
                file,
            )))
            .map_err(|e| anyhow!("cannot reach Kiln at {}: {e}", self.endpoint))?;
        self.json_answer(response)
    }

    /// Calls Image Builder operation `operation` (`POST /<operation>` with a JSON body, as
    /// the SDKs do): its JSON answer, or an error with the server's message.
    pub fn call_api(
        &self,
        operation: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let url = format!("{}/{operation}", self.endpoint);
        let body = input.to_string();
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let headers = vec![
            ("host".to_string(), authority.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        let request = Request {
            method: "POST",
            raw_path: target,
            raw_query: "",
            headers: &headers,
            authority: Some(authority),
            body: body.as_bytes(),
            body_follows: false,
        };
        let signature = sign_request(
            &request,
            &self.credentials,
            &self.region,
            chrono::Utc::now(),
            &Settings::imagebuilder(),
        );
        let mut call = self
            .agent
            .post(&url)
            .header("content-type", "application/json");
        for (name, value) in signature {
            call = call.header(name, value);
        }
        let response = call
            .send(body.as_bytes())
            .map_err(|e| anyhow!("cannot reach Kiln at {}: {e}", self.endpoint))?;
        self.json_answer(response)
    }

    /// A JSON answer (at most 64 MiB) when it is a 2xx, otherwise an error with the server's
    /// message.
    fn json_answer(&self, response: ureq::http::Response<ureq::Body>) -> Result<serde_json::Value> {
        let status = response.status();
        let mut text = Vec::new();
        let _ = response
            .into_body()
            .into_with_config()
            .limit(64 << 20)
            .reader()
            .read_to_end(&mut text);
        if status.is_success() {
            return serde_json::from_slice(&text)
                .map_err(|e| anyhow!("Kiln at {} answered what is not JSON: {e}", self.endpoint));
        }
        Err(anyhow!(error_message(
            &self.endpoint,
            status.as_u16(),
            &text
        )))
    }

    /// The SigV4 headers of `GET url`, signed now.
    fn signature(&self, url: &str) -> Vec<(String, String)> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers = vec![("host".to_string(), authority.to_string())];
        let request = Request {
            method: "GET",
            raw_path: path,
            raw_query: query,
            headers: &headers,
            authority: Some(authority),
            body: b"",
            body_follows: false,
        };
        sign_request(
            &request,
            &self.credentials,
            &self.region,
            chrono::Utc::now(),
            &Settings::imagebuilder(),
        )
    }
}

/// What to say about an error answer: its JSON `message`, or the status and the text.
pub fn error_message(endpoint: &str, status: u16, body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    match message {
        Some(m) => m,
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("Kiln at {endpoint} answered HTTP {status}")
            } else {
                format!("Kiln at {endpoint} answered HTTP {status}: {text}")
            }
        }
    }
}

/// Member `key` of a JSON answer as the commands print it: strings as they are, `-` for null
/// or missing, anything else as JSON.
pub fn field(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> Client {
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_defaults(),
            credentials: Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "secret".into(),
                session_token: None,
            },
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn requests_are_signed_so_that_the_server_verifies_them() {
        let c = client("http://127.0.0.1:7070");
        let url = c.url(
            &["logs"],
            &[(
                "imageBuildVersionArn",
                "arn:aws:imagebuilder:us-east-1:123456789012:image/a b/1.0.0/1",
            )],
        );
        let mut headers = vec![("host".to_string(), "127.0.0.1:7070".to_string())];
        headers.extend(c.signature(&url));
        let (path, query) = url["http://127.0.0.1:7070".len()..]
            .split_once('?')
            .unwrap();
        let request = Request {
            method: "GET",
            raw_path: path,
            raw_query: query,
            headers: &headers,
            authority: None,
            body: b"",
            body_follows: false,
        };
        let auth = kiln_auth::sigv4::extract(&request).unwrap().unwrap();
        let key = kiln_auth::sigv4::SigningKey {
            secret_access_key: "secret",
            session_token: None,
        };
        kiln_auth::sigv4::verify(
            &request,
            &auth,
            &key,
            chrono::Utc::now(),
            &Settings::imagebuilder(),
        )
        .unwrap();
        let wrong = kiln_auth::sigv4::SigningKey {
            secret_access_key: "other",
            session_token: None,
        };
        assert!(kiln_auth::sigv4::verify(
            &request,
            &auth,
            &wrong,
            chrono::Utc::now(),
            &Settings::imagebuilder()
        )
        .is_err());
    }

    #[test]
    fn urls_encode_segments_and_values() {
        let c = client("http://127.0.0.1:7070/");
        assert_eq!(
            c.url(
                &["logs"],
                &[
                    (
                        "imageBuildVersionArn",
                        "arn:aws:imagebuilder:us-east-1:123456789012:image/a b/1.0.0/1"
                    ),
                    ("offset", "12")
                ]
            ),
            "http://127.0.0.1:7070/kiln/v1/logs?imageBuildVersionArn=arn%3Aaws%3Aimagebuilder%3Aus-east-1%3A123456789012%3Aimage%2Fa%20b%2F1.0.0%2F1&offset=12"
        );
        assert_eq!(
            c.url(&["instances", "b-1/x"], &[]),
            "http://127.0.0.1:7070/kiln/v1/instances/b-1%2Fx"
        );
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        assert!(Client::new(&EndpointArgs {
            endpoint: "127.0.0.1:7070".into(),
            ..EndpointArgs::default()
        })
        .is_err());
    }

    #[test]
    fn error_answers_say_their_message() {
        assert_eq!(
            error_message(
                "http://e",
                404,
                br#"{"message":"The image 'x' does not exist."}"#
            ),
            "The image 'x' does not exist."
        );
        assert_eq!(
            error_message("http://e", 502, b"bad gateway"),
            "Kiln at http://e answered HTTP 502: bad gateway"
        );
        assert_eq!(
            error_message("http://e", 500, b""),
            "Kiln at http://e answered HTTP 500"
        );
    }
}
