//! Infrastructure configurations through the official Rust SDK: the whole lifecycle, every
//! member round-tripping through Create, Get, List and Update, the documented defaults, and the
//! error codes the SDK surfaces for the usual mistakes.

mod common;

use aws_sdk_imagebuilder::types::{
    AutoScalingGroupConfiguration, InstanceMetadataOptions, Logging, ParentInstanceConfiguration,
    Placement, S3Logs, TenancyType,
};
use common::{create_infra, error_code, error_message, Server, DEFAULT_ACCOUNT, REGION};
use std::collections::HashMap;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_member_round_trips_through_create_get_list_update_delete() {
    let server = Server::start();
    let client = server.client();

    let parent = ParentInstanceConfiguration::builder()
        .auto_scaling_group(
            AutoScalingGroupConfiguration::builder()
                .name("builders-asg")
                .capacity_wait_timeout_seconds(600)
                .build()
                .expect("the group has its required name"),
        )
        .build();
    let created = client
        .create_infrastructure_configuration()
        .name("Full Infra")
        .description("every member set")
        .instance_types("m5.large")
        .instance_types("c5.xlarge")
        .instance_profile_name("ImageBuilderProfile")
        .security_group_ids("sg-0123456789abcdef0")
        .subnet_id("subnet-0123456789abcdef0")
        .logging(
            Logging::builder()
                .s3_logs(
                    S3Logs::builder()
                        .s3_bucket_name("build-logs")
                        .s3_key_prefix("kiln/")
                        .build(),
                )
                .build(),
        )
        .key_pair("builder-key")
        .terminate_instance_on_failure(false)
        .terminate_instance_on_completion(true)
        .sns_topic_arn("arn:aws:sns:us-east-1:123456789012:build-events")
        .resource_tags("CostCenter", "builds")
        .instance_metadata_options(
            InstanceMetadataOptions::builder()
                .http_tokens("required")
                .http_put_response_hop_limit(2)
                .build(),
        )
        .tags("team", "kiln")
        .tags("env", "test")
        .placement(
            Placement::builder()
                .availability_zone("us-east-1a")
                .tenancy(TenancyType::Dedicated)
                .build(),
        )
        .parent_instance(parent.clone())
        .client_token("round-trip-token")
        .send()
        .await
        .expect("create succeeds");
    let arn = created
        .infrastructure_configuration_arn()
        .expect("create returns the ARN")
        .to_string();
    assert_eq!(
        arn,
        format!("arn:aws:imagebuilder:{REGION}:{DEFAULT_ACCOUNT}:infrastructure-configuration/full-infra")
    );
    assert_eq!(created.client_token(), Some("round-trip-token"));
    assert!(
        created.request_id().is_some_and(|id| !id.is_empty()),
        "create carries a requestId"
    );

    let got = client
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await
        .expect("get succeeds");
    assert!(got.request_id().is_some_and(|id| !id.is_empty()));
    let infra = got
        .infrastructure_configuration()
        .expect("get returns the configuration");
    assert_eq!(infra.arn(), Some(arn.as_str()));
    assert_eq!(infra.name(), Some("Full Infra"));
    assert_eq!(infra.description(), Some("every member set"));
    assert_eq!(infra.instance_types(), ["m5.large", "c5.xlarge"]);
    assert_eq!(infra.instance_profile_name(), Some("ImageBuilderProfile"));
    assert_eq!(infra.security_group_ids(), ["sg-0123456789abcdef0"]);
    assert_eq!(infra.subnet_id(), Some("subnet-0123456789abcdef0"));
    let s3 = infra
        .logging()
        .and_then(|l| l.s3_logs())
        .expect("logging round-trips");
    assert_eq!(s3.s3_bucket_name(), Some("build-logs"));
    assert_eq!(s3.s3_key_prefix(), Some("kiln/"));
    assert_eq!(infra.key_pair(), Some("builder-key"));
    assert_eq!(infra.terminate_instance_on_failure(), Some(false));
    assert_eq!(infra.terminate_instance_on_completion(), Some(true));
    assert_eq!(
        infra.sns_topic_arn(),
        Some("arn:aws:sns:us-east-1:123456789012:build-events")
    );
    assert_eq!(
        infra.resource_tags(),
        Some(&map(&[("CostCenter", "builds")]))
    );
    let metadata = infra
        .instance_metadata_options()
        .expect("metadata options round-trip");
    assert_eq!(metadata.http_tokens(), Some("required"));
    assert_eq!(metadata.http_put_response_hop_limit(), Some(2));
    assert_eq!(
        infra.tags(),
        Some(&map(&[("team", "kiln"), ("env", "test")]))
    );
    let placement = infra.placement().expect("placement round-trips");
    assert_eq!(placement.availability_zone(), Some("us-east-1a"));
    assert_eq!(placement.tenancy(), Some(&TenancyType::Dedicated));
    assert_eq!(infra.parent_instance(), Some(&parent));
    let created_at = infra
        .date_created()
        .expect("dateCreated is set")
        .to_string();
    assert!(
        created_at.starts_with("20") && created_at.ends_with('Z'),
        "dateCreated {created_at} is an ISO-8601 UTC time"
    );
    assert_eq!(infra.date_updated(), None, "never updated yet");

    let listed = client
        .list_infrastructure_configurations()
        .send()
        .await
        .expect("list succeeds");
    let summaries = listed.infrastructure_configuration_summary_list();
    assert_eq!(summaries.len(), 1);
    let summary = &summaries[0];
    assert_eq!(summary.arn(), Some(arn.as_str()));
    assert_eq!(summary.name(), Some("Full Infra"));
    assert_eq!(summary.description(), Some("every member set"));
    assert_eq!(summary.instance_types(), ["m5.large", "c5.xlarge"]);
    assert_eq!(summary.instance_profile_name(), Some("ImageBuilderProfile"));
    assert_eq!(
        summary.tags(),
        Some(&map(&[("team", "kiln"), ("env", "test")]))
    );
    assert_eq!(summary.date_created(), Some(created_at.as_str()));
    assert!(listed.next_token().is_none());

    // Update replaces the definition: members left out go back to unset or their default.
    let updated = client
        .update_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .description("updated")
        .instance_profile_name("OtherProfile")
        .instance_types("t3.micro")
        .send()
        .await
        .expect("update succeeds");
    assert_eq!(
        updated.infrastructure_configuration_arn(),
        Some(arn.as_str())
    );
    let infra = client
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await
        .expect("get after update succeeds")
        .infrastructure_configuration
        .expect("the configuration is still there");
    assert_eq!(infra.name(), Some("Full Infra"), "the name never changes");
    assert_eq!(infra.description(), Some("updated"));
    assert_eq!(infra.instance_profile_name(), Some("OtherProfile"));
    assert_eq!(infra.instance_types(), ["t3.micro"]);
    assert_eq!(infra.key_pair(), None);
    assert!(infra.logging().is_none());
    assert_eq!(infra.terminate_instance_on_failure(), Some(true));
    assert_eq!(infra.date_created(), Some(created_at.as_str()));
    assert!(
        infra.date_updated().is_some(),
        "dateUpdated is set by update"
    );
    assert_eq!(
        infra.tags(),
        Some(&map(&[("team", "kiln"), ("env", "test")])),
        "tags are not part of the definition that update replaces"
    );

    let deleted = client
        .delete_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await
        .expect("delete succeeds");
    assert_eq!(
        deleted.infrastructure_configuration_arn(),
        Some(arn.as_str())
    );

    let after = client
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await;
    assert_eq!(error_code(&after), "ResourceNotFoundException");
    assert!(
        error_message(&after).contains(&arn),
        "the message names the ARN: {}",
        error_message(&after)
    );
    let listed = client
        .list_infrastructure_configurations()
        .send()
        .await
        .expect("list after delete succeeds");
    assert!(listed
        .infrastructure_configuration_summary_list()
        .is_empty());

    let again = client
        .delete_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await;
    assert_eq!(error_code(&again), "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread")]
async fn defaults_apply_when_members_are_left_out() {
    let server = Server::start();
    let client = server.client();
    let arn = create_infra(&client, "minimal").await;
    let infra = client
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await
        .expect("get succeeds")
        .infrastructure_configuration
        .expect("the configuration is returned");
    assert_eq!(
        infra.terminate_instance_on_failure(),
        Some(true),
        "terminateInstanceOnFailure defaults to true"
    );
    assert_eq!(infra.instance_profile_name(), Some("kiln-test-profile"));
    assert_eq!(infra.description(), None);
    assert!(infra.instance_types().is_empty());
    assert!(infra.security_group_ids().is_empty());
    assert!(infra.logging().is_none());
    assert!(infra.placement().is_none());
    assert!(infra.parent_instance().is_none());
    assert_eq!(
        infra.tags(),
        Some(&std::collections::HashMap::new()),
        "no tags: an empty map, as AWS answers"
    );
    assert_eq!(infra.resource_tags(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_normalise_alike_are_the_same_name() {
    let server = Server::start();
    let client = server.client();
    let arn = create_infra(&client, "My Infra").await;
    assert!(
        arn.ends_with("infrastructure-configuration/my-infra"),
        "{arn}"
    );

    for clash in ["my_infra", "MY INFRA", "my-infra"] {
        let result = client
            .create_infrastructure_configuration()
            .name(clash)
            .instance_profile_name("profile")
            .send()
            .await;
        assert_eq!(
            error_code(&result),
            "ResourceAlreadyExistsException",
            "creating {clash:?} after 'My Infra'"
        );
        assert!(
            error_message(&result).contains(&arn),
            "the message names the existing ARN: {}",
            error_message(&result)
        );
    }
    let listed = common::list_all_infra(&client).await;
    assert_eq!(listed, vec![arn], "the refused creates left nothing behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_arns_are_invalid_requests() {
    let server = Server::start();
    let client = server.client();
    for bad in [
        "not-an-arn",
        "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/x/1.0.0",
    ] {
        let result = client
            .get_infrastructure_configuration()
            .infrastructure_configuration_arn(bad)
            .send()
            .await;
        assert_eq!(
            error_code(&result),
            "InvalidRequestException",
            "ARN {bad:?}"
        );
        assert!(
            error_message(&result).contains("infrastructureConfigurationArn"),
            "the message names the member: {}",
            error_message(&result)
        );
    }
    let delete = client
        .delete_infrastructure_configuration()
        .infrastructure_configuration_arn("arn:nonsense")
        .send()
        .await;
    assert_eq!(error_code(&delete), "InvalidRequestException");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_well_formed_arn_of_nothing_is_not_found() {
    let server = Server::start();
    let client = server.client();
    let missing = format!(
        "arn:aws:imagebuilder:{REGION}:{DEFAULT_ACCOUNT}:infrastructure-configuration/never-created"
    );
    let get = client
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(&missing)
        .send()
        .await;
    assert_eq!(error_code(&get), "ResourceNotFoundException");
    let update = client
        .update_infrastructure_configuration()
        .infrastructure_configuration_arn(&missing)
        .instance_profile_name("p")
        .send()
        .await;
    assert_eq!(error_code(&update), "ResourceNotFoundException");
}
