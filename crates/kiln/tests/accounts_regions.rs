//! Isolation between accounts and regions. The server takes the account from the key that signed
//! the request (its aws_account_id in the credentials file) and the region from the SigV4
//! credential scope, so one server holds many accounts and regions side by side, each seeing
//! only its own resources.

mod common;

use common::{create_infra, error_code, list_all_infra, Server, DEFAULT_ACCOUNT, DEFAULT_KEY};

const OTHER_KEY: &str = "AKIDOTHERACCOUNT0";
const OTHER_ACCOUNT: &str = "444455556666";

fn accounts_flag() -> String {
    format!("{OTHER_KEY}={OTHER_ACCOUNT}")
}

#[tokio::test(flavor = "multi_thread")]
async fn arns_carry_the_region_and_account_of_the_credentials() {
    let server = Server::start_with_accounts(&accounts_flag());
    let cases = [
        (DEFAULT_KEY, "us-east-1", DEFAULT_ACCOUNT),
        (DEFAULT_KEY, "eu-west-1", DEFAULT_ACCOUNT),
        (OTHER_KEY, "us-east-1", OTHER_ACCOUNT),
        (OTHER_KEY, "ap-southeast-2", OTHER_ACCOUNT),
    ];
    for (key, region, account) in cases {
        let client = server.client_as(key, region);
        // The same name in every scope: the scopes do not share a namespace.
        let arn = create_infra(&client, "shared-name").await;
        assert_eq!(
            arn,
            format!(
                "arn:aws:imagebuilder:{region}:{account}:infrastructure-configuration/shared-name"
            ),
            "key {key} in {region}"
        );
        assert_eq!(
            list_all_infra(&client).await,
            vec![arn],
            "key {key} in {region}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_is_invisible_from_other_regions_and_accounts() {
    let server = Server::start_with_accounts(&accounts_flag());
    let home = server.client();
    let arn = create_infra(&home, "home-only").await;
    home.tag_resource()
        .resource_arn(&arn)
        .tags("k", "v")
        .send()
        .await
        .expect("tagging in the home scope works");

    let strangers = [
        ("another region", server.client_as(DEFAULT_KEY, "eu-west-1")),
        ("another account", server.client_as(OTHER_KEY, "us-east-1")),
    ];
    for (who, client) in strangers {
        let get = client
            .get_infrastructure_configuration()
            .infrastructure_configuration_arn(&arn)
            .send()
            .await;
        assert_eq!(
            error_code(&get),
            "ResourceNotFoundException",
            "get from {who}"
        );
        assert!(
            list_all_infra(&client).await.is_empty(),
            "list from {who} is empty"
        );
        let update = client
            .update_infrastructure_configuration()
            .infrastructure_configuration_arn(&arn)
            .instance_profile_name("hijacked")
            .send()
            .await;
        assert_eq!(
            error_code(&update),
            "ResourceNotFoundException",
            "update from {who}"
        );
        let delete = client
            .delete_infrastructure_configuration()
            .infrastructure_configuration_arn(&arn)
            .send()
            .await;
        assert_eq!(
            error_code(&delete),
            "ResourceNotFoundException",
            "delete from {who}"
        );
        let tags = client
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await;
        assert_eq!(
            error_code(&tags),
            "ResourceNotFoundException",
            "tags from {who}"
        );
    }

    // Nothing the strangers tried changed the resource.
    let infra = home
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await
        .expect("the owner still sees it")
        .infrastructure_configuration
        .expect("the configuration is returned");
    assert_eq!(infra.instance_profile_name(), Some("kiln-test-profile"));
    assert!(infra.date_updated().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_are_not_in_the_credentials_file_are_refused() {
    let server = Server::start_with_accounts(&accounts_flag());
    create_infra(&server.client(), "default-account").await;
    let someone_else = server.client_as("AKIDNOTINTHEFILE0", "us-east-1");
    let result = someone_else
        .list_infrastructure_configurations()
        .send()
        .await;
    assert_eq!(error_code(&result), "UnrecognizedClientException");
}
