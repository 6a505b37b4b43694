//! Throttling seen by the Rust SDK: a server with a low rate (`--rate-limit 5 --rate-burst 5`)
//! answers 429 `ThrottlingException` with `Retry-After` once an account's bucket is empty, and
//! the SDK's standard retry mode recovers without any code of the caller's.

mod common;

use aws_sdk_imagebuilder::config::retry::RetryConfig;
use common::{error_code, Server, DEFAULT_KEY, REGION};

const RATE: &str = "5";

fn slow_server() -> Server {
    Server::start_with_args("", &["--rate-limit", RATE, "--rate-burst", RATE])
}

#[tokio::test]
async fn without_retries_the_sdk_sees_throttling_exception() {
    let server = slow_server();
    let client = server.client();
    let mut refused = None;
    for _ in 0..100 {
        let result = client.list_infrastructure_configurations().send().await;
        if result.is_err() {
            refused = Some(result);
            break;
        }
    }
    let refused = refused.expect("no call was throttled");
    assert_eq!(error_code(&refused), "ThrottlingException");
    let raw = refused
        .as_ref()
        .err()
        .and_then(|e| e.raw_response())
        .expect("a raw response");
    assert_eq!(raw.status().as_u16(), 429);
    let retry_after: u64 = raw
        .headers()
        .get("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after >= 1);
}

#[tokio::test]
async fn standard_retries_recover_from_throttling() {
    let server = slow_server();
    let client = server.client_with_retries(
        DEFAULT_KEY,
        REGION,
        RetryConfig::standard().with_max_attempts(10),
    );
    for i in 0..20 {
        client
            .list_infrastructure_configurations()
            .send()
            .await
            .unwrap_or_else(|e| panic!("call {i} failed despite retries: {e:?}"));
    }
}
