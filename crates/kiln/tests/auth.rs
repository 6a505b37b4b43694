//! Signatures made by the official Rust SDK (aws-sdk-rust) against the real server: the right
//! key acts as its account; a wrong secret, an unknown key, a missing or wrong session token, an
//! unsigned request and a year-old signature are refused with AWS's error types.

mod common;

use common::{error_code, error_message, raw_request_unsigned, sign, Server, DEFAULT_KEY, REGION};

const TEMP_KEY: &str = "ASIATEMPORARYRUST0";
const TOKEN: &str = "session-token-for-the-rust-sdk-test";

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdks_signatures_are_verified() {
    let server = Server::start();
    server.client().list_components().send().await.unwrap();

    let wrong = server.client_with(DEFAULT_KEY, "not-the-secret", None, REGION);
    let result = wrong.list_components().send().await;
    assert_eq!(error_code(&result), "InvalidSignatureException");
    assert!(error_message(&result).contains("does not match"));

    let unknown = server.client_with("AKIDUNKNOWNTOTHEM", "x", None, REGION);
    let result = unknown.list_components().send().await;
    assert_eq!(error_code(&result), "UnrecognizedClientException");

    // A region that is no region is refused, not pasted into an ARN.
    let odd = server.client_as(DEFAULT_KEY, "mars-north-1");
    let result = odd.list_components().send().await;
    assert_eq!(error_code(&result), "IncompleteSignatureException");
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_keys_need_their_session_token() {
    let mut server = Server::start();
    let mut text = std::fs::read_to_string(server.credentials_path()).unwrap();
    text.push_str(&format!(
        "\n[temporary]\naws_access_key_id = {TEMP_KEY}\naws_secret_access_key = {}\naws_account_id = 123456789012\naws_session_token = {TOKEN}\n",
        common::SECRET
    ));
    // The server reads the file at start (SIGHUP is tested in tests/python/test_auth.py).
    std::fs::write(server.credentials_path(), &text).unwrap();
    server.restart_keeping_credentials();
    let with_token = server.client_with(TEMP_KEY, common::SECRET, Some(TOKEN), REGION);
    with_token.list_components().send().await.unwrap();
    let without = server.client_with(TEMP_KEY, common::SECRET, None, REGION);
    let result = without.list_components().send().await;
    assert_eq!(error_code(&result), "UnrecognizedClientException");
    let wrong = server.client_with(TEMP_KEY, common::SECRET, Some("other"), REGION);
    let result = wrong.list_components().send().await;
    assert_eq!(error_code(&result), "UnrecognizedClientException");
}

#[test]
fn unsigned_and_stale_requests_are_refused() {
    let server = Server::start();
    let unsigned = raw_request_unsigned(server.addr, "POST", "/ListComponents", &[], b"{}");
    assert_eq!(unsigned.status, 403);
    assert_eq!(
        unsigned.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
    let old = chrono::Utc::now() - chrono::Duration::days(365);
    let headers = sign(
        server.addr,
        "POST",
        "/ListComponents",
        b"{}",
        DEFAULT_KEY,
        common::SECRET,
        old,
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let stale = raw_request_unsigned(server.addr, "POST", "/ListComponents", &headers, b"{}");
    assert_eq!(stale.status, 403);
    assert_eq!(
        stale.header("x-amzn-errortype"),
        Some("InvalidSignatureException")
    );
    assert!(stale.body.contains("Signature expired"), "{}", stale.body);
}
