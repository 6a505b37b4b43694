//! Image Builder ARNs: `arn:aws:imagebuilder:<region>:<account>:<kind>/<name>[/<version>[/<build>]]`.
//!
//! The wire layer has already checked each ARN against the model's pattern for its member; this
//! module splits a valid ARN into parts and builds ARNs for new resources.

use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The resource types that have ARNs, with the path segment each uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceKind {
    Component,
    ImageRecipe,
    ContainerRecipe,
    InfrastructureConfiguration,
    DistributionConfiguration,
    ImagePipeline,
    Image,
    LifecyclePolicy,
    BuildWorkflow,
    TestWorkflow,
    DistributionWorkflow,
    /// An EC2 AMI that distribution made (a storage key only: see `resources::ami`).
    Ami,
    /// One workflow execution of an image build (a storage key only: see
    /// `kiln_core::workflow_runs`).
    WorkflowExecution,
    /// What the vulnerability scan of an image read and when it was last evaluated (a storage
    /// key only: see `resources::scan::ImageScan`).
    ImageScan,
    /// One run of a lifecycle policy or of a StartResourceStateUpdate (a storage key only: see
    /// `resources::lifecycle::LifecycleExecution`).
    LifecycleExecution,
    /// The resource policy (PutComponentPolicy and the others) attached to one resource (a
    /// storage key only: see `resources::sharing`).
    ResourcePolicy,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 16] = [
        ResourceKind::Component,
        ResourceKind::ImageRecipe,
        ResourceKind::ContainerRecipe,
        ResourceKind::InfrastructureConfiguration,
        ResourceKind::DistributionConfiguration,
        ResourceKind::ImagePipeline,
        ResourceKind::Image,
        ResourceKind::LifecyclePolicy,
        ResourceKind::BuildWorkflow,
        ResourceKind::TestWorkflow,
        ResourceKind::DistributionWorkflow,
        ResourceKind::Ami,
        ResourceKind::WorkflowExecution,
        ResourceKind::ImageScan,
        ResourceKind::LifecycleExecution,
        ResourceKind::ResourcePolicy,
    ];

    /// The ARN path segment(s) before the name.
    pub fn segment(self) -> &'static str {
        match self {
            ResourceKind::Component => "component",
            ResourceKind::ImageRecipe => "image-recipe",
            ResourceKind::ContainerRecipe => "container-recipe",
            ResourceKind::InfrastructureConfiguration => "infrastructure-configuration",
            ResourceKind::DistributionConfiguration => "distribution-configuration",
            ResourceKind::ImagePipeline => "image-pipeline",
            ResourceKind::Image => "image",
            ResourceKind::LifecyclePolicy => "lifecycle-policy",
            ResourceKind::BuildWorkflow => "workflow/build",
            ResourceKind::TestWorkflow => "workflow/test",
            ResourceKind::DistributionWorkflow => "workflow/distribution",
            ResourceKind::Ami => "ami",
            ResourceKind::WorkflowExecution => "workflow-execution",
            ResourceKind::ImageScan => "image-scan",
            ResourceKind::LifecycleExecution => "lifecycle-execution",
            ResourceKind::ResourcePolicy => "resource-policy",
        }
    }

    /// A human name for messages ("image recipe").
    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::Component => "component",
            ResourceKind::ImageRecipe => "image recipe",
            ResourceKind::ContainerRecipe => "container recipe",
            ResourceKind::InfrastructureConfiguration => "infrastructure configuration",
            ResourceKind::DistributionConfiguration => "distribution configuration",
            ResourceKind::ImagePipeline => "image pipeline",
            ResourceKind::Image => "image",
            ResourceKind::LifecyclePolicy => "lifecycle policy",
            ResourceKind::BuildWorkflow
            | ResourceKind::TestWorkflow
            | ResourceKind::DistributionWorkflow => "workflow",
            ResourceKind::Ami => "AMI",
            ResourceKind::WorkflowExecution => "workflow execution",
            ResourceKind::ImageScan => "image scan",
            ResourceKind::LifecycleExecution => "lifecycle execution",
            ResourceKind::ResourcePolicy => "resource policy",
        }
    }

    pub fn from_segment(s: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|k| k.segment() == s)
    }

    /// Whether ARNs of this kind carry a semantic version.
    pub fn is_versioned(self) -> bool {
        !matches!(
            self,
            ResourceKind::InfrastructureConfiguration
                | ResourceKind::DistributionConfiguration
                | ResourceKind::ImagePipeline
                | ResourceKind::LifecyclePolicy
                | ResourceKind::Ami
                | ResourceKind::WorkflowExecution
                | ResourceKind::ImageScan
                | ResourceKind::LifecycleExecution
                | ResourceKind::ResourcePolicy
        )
    }

    /// Whether versions of this kind have server-assigned build numbers (`/1.0.0/1`).
    pub fn has_builds(self) -> bool {
        matches!(
            self,
            ResourceKind::Component
                | ResourceKind::Image
                | ResourceKind::BuildWorkflow
                | ResourceKind::TestWorkflow
                | ResourceKind::DistributionWorkflow
        )
    }
}

/// A parsed ARN. `version` is kept as written (it may be an `x` filter); `build` is the build number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Arn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub kind: ResourceKind,
    pub name: String,
    pub version: Option<String>,
    pub build: Option<u32>,
}

impl Arn {
    pub fn new(region: &str, account: &str, kind: ResourceKind, name: &str) -> Arn {
        Arn {
            partition: "aws".to_string(),
            region: region.to_string(),
            account: account.to_string(),
            kind,
            name: name.to_string(),
            version: None,
            build: None,
        }
    }

    pub fn with_version(mut self, version: impl fmt::Display) -> Arn {
        self.version = Some(version.to_string());
        self
    }

    pub fn with_build(mut self, build: u32) -> Arn {
        self.build = Some(build);
        self
    }

    /// The same ARN without its build number.
    pub fn without_build(&self) -> Arn {
        Arn {
            build: None,
            ..self.clone()
        }
    }

    pub fn parse(s: &str) -> Result<Arn, DomainError> {
        let bad = |why: &str| {
            DomainError::invalid("arn", format!("'{s}' is not an Image Builder ARN: {why}"))
        };
        let mut parts = s.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some("imagebuilder"),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(bad(
                "expected arn:<partition>:imagebuilder:<region>:<account>:<resource>",
            ));
        };
        let segments: Vec<&str> = resource.split('/').collect();
        let (kind, rest) = match segments.first() {
            Some(&"workflow") if segments.len() >= 2 => (
                ResourceKind::from_segment(&format!("workflow/{}", segments[1])),
                &segments[2..],
            ),
            Some(first) => (ResourceKind::from_segment(first), &segments[1..]),
            None => (None, &segments[..]),
        };
        let kind = kind.ok_or_else(|| bad("unknown resource type"))?;
        let name = rest
            .first()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no resource name"))?;
        let version = rest.get(1).map(|v| v.to_string());
        let build = match rest.get(2) {
            Some(b) => Some(
                b.parse::<u32>()
                    .map_err(|_| bad("build number is not a number"))?,
            ),
            None => None,
        };
        if rest.len() > 3 {
            return Err(bad("too many path segments"));
        }
        Ok(Arn {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            kind,
            name: name.to_string(),
            version,
            build,
        })
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:imagebuilder:{}:{}:{}/{}",
            self.partition,
            self.region,
            self.account,
            self.kind.segment(),
            self.name
        )?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        if let Some(b) = self.build {
            write!(f, "/{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/my-pipeline",
            "arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.0.0/1",
            "arn:aws:imagebuilder:us-east-1:aws:image-recipe/r/x.x.x",
            "arn:aws:imagebuilder:eu-west-1:123456789012:workflow/test/my-wf/1.0.0/2",
        ] {
            assert_eq!(Arn::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn parts() {
        let a = Arn::parse("arn:aws:imagebuilder:eu-west-1:123456789012:workflow/build/w/1.2.3/4")
            .unwrap();
        assert_eq!(a.kind, ResourceKind::BuildWorkflow);
        assert_eq!(
            (a.name.as_str(), a.version.as_deref(), a.build),
            ("w", Some("1.2.3"), Some(4))
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "arn:aws:s3:::b",
            "arn:aws:imagebuilder:r:a:nope/x",
            "arn:aws:imagebuilder:r:a:component/",
            "arn:aws:imagebuilder:r:a:component/c/1.0.0/z",
        ] {
            assert!(Arn::parse(s).is_err(), "{s}");
        }
    }
}
