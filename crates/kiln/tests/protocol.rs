//! The HTTP layer seen from the wire, with requests written by hand: routing by method and
//! path, the AWS error format (status, `x-amzn-errortype`, JSON `message`), body parsing and
//! size limits, the `x-amzn-requestid` header on every answer, and the tag operations' ARN in a
//! percent-encoded path segment.

mod common;

use common::{create_infra, RawResponse, Server};

/// The AWS error contract every failure must keep.
fn assert_error(response: &RawResponse, status: u16, code: &str, context: &str) {
    assert_eq!(response.status, status, "{context}: {response:?}");
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some(code),
        "{context}: {response:?}"
    );
    assert!(
        response.body.starts_with('{') && response.body.contains("\"message\":\""),
        "{context}: a JSON body with a message: {}",
        response.body
    );
    assert_request_id(response, context);
}

fn assert_request_id(response: &RawResponse, context: &str) {
    let id = response
        .header("x-amzn-RequestId")
        .unwrap_or_else(|| panic!("{context}: no x-amzn-requestid header: {response:?}"));
    assert!(!id.is_empty(), "{context}: empty request id");
}

#[test]
fn unknown_paths_and_wrong_methods_are_client_errors() {
    let server = Server::start();
    let unknown = server.raw("POST", "/NoSuchOperation", b"{}");
    assert_error(&unknown, 400, "ClientException", "unknown path");
    assert!(
        unknown.body.contains("/NoSuchOperation"),
        "{}",
        unknown.body
    );

    let root = server.raw("GET", "/", b"");
    assert!((400..500).contains(&root.status), "GET /: {root:?}");
    assert!(root.header("x-amzn-errortype").is_some());
    assert_request_id(&root, "GET /");

    // ListInfrastructureConfigurations is POST; GetInfrastructureConfiguration is GET.
    let wrong = server.raw("GET", "/ListInfrastructureConfigurations", b"");
    assert_error(&wrong, 400, "ClientException", "wrong method");
    assert!(
        wrong.body.contains("POST"),
        "the message says which method the path takes: {}",
        wrong.body
    );
    let wrong = server.raw("DELETE", "/CreateInfrastructureConfiguration", b"{}");
    assert_error(&wrong, 400, "ClientException", "DELETE on a PUT path");
}

#[test]
fn bodies_that_are_not_json_objects_are_invalid_requests() {
    let server = Server::start();
    for (body, what) in [
        (&b"{\"name\": "[..], "truncated JSON"),
        (&b"not json at all"[..], "not JSON"),
        (&b"[1, 2, 3]"[..], "a JSON array"),
        (&b"\"a string\""[..], "a JSON string"),
        (&b"{\"maxResults\": 5,}"[..], "a trailing comma"),
    ] {
        let response = server.raw("POST", "/ListInfrastructureConfigurations", body);
        assert_error(&response, 400, "InvalidRequestException", what);
    }
    // An empty body is an empty input, which List accepts.
    let empty = server.raw("POST", "/ListInfrastructureConfigurations", b"");
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_request_id(&empty, "empty body");
}

#[test]
fn members_of_the_wrong_type_are_invalid_requests() {
    let server = Server::start();
    let response = server.raw(
        "POST",
        "/ListInfrastructureConfigurations",
        br#"{"maxResults": "ten"}"#,
    );
    assert_error(
        &response,
        400,
        "InvalidRequestException",
        "a string for an integer",
    );
    assert!(response.body.contains("maxResults"), "{}", response.body);
    let response = server.raw(
        "PUT",
        "/CreateInfrastructureConfiguration",
        br#"{"name": "missing-profile", "clientToken": "t"}"#,
    );
    assert_error(
        &response,
        400,
        "InvalidRequestException",
        "a required member left out",
    );
    assert!(
        response.body.contains("instanceProfileName"),
        "{}",
        response.body
    );
}

#[test]
fn bodies_over_one_mebibyte_are_refused() {
    let server = Server::start();
    let oversized = {
        let padding = "x".repeat(1024 * 1024 + 1);
        format!(r#"{{"description": "{padding}"}}"#).into_bytes()
    };
    let response = server.raw("POST", "/ListInfrastructureConfigurations", &oversized);
    assert_error(
        &response,
        413,
        "RequestEntityTooLargeException",
        "Content-Length over the limit",
    );

    // Without a Content-Length the limit is enforced while streaming.
    let response = common::raw_request(
        server.addr,
        "POST",
        "/ListInfrastructureConfigurations",
        &[("Transfer-Encoding", "chunked")],
        &oversized,
    );
    assert_error(
        &response,
        413,
        "RequestEntityTooLargeException",
        "chunked body over the limit",
    );

    // The server is still fine afterwards, and a chunked body under the limit is accepted.
    let response = common::raw_request(
        server.addr,
        "POST",
        "/ListInfrastructureConfigurations",
        &[("Transfer-Encoding", "chunked")],
        br#"{"maxResults": 5}"#,
    );
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn operations_not_implemented_yet_say_so() {
    let server = Server::start();
    // A body that passes every model constraint, so the request reaches the handler.
    let body = br#"{
        "resourceType": "COMPONENT_DATA",
        "resourceArn": "arn:aws:imagebuilder:us-east-1:aws-marketplace:component/x/1.0.0/1"
    }"#;
    let response = server.raw("POST", "/GetMarketplaceResource", body);
    if response.status == 200 {
        // Implemented since this test was written: then it must have answered with the resource.
        assert!(response.body.contains("resourceArn"), "{}", response.body);
        return;
    }
    assert_error(&response, 400, "ClientException", "GetMarketplaceResource");
    assert!(
        response.body.contains("GetMarketplaceResource"),
        "the message names the operation: {}",
        response.body
    );
}

#[test]
fn successful_answers_carry_a_request_id_in_header_and_body() {
    let server = Server::start();
    let response = server.raw(
        "PUT",
        "/CreateInfrastructureConfiguration",
        br#"{"name": "raw", "instanceProfileName": "p", "clientToken": "raw-token"}"#,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_request_id(&response, "create");
    let header_id = response.header("x-amzn-requestid").unwrap_or_default();
    assert!(
        response
            .body
            .contains(&format!("\"requestId\":\"{header_id}\"")),
        "the body's requestId is the header's: {}",
        response.body
    );

    let second = server.raw("POST", "/ListInfrastructureConfigurations", b"{}");
    assert_request_id(&second, "list");
    assert_ne!(
        second.header("x-amzn-requestid"),
        Some(header_id),
        "every request has its own id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_addressed_by_a_percent_encoded_arn_in_the_path() {
    let server = Server::start();
    let client = server.client();
    let arn = create_infra(&client, "tagged").await;
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("team", "kiln")
        .send()
        .await
        .expect("tagging succeeds");

    let encoded = arn.replace(':', "%3A").replace('/', "%2F");
    let addr = server.addr;
    let path = format!("/tags/{encoded}");
    let response =
        tokio::task::spawn_blocking(move || common::raw_request(addr, "GET", &path, &[], b""))
            .await
            .expect("the raw request did not panic");
    assert_eq!(response.status, 200, "{response:?}");
    assert_request_id(&response, "ListTagsForResource");
    assert_eq!(response.body, r#"{"tags":{"team":"kiln"}}"#);

    // An ARN that is not percent-encoded spans several path segments and routes nowhere.
    let raw_path = format!("/tags/{arn}");
    let response =
        tokio::task::spawn_blocking(move || common::raw_request(addr, "GET", &raw_path, &[], b""))
            .await
            .expect("the raw request did not panic");
    assert!((400..500).contains(&response.status), "{response:?}");
    assert!(response.header("x-amzn-errortype").is_some());
}
