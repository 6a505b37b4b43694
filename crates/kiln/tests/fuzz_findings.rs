//! Server bugs the API fuzzer (`tests/fuzz_api.rs`) found, one test each. A new finding comes
//! here `#[ignore]`d, with a matching entry in `KNOWN_FINDINGS` of `fuzz_api.rs`, until its fix
//! lands; then the test runs with the others and the entry goes.

mod common;

use common::{create_infra, Server};

/// `GET /kiln/v1/schedule?imagePipelineArn=<ARN of another kind of resource>` reads the record
/// as a pipeline and answers 500 "stored record ... cannot be decoded"; it must answer like an
/// unknown pipeline (404 ResourceNotFoundException) or refuse the ARN (400).
#[test]
fn schedule_endpoint_refuses_arns_of_other_resources() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let infra = runtime.block_on(create_infra(&server.client(), "not-a-pipeline"));
    let encoded: String = infra
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let response = server.raw(
        "GET",
        &format!("/kiln/v1/schedule?imagePipelineArn={encoded}"),
        b"",
    );
    assert!(
        (400..500).contains(&response.status),
        "an infrastructure configuration's ARN as a pipeline: {response:?}"
    );
    assert!(
        response.header("x-amzn-errortype").is_some(),
        "{response:?}"
    );
}
