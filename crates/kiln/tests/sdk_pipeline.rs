//! An image pipeline assembled through the SDK from the resources it references (a component,
//! an image recipe, an infrastructure configuration and a distribution configuration), checked
//! member by member through GetImagePipeline, with the documented defaults for what the
//! request left out, and the reference rules: a pipeline cannot point at something that does
//! not exist, and what a pipeline uses cannot be deleted from under it.

mod common;

use aws_sdk_imagebuilder::types::{
    AmiDistributionConfiguration, ComponentConfiguration, Distribution, ImageTestsConfiguration,
    PipelineExecutionStartCondition, PipelineStatus, Platform, Schedule,
};
use aws_sdk_imagebuilder::Client;
use common::{create_infra, error_code, error_message, Server, DEFAULT_ACCOUNT, REGION};
use std::collections::HashMap;

const COMPONENT_YAML: &str = r#"name: HelloWorld
description: Writes a file and checks that it is there.
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Write
        action: ExecuteBash
        inputs:
          commands:
            - echo "hello world" > /tmp/hello.txt
  - name: validate
    steps:
      - name: Check
        action: ExecuteBash
        inputs:
          commands:
            - test -f /tmp/hello.txt
"#;

/// The ARNs a pipeline needs.
struct Parts {
    recipe: String,
    infrastructure: String,
    distribution: String,
}

async fn create_parts(client: &Client) -> Parts {
    let component = client
        .create_component()
        .name("hello-world")
        .semantic_version("1.0.0")
        .platform(Platform::Linux)
        .data(COMPONENT_YAML)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the component: {e:?}"))
        .component_build_version_arn
        .expect("the component ARN");
    let recipe = client
        .create_image_recipe()
        .name("web-server")
        .semantic_version("1.0.0")
        .components(
            ComponentConfiguration::builder()
                .component_arn(&component)
                .build()
                .expect("a component configuration with its ARN"),
        )
        .parent_image("ami-0123456789abcdef0")
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the image recipe: {e:?}"))
        .image_recipe_arn
        .expect("the recipe ARN");
    let infrastructure = create_infra(client, "pipeline-infra").await;
    let distribution = client
        .create_distribution_configuration()
        .name("pipeline-distribution")
        .distributions(
            Distribution::builder()
                .region(REGION)
                .ami_distribution_configuration(
                    AmiDistributionConfiguration::builder()
                        .name("web-server-{{ imagebuilder:buildDate }}")
                        .build(),
                )
                .build()
                .expect("a distribution with its region"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the distribution configuration: {e:?}"))
        .distribution_configuration_arn
        .expect("the distribution ARN");
    Parts {
        recipe,
        infrastructure,
        distribution,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_pipeline_returns_every_member_and_the_defaults() {
    let server = Server::start();
    let client = server.client();
    let parts = create_parts(&client).await;
    assert_eq!(
        parts.recipe,
        format!("arn:aws:imagebuilder:{REGION}:{DEFAULT_ACCOUNT}:image-recipe/web-server/1.0.0")
    );

    let created = client
        .create_image_pipeline()
        .name("Nightly Web")
        .description("builds the web server every night")
        .image_recipe_arn(&parts.recipe)
        .infrastructure_configuration_arn(&parts.infrastructure)
        .distribution_configuration_arn(&parts.distribution)
        .schedule(
            Schedule::builder()
                .schedule_expression("cron(0 3 * * ? *)")
                .timezone("America/New_York")
                .pipeline_execution_start_condition(
                    PipelineExecutionStartCondition::ExpressionMatchOnly,
                )
                .build(),
        )
        .tags("team", "web")
        .image_tags("built-by", "kiln")
        .client_token("nightly-web-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the pipeline: {e:?}"));
    let arn = created
        .image_pipeline_arn()
        .expect("create returns the ARN")
        .to_string();
    assert_eq!(
        arn,
        format!("arn:aws:imagebuilder:{REGION}:{DEFAULT_ACCOUNT}:image-pipeline/nightly-web")
    );
    assert_eq!(created.client_token(), Some("nightly-web-token"));

    let pipeline = client
        .get_image_pipeline()
        .image_pipeline_arn(&arn)
        .send()
        .await
        .expect("get succeeds")
        .image_pipeline
        .expect("get returns the pipeline");
    assert_eq!(pipeline.arn(), Some(arn.as_str()));
    assert_eq!(pipeline.name(), Some("Nightly Web"));
    assert_eq!(
        pipeline.description(),
        Some("builds the web server every night")
    );
    assert_eq!(
        pipeline.platform(),
        Some(&Platform::Linux),
        "inherited from the recipe"
    );
    assert_eq!(pipeline.image_recipe_arn(), Some(parts.recipe.as_str()));
    assert_eq!(pipeline.container_recipe_arn(), None);
    assert_eq!(
        pipeline.infrastructure_configuration_arn(),
        Some(parts.infrastructure.as_str())
    );
    assert_eq!(
        pipeline.distribution_configuration_arn(),
        Some(parts.distribution.as_str())
    );
    let schedule = pipeline.schedule().expect("the schedule round-trips");
    assert_eq!(schedule.schedule_expression(), Some("cron(0 3 * * ? *)"));
    assert_eq!(schedule.timezone(), Some("America/New_York"));
    assert_eq!(
        schedule.pipeline_execution_start_condition(),
        Some(&PipelineExecutionStartCondition::ExpressionMatchOnly)
    );
    assert_eq!(
        pipeline.tags(),
        Some(&HashMap::from([("team".to_string(), "web".to_string())]))
    );
    assert_eq!(
        pipeline.image_tags(),
        Some(&HashMap::from([(
            "built-by".to_string(),
            "kiln".to_string()
        )]))
    );
    assert!(pipeline.date_created().is_some());
    assert!(pipeline.date_last_run().is_none(), "never ran");
    let next_run = pipeline
        .date_next_run()
        .expect("an enabled scheduled pipeline has a next run");
    assert!(next_run.ends_with('Z'), "dateNextRun {next_run} is in UTC");
    // 03:00 in New York is 07:00 or 08:00 UTC, depending on daylight saving time.
    assert!(
        next_run.contains("T07:00:00") || next_run.contains("T08:00:00"),
        "dateNextRun {next_run} is 03:00 America/New_York"
    );

    // The documented defaults of what the request left out.
    assert_eq!(pipeline.status(), Some(&PipelineStatus::Enabled));
    assert_eq!(pipeline.enhanced_image_metadata_enabled(), Some(true));
    let tests = pipeline
        .image_tests_configuration()
        .expect("image tests are reported even when not requested");
    assert_eq!(tests.image_tests_enabled(), Some(true));
    assert_eq!(tests.timeout_minutes(), Some(720));
    // Unlike the tests, scanning settings that were not given are not reported
    // (get-image-pipeline.rst, list-image-pipelines.rst).
    assert!(pipeline.image_scanning_configuration().is_none());
    assert!(pipeline.workflows().is_empty());
    assert_eq!(pipeline.execution_role(), None);

    let listed = client
        .list_image_pipelines()
        .send()
        .await
        .expect("list succeeds");
    let arns: Vec<&str> = listed
        .image_pipeline_list()
        .iter()
        .filter_map(|p| p.arn())
        .collect();
    assert_eq!(arns, [arn.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_defaults_and_disabled_pipelines() {
    let server = Server::start();
    let client = server.client();
    let parts = create_parts(&client).await;
    let arn = client
        .create_image_pipeline()
        .name("weekly")
        .image_recipe_arn(&parts.recipe)
        .infrastructure_configuration_arn(&parts.infrastructure)
        .schedule(
            Schedule::builder()
                .schedule_expression("rate(7 days)")
                .build(),
        )
        .image_tests_configuration(
            ImageTestsConfiguration::builder()
                .image_tests_enabled(false)
                .build(),
        )
        .status(PipelineStatus::Disabled)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the pipeline: {e:?}"))
        .image_pipeline_arn
        .expect("create returns the ARN");
    let pipeline = client
        .get_image_pipeline()
        .image_pipeline_arn(&arn)
        .send()
        .await
        .expect("get succeeds")
        .image_pipeline
        .expect("get returns the pipeline");
    let schedule = pipeline.schedule().expect("the schedule round-trips");
    assert!(
        matches!(schedule.timezone(), Some("UTC" | "Etc/UTC")),
        "the timezone defaults to UTC: {:?}",
        schedule.timezone()
    );
    assert_eq!(
        schedule.pipeline_execution_start_condition(),
        Some(&PipelineExecutionStartCondition::ExpressionMatchAndDependencyUpdatesAvailable)
    );
    assert_eq!(pipeline.status(), Some(&PipelineStatus::Disabled));
    assert_eq!(
        pipeline.date_next_run(),
        None,
        "a disabled pipeline does not run"
    );
    assert_eq!(pipeline.distribution_configuration_arn(), None);
    let tests = pipeline
        .image_tests_configuration()
        .expect("image tests are reported");
    assert_eq!(tests.image_tests_enabled(), Some(false));
    assert_eq!(
        tests.timeout_minutes(),
        Some(720),
        "timeoutMinutes defaults to 720"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn references_must_exist_and_cannot_be_deleted_while_used() {
    let server = Server::start();
    let client = server.client();
    let parts = create_parts(&client).await;

    let missing_infra = format!(
        "arn:aws:imagebuilder:{REGION}:{DEFAULT_ACCOUNT}:infrastructure-configuration/nowhere"
    );
    let dangling = client
        .create_image_pipeline()
        .name("dangling")
        .image_recipe_arn(&parts.recipe)
        .infrastructure_configuration_arn(&missing_infra)
        .send()
        .await;
    assert!(dangling.is_err(), "a pipeline on a missing configuration");
    assert!(
        error_message(&dangling).contains("infrastructureConfigurationArn"),
        "the message names the member: {} ({})",
        error_message(&dangling),
        error_code(&dangling)
    );

    let no_recipe = client
        .create_image_pipeline()
        .name("no-recipe")
        .infrastructure_configuration_arn(&parts.infrastructure)
        .send()
        .await;
    assert_eq!(error_code(&no_recipe), "InvalidRequestException");

    let arn = client
        .create_image_pipeline()
        .name("user")
        .image_recipe_arn(&parts.recipe)
        .infrastructure_configuration_arn(&parts.infrastructure)
        .distribution_configuration_arn(&parts.distribution)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the pipeline: {e:?}"))
        .image_pipeline_arn
        .expect("create returns the ARN");

    let infra = client
        .delete_infrastructure_configuration()
        .infrastructure_configuration_arn(&parts.infrastructure)
        .send()
        .await;
    assert_eq!(error_code(&infra), "ResourceDependencyException");
    assert!(
        error_message(&infra).contains(&arn),
        "{}",
        error_message(&infra)
    );
    let distribution = client
        .delete_distribution_configuration()
        .distribution_configuration_arn(&parts.distribution)
        .send()
        .await;
    assert_eq!(error_code(&distribution), "ResourceDependencyException");
    let recipe = client
        .delete_image_recipe()
        .image_recipe_arn(&parts.recipe)
        .send()
        .await;
    assert_eq!(error_code(&recipe), "ResourceDependencyException");

    client
        .delete_image_pipeline()
        .image_pipeline_arn(&arn)
        .send()
        .await
        .expect("deleting the pipeline succeeds");
    client
        .delete_infrastructure_configuration()
        .infrastructure_configuration_arn(&parts.infrastructure)
        .send()
        .await
        .expect("with the pipeline gone, its configuration can be deleted");
    client
        .delete_distribution_configuration()
        .distribution_configuration_arn(&parts.distribution)
        .send()
        .await
        .expect("and so can its distribution configuration");
    client
        .delete_image_recipe()
        .image_recipe_arn(&parts.recipe)
        .send()
        .await
        .expect("and its recipe");
}
