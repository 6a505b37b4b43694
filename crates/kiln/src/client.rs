//! The client side of Kiln's own endpoints (`GET /kiln/v1/...`), for the subcommands that act
//! on a running server: `kiln logs`, `kiln image export`, `kiln instance shell`.
//!
//! A small blocking client (ureq). Every failure names the endpoint; an error answer of the
//! server (`{"message": ...}`) becomes an error carrying its message.

use anyhow::{anyhow, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::io::Read;
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

/// Everything but the unreserved characters of RFC 3986 is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the server is.
#[derive(clap::Args, Debug, Clone)]
pub struct EndpointArgs {
    /// The Kiln server (`kiln serve`).
    #[arg(long, env = "KILN_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
}

pub struct Client {
    endpoint: String,
    agent: ureq::Agent,
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
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // The server is Kiln on this machine or the local network: never a proxy's.
            .proxy(None)
            .build();
        Ok(Client {
            endpoint,
            agent: config.into(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of `GET /kiln/v1/<path>?<query>`; `path` segments and query values are encoded.
    pub fn url(&self, path: &[&str], query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{}", self.endpoint, kiln_api::extension::PREFIX);
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
        let url = self.url(path, query);
        let response = self
            .agent
            .get(&url)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> Client {
        Client::new(&EndpointArgs {
            endpoint: endpoint.to_string(),
        })
        .unwrap()
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
            endpoint: "127.0.0.1:7070".into()
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
