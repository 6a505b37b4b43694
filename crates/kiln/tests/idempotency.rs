//! Idempotency through clientToken: retries of one request, however many and however
//! simultaneous, create one resource and all get the first answer; a token reused with other
//! parameters is refused; and tokens are durable, so a retry after a server restart still
//! finds the first answer.

mod common;

use aws_sdk_imagebuilder::Client;
use common::{error_code, error_message, list_all_infra, Server};

async fn create_with_token(
    client: &Client,
    name: &str,
    profile: &str,
    token: &str,
) -> Result<
    aws_sdk_imagebuilder::operation::create_infrastructure_configuration::CreateInfrastructureConfigurationOutput,
    aws_sdk_imagebuilder::error::SdkError<
        aws_sdk_imagebuilder::operation::create_infrastructure_configuration::CreateInfrastructureConfigurationError,
    >,
>{
    client
        .create_infrastructure_configuration()
        .name(name)
        .instance_profile_name(profile)
        .client_token(token)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_simultaneous_retries_create_one_resource() {
    let server = Server::start();
    let client = server.client();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                create_with_token(&client, "burst", "profile", "burst-token").await
            })
        })
        .collect();
    let mut arns = Vec::new();
    for task in tasks {
        let output = task
            .await
            .expect("the task did not panic")
            .unwrap_or_else(|e| panic!("every retry succeeds: {e:?}"));
        assert_eq!(output.client_token(), Some("burst-token"));
        arns.push(
            output
                .infrastructure_configuration_arn
                .expect("every answer carries the ARN"),
        );
    }
    assert_eq!(arns.len(), 100);
    assert!(
        arns.iter().all(|a| *a == arns[0]),
        "every answer names the same ARN: {arns:?}"
    );
    assert_eq!(list_all_infra(&client).await, vec![arns[0].clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_reused_with_other_parameters_is_refused() {
    let server = Server::start();
    let client = server.client();
    let first = create_with_token(&client, "original", "profile", "reused-token")
        .await
        .expect("the first request succeeds");
    let other_profile =
        create_with_token(&client, "original", "other-profile", "reused-token").await;
    assert_eq!(
        error_code(&other_profile),
        "IdempotentParameterMismatchException"
    );
    assert!(
        error_message(&other_profile).contains("reused-token"),
        "the message names the token: {}",
        error_message(&other_profile)
    );
    let other_name = create_with_token(&client, "another", "profile", "reused-token").await;
    assert_eq!(
        error_code(&other_name),
        "IdempotentParameterMismatchException"
    );
    // The refused requests changed nothing, and the identical retry still gets the first answer.
    let retry = create_with_token(&client, "original", "profile", "reused-token")
        .await
        .expect("an identical retry succeeds");
    assert_eq!(
        retry.infrastructure_configuration_arn(),
        first.infrastructure_configuration_arn()
    );
    assert_eq!(
        list_all_infra(&client).await,
        vec![first
            .infrastructure_configuration_arn
            .expect("create returns the ARN")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_survive_a_restart() {
    let mut server = Server::start();
    let first = create_with_token(&server.client(), "durable", "profile", "durable-token")
        .await
        .expect("the first request succeeds");
    server.restart();
    let client = server.client();
    let retry = create_with_token(&client, "durable", "profile", "durable-token")
        .await
        .expect("the retry after a restart succeeds instead of finding the name taken");
    assert_eq!(
        retry.infrastructure_configuration_arn(),
        first.infrastructure_configuration_arn()
    );
    assert_eq!(retry.client_token(), Some("durable-token"));
    assert_eq!(list_all_infra(&client).await.len(), 1, "no duplicate");
    let mismatch = create_with_token(&client, "durable", "changed", "durable-token").await;
    assert_eq!(
        error_code(&mismatch),
        "IdempotentParameterMismatchException"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn different_tokens_for_one_name_collide() {
    let server = Server::start();
    let client = server.client();
    let first = create_with_token(&client, "contested", "profile", "token-one")
        .await
        .expect("the first request succeeds");
    let second = create_with_token(&client, "contested", "profile", "token-two").await;
    assert_eq!(error_code(&second), "ResourceAlreadyExistsException");
    // A failed request records no token: the same token, once the name is free, works.
    client
        .delete_infrastructure_configuration()
        .infrastructure_configuration_arn(
            first
                .infrastructure_configuration_arn()
                .expect("create returns the ARN"),
        )
        .send()
        .await
        .expect("delete succeeds");
    let third = create_with_token(&client, "contested", "profile", "token-two")
        .await
        .expect("token-two was not spent by its failure");
    assert_eq!(
        third.infrastructure_configuration_arn(),
        first.infrastructure_configuration_arn()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_token_in_another_operation_is_independent() {
    let server = Server::start();
    let client = server.client();
    let created = create_with_token(&client, "shared-token", "profile", "one-token")
        .await
        .expect("create succeeds");
    let arn = created
        .infrastructure_configuration_arn()
        .expect("create returns the ARN");
    let updated = client
        .update_infrastructure_configuration()
        .infrastructure_configuration_arn(arn)
        .instance_profile_name("updated-profile")
        .client_token("one-token")
        .send()
        .await
        .expect("an update may use a token that a create used");
    // An update answers its ARN, not the token (update-infrastructure-configuration.rst).
    assert_eq!(updated.infrastructure_configuration_arn(), Some(arn));
    let infra = client
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(arn)
        .send()
        .await
        .expect("get succeeds")
        .infrastructure_configuration
        .expect("the configuration is returned");
    assert_eq!(infra.instance_profile_name(), Some("updated-profile"));
}
