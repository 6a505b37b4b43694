//! Pagination through the SDK: maxResults cuts pages, nextToken chains them without gaps or
//! repeats, tokens stay valid across a restart (they are signed with a key kept in the data
//! directory), and an altered token or an out-of-range page size is refused.

mod common;

use aws_sdk_imagebuilder::Client;
use common::{create_infra, error_code, Server};
use std::collections::BTreeSet;

const RESOURCES: usize = 7;

/// One page: its ARNs and the token to the next.
async fn page(client: &Client, max: i32, token: Option<String>) -> (Vec<String>, Option<String>) {
    let output = client
        .list_infrastructure_configurations()
        .max_results(max)
        .set_next_token(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("listing a page: {e:?}"));
    let arns = output
        .infrastructure_configuration_summary_list()
        .iter()
        .map(|s| s.arn().expect("every summary has an ARN").to_string())
        .collect();
    (arns, output.next_token)
}

async fn create_seven(client: &Client) -> BTreeSet<String> {
    let mut arns = BTreeSet::new();
    for i in 0..RESOURCES {
        arns.insert(create_infra(client, &format!("paged-{i}")).await);
    }
    arns
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_chain_without_gaps_or_repeats() {
    let server = Server::start();
    let client = server.client();
    let created = create_seven(&client).await;

    let (first, token) = page(&client, 3, None).await;
    let token = token.expect("a token after the first page");
    let (second, token) = page(&client, 3, Some(token)).await;
    let token = token.expect("a token after the second page");
    let (third, token) = page(&client, 3, Some(token)).await;
    assert_eq!(
        [first.len(), second.len(), third.len()],
        [3, 3, 1],
        "pages of 3, 3 and 1"
    );
    assert!(token.is_none(), "no token after the last page");

    let all: Vec<String> = first.into_iter().chain(second).chain(third).collect();
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), all.len(), "no ARN on two pages: {all:?}");
    assert_eq!(distinct, created, "every resource on some page");

    // A page size that divides the list exactly ends without a dangling token.
    let (everything, token) = page(&client, RESOURCES as i32, None).await;
    assert_eq!(everything.len(), RESOURCES);
    assert!(token.is_none());
    // Without maxResults a page holds up to 25.
    let (default_page, token) = {
        let output = client
            .list_infrastructure_configurations()
            .send()
            .await
            .expect("list succeeds");
        (
            output.infrastructure_configuration_summary_list().len(),
            output.next_token,
        )
    };
    assert_eq!(default_page, RESOURCES);
    assert!(token.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_stay_valid_across_a_restart() {
    let mut server = Server::start();
    let client = server.client();
    create_seven(&client).await;
    let (_, token) = page(&client, 3, None).await;
    let token = token.expect("a token after the first page");
    let (expected_second, _) = page(&client, 3, Some(token.clone())).await;

    server.restart();
    let client = server.client();
    let (second, next) = page(&client, 3, Some(token)).await;
    assert_eq!(second, expected_second, "the same page after the restart");
    assert!(next.is_some(), "and the chain goes on");
}

/// `token` with one character of its payload replaced by another valid base64url character.
fn tamper(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let middle = chars.len() / 4;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn altered_tokens_are_refused() {
    let server = Server::start();
    let client = server.client();
    create_seven(&client).await;
    let (_, token) = page(&client, 3, None).await;
    let token = token.expect("a token after the first page");

    for bad in [tamper(&token), format!("{token}x"), "garbage".to_string()] {
        assert_ne!(bad, token);
        let result = client
            .list_infrastructure_configurations()
            .max_results(3)
            .next_token(&bad)
            .send()
            .await;
        assert_eq!(
            error_code(&result),
            "InvalidPaginationTokenException",
            "token {bad:?}"
        );
    }

    // A token of one list is no good for another.
    let other_list = client
        .list_image_pipelines()
        .next_token(&token)
        .send()
        .await;
    assert_eq!(error_code(&other_list), "InvalidPaginationTokenException");
    // Nor for another region.
    let other_region = server
        .client_as(common::DEFAULT_KEY, "eu-west-1")
        .list_infrastructure_configurations()
        .next_token(&token)
        .send()
        .await;
    assert_eq!(error_code(&other_region), "InvalidPaginationTokenException");
}

#[tokio::test(flavor = "multi_thread")]
async fn page_sizes_outside_1_to_100_are_invalid() {
    let server = Server::start();
    let client = server.client();
    // The SDK does not check ranges itself, so these reach the server.
    for max in [0, 101, -1] {
        let result = client
            .list_infrastructure_configurations()
            .max_results(max)
            .send()
            .await;
        assert_eq!(
            error_code(&result),
            "InvalidRequestException",
            "maxResults {max}"
        );
        assert!(
            common::error_message(&result).contains("maxResults"),
            "the message names maxResults: {}",
            common::error_message(&result)
        );
    }
    for max in [1, 100] {
        client
            .list_infrastructure_configurations()
            .max_results(max)
            .send()
            .await
            .unwrap_or_else(|e| panic!("maxResults {max} is fine: {e:?}"));
    }
}
