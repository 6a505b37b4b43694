//! Infrastructure configurations: where and on what a build runs.

use super::{Millis, Resource};
use crate::arn::Arn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfrastructureConfiguration {
    pub arn: Arn,
    /// The name as the caller wrote it (the ARN holds the normalised form).
    pub name: String,
    pub description: Option<String>,
    pub instance_types: Vec<String>,
    pub instance_profile_name: String,
    pub security_group_ids: Vec<String>,
    pub subnet_id: Option<String>,
    pub logging: Option<S3Logs>,
    pub key_pair: Option<String>,
    pub terminate_instance_on_failure: bool,
    pub terminate_instance_on_completion: Option<bool>,
    pub sns_topic_arn: Option<String>,
    pub resource_tags: BTreeMap<String, String>,
    pub instance_metadata_options: Option<InstanceMetadataOptions>,
    pub placement: Option<Placement>,
    pub parent_instance: Option<AutoScalingGroup>,
    pub date_created: Millis,
    pub date_updated: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Logs {
    pub s3_bucket_name: Option<String>,
    pub s3_key_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceMetadataOptions {
    pub http_tokens: Option<String>,
    pub http_put_response_hop_limit: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub availability_zone: Option<String>,
    pub tenancy: Option<String>,
    pub host_id: Option<String>,
    pub host_resource_group_arn: Option<String>,
}

/// Takes the build instance from an Auto Scaling group instead of launching one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingGroup {
    pub name: String,
    pub capacity_wait_timeout_seconds: Option<i32>,
}

impl Resource for InfrastructureConfiguration {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}
