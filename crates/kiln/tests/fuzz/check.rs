//! What every answer must be, whatever the request: no 5xx, no hang, and every 4xx in the AWS
//! error shape (an `X-Amzn-ErrorType` header and a JSON body with a `message`). A request the
//! mutations turned into an EC2 Query call (`POST /`, `GET /?Action=...`) is answered by Kiln's
//! EC2 endpoint, in EC2's XML shape (`<Response><Errors><Error><Code>...<Message>...`).

use super::wire::Request;
use crate::common::RawResponse;
use std::time::Duration;

/// Longer than any request may take: the slowest legitimate one (a write waiting for its
/// commit on a loaded debug build) takes well under a second.
pub const HANG: Duration = Duration::from_secs(10);

/// `Err` with what is wrong with the answer.
pub fn check(req: &Request, resp: &RawResponse, elapsed: Duration) -> Result<(), String> {
    if elapsed > HANG {
        return Err(format!("took {elapsed:?} (limit {HANG:?})"));
    }
    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.path.as_str(), None),
    };
    // Heads and bodies the HTTP layer refuses before reading the request (`http_edges`, the
    // body limit) are answered in the generic shape below, whatever the path.
    let refused_early = resp.header("x-amzn-errortype").is_some();
    if kiln_api::ec2::is_ec2_request(&req.method, path, query) && !refused_early {
        return check_ec2(resp);
    }
    match resp.status {
        200..=299 => {
            if req.path.starts_with("/kiln/v1/") {
                return Ok(());
            }
            match serde_json::from_str::<serde_json::Value>(&resp.body) {
                Ok(serde_json::Value::Object(_)) => Ok(()),
                _ => Err(format!(
                    "{} with a body that is not a JSON object",
                    resp.status
                )),
            }
        }
        400..=499 => {
            let error_type = resp.header("x-amzn-errortype").unwrap_or_default();
            if error_type.trim().is_empty() {
                return Err(format!("{} without X-Amzn-ErrorType", resp.status));
            }
            let message = serde_json::from_str::<serde_json::Value>(&resp.body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                });
            match message {
                Some(m) if !m.trim().is_empty() => Ok(()),
                _ => Err(format!(
                    "{} {error_type} without a JSON body with a message",
                    resp.status
                )),
            }
        }
        status => Err(format!("status {status}")),
    }
}

/// An EC2 answer: XML, and every 4xx an EC2 error with a code and a message.
fn check_ec2(resp: &RawResponse) -> Result<(), String> {
    let between = |open: &str, close: &str| {
        let start = resp.body.find(open)? + open.len();
        let end = resp.body[start..].find(close)? + start;
        Some(resp.body[start..end].trim().to_string())
    };
    match resp.status {
        200..=299 if resp.body.starts_with("<?xml") => Ok(()),
        400..=499 => match (
            between("<Code>", "</Code>"),
            between("<Message>", "</Message>"),
        ) {
            (Some(code), Some(message))
                if resp.body.contains("<Response><Errors><Error>")
                    && !code.is_empty()
                    && !message.is_empty() =>
            {
                Ok(())
            }
            _ => Err(format!(
                "{} to an EC2 call without an EC2 error body: {}",
                resp.status, resp.body
            )),
        },
        status => Err(format!("status {status} to an EC2 call: {}", resp.body)),
    }
}

/// The request as one could replay it, bodies and long values cut.
pub fn describe(req: &Request) -> String {
    let mut out = format!("{} {}\n", req.method, cut(&req.path, 400));
    for (name, value) in &req.headers {
        out.push_str(&format!("{name}: {}\n", cut(value, 300)));
    }
    let body = String::from_utf8_lossy(&req.body);
    out.push_str(&format!(
        "body ({} bytes): {:?}",
        req.body.len(),
        cut(&body, 600)
    ));
    out
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!(
            "{}... ({} chars)",
            s.chars().take(n).collect::<String>(),
            s.chars().count()
        )
    }
}
