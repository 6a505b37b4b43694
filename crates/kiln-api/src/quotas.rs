//! Per-account quotas: how many resources of each kind an account may hold in a region, and how
//! many of its image builds may be under way at once.
//!
//! A quota is checked inside the call's write transaction, after the operation's own writes:
//! the count then includes what this call created and everything committed or pending before
//! it in the same group commit, and the single writer serialises the calls, so simultaneous
//! creates cannot overshoot. A call that would exceed a quota is rolled back and answered 402
//! `ServiceQuotaExceededException` naming the quota and its limit. Retries of a call that
//! succeeded (same `clientToken`) answer the stored response without being counted again.
//!
//! Scheduled builds are not refused by the concurrent-builds quota (a refusal would count as a
//! failed run towards the pipeline's auto-disable, and a schedule fires at most once per due
//! time), but they count towards it, so API starts are refused while they fill it.

use crate::convert::StoreResultExt;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_store::{Txn, TxnExt};
use kiln_wire::{ApiError, ErrorKind, Operation, RequestContext};

/// What is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Components,
    ImageRecipes,
    ContainerRecipes,
    InfrastructureConfigurations,
    DistributionConfigurations,
    ImagePipelines,
    Workflows,
    LifecyclePolicies,
    ConcurrentBuilds,
}

impl Quota {
    pub const ALL: [Quota; 9] = [
        Quota::Components,
        Quota::ImageRecipes,
        Quota::ContainerRecipes,
        Quota::InfrastructureConfigurations,
        Quota::DistributionConfigurations,
        Quota::ImagePipelines,
        Quota::Workflows,
        Quota::LifecyclePolicies,
        Quota::ConcurrentBuilds,
    ];

    /// The name used in flags and messages.
    pub fn name(self) -> &'static str {
        match self {
            Quota::Components => "components",
            Quota::ImageRecipes => "image-recipes",
            Quota::ContainerRecipes => "container-recipes",
            Quota::InfrastructureConfigurations => "infrastructure-configurations",
            Quota::DistributionConfigurations => "distribution-configurations",
            Quota::ImagePipelines => "image-pipelines",
            Quota::Workflows => "workflows",
            Quota::LifecyclePolicies => "lifecycle-policies",
            Quota::ConcurrentBuilds => "concurrent-builds",
        }
    }

    /// AWS's published default where there is one (image pipelines 75), 1,000 of the other
    /// kinds, and 100 builds under way: generous for a person or a CI system, a bound for a
    /// runaway script.
    pub fn default_limit(self) -> u64 {
        match self {
            Quota::ImagePipelines => 75,
            Quota::LifecyclePolicies => 100,
            Quota::ConcurrentBuilds => 100,
            _ => 1000,
        }
    }

    /// The stored kinds a resource quota counts (component and workflow build versions are
    /// separate resources, and count one each).
    fn kinds(self) -> &'static [ResourceKind] {
        match self {
            Quota::Components => &[ResourceKind::Component],
            Quota::ImageRecipes => &[ResourceKind::ImageRecipe],
            Quota::ContainerRecipes => &[ResourceKind::ContainerRecipe],
            Quota::InfrastructureConfigurations => &[ResourceKind::InfrastructureConfiguration],
            Quota::DistributionConfigurations => &[ResourceKind::DistributionConfiguration],
            Quota::ImagePipelines => &[ResourceKind::ImagePipeline],
            Quota::Workflows => &[
                ResourceKind::BuildWorkflow,
                ResourceKind::TestWorkflow,
                ResourceKind::DistributionWorkflow,
            ],
            Quota::LifecyclePolicies => &[ResourceKind::LifecyclePolicy],
            Quota::ConcurrentBuilds => &[],
        }
    }

    /// What the limit counts, for messages.
    fn unit(self) -> &'static str {
        match self {
            Quota::Components => "component build versions",
            Quota::ImageRecipes => "image recipes",
            Quota::ContainerRecipes => "container recipes",
            Quota::InfrastructureConfigurations => "infrastructure configurations",
            Quota::DistributionConfigurations => "distribution configurations",
            Quota::ImagePipelines => "image pipelines",
            Quota::Workflows => "workflow build versions",
            Quota::LifecyclePolicies => "lifecycle policies",
            Quota::ConcurrentBuilds => "image builds under way",
        }
    }

    /// The quota an operation's success adds to, if any.
    pub fn of(op: Operation) -> Option<Quota> {
        Some(match op {
            Operation::CreateComponent | Operation::ImportComponent => Quota::Components,
            Operation::CreateImageRecipe => Quota::ImageRecipes,
            Operation::CreateContainerRecipe => Quota::ContainerRecipes,
            Operation::CreateInfrastructureConfiguration => Quota::InfrastructureConfigurations,
            Operation::CreateDistributionConfiguration => Quota::DistributionConfigurations,
            Operation::CreateImagePipeline => Quota::ImagePipelines,
            Operation::CreateWorkflow => Quota::Workflows,
            Operation::CreateLifecyclePolicy => Quota::LifecyclePolicies,
            // DistributeImage and the imports are jobs of the worker's, like builds.
            Operation::CreateImage
            | Operation::StartImagePipelineExecution
            | Operation::DistributeImage
            | Operation::ImportDiskImage
            | Operation::ImportVmImage => Quota::ConcurrentBuilds,
            _ => return None,
        })
    }
}

/// The limits of every account; `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    limits: [Option<u64>; Quota::ALL.len()],
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            limits: Quota::ALL.map(|q| Some(q.default_limit())),
        }
    }
}

impl Quotas {
    pub fn unlimited() -> Quotas {
        Quotas {
            limits: [None; Quota::ALL.len()],
        }
    }

    pub fn limit(&self, quota: Quota) -> Option<u64> {
        self.limits[quota as usize]
    }

    pub fn set(&mut self, quota: Quota, limit: Option<u64>) {
        self.limits[quota as usize] = limit;
    }

    /// Applies `NAME=N[,NAME=N...]`, where N is a number or `unlimited`.
    pub fn parse_assignments(&mut self, spec: &str) -> Result<(), String> {
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("quota '{entry}' must be NAME=NUMBER"))?;
            let name = name.trim();
            let quota = Quota::ALL
                .into_iter()
                .find(|q| q.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = Quota::ALL.iter().map(|q| q.name()).collect();
                    format!(
                        "unknown quota '{name}'; the quotas are {}",
                        names.join(", ")
                    )
                })?;
            let value = value.trim();
            let limit = if value == "unlimited" {
                None
            } else {
                Some(value.parse::<u64>().map_err(|_| {
                    format!("quota {name}: '{value}' must be a whole number or 'unlimited'")
                })?)
            };
            self.set(quota, limit);
        }
        Ok(())
    }

    /// After `op` wrote in `tx`: refuses (so that the call rolls back) when the caller's account
    /// now holds more than its quota allows.
    pub fn check(
        &self,
        op: Operation,
        ctx: &RequestContext,
        tx: &mut dyn Txn,
    ) -> Result<(), ApiError> {
        let Some(quota) = Quota::of(op) else {
            return Ok(());
        };
        let Some(limit) = self.limit(quota) else {
            return Ok(());
        };
        let count = match quota {
            Quota::ConcurrentBuilds => builds_under_way(tx, &ctx.account_id, &ctx.region)?,
            _ => {
                let mut n = 0;
                for kind in quota.kinds() {
                    n += tx.count_rows(&ctx.account_id, &ctx.region, *kind).api()?;
                }
                n
            }
        };
        if count <= limit {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorKind::ServiceQuotaExceededException,
            format!(
                "{}: the quota '{}' allows {limit} {} per account and Region, and account {} already has {} in {}; {}",
                op.def().name,
                quota.name(),
                quota.unit(),
                ctx.account_id,
                count - 1,
                ctx.region,
                if quota == Quota::ConcurrentBuilds {
                    "wait for a build to end or cancel one"
                } else {
                    "delete some first"
                },
            ),
        ))
    }
}

/// The account's images in the build queue whose build has not ended (PENDING to
/// INTEGRATING). The queue is short (builds under way, and deletions), so reading it whole is
/// cheap; only this account's entries are decoded.
fn builds_under_way(tx: &mut dyn Txn, account: &str, region: &str) -> Result<u64, ApiError> {
    let mut n = 0;
    for (arn, _) in tx.queued_builds().api()? {
        let mine = Arn::parse(&arn)
            .map(|a| a.account == account && a.region == region)
            .unwrap_or(false);
        if !mine {
            continue;
        }
        let under_way = tx
            .get::<Image>(&arn)
            .api()?
            .is_some_and(|image| ImageStatus::in_progress(image.status));
        n += u64::from(under_way);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_set_limits_by_name() {
        let mut q = Quotas::default();
        assert_eq!(q.limit(Quota::ImagePipelines), Some(75));
        q.parse_assignments("components=2, concurrent-builds=unlimited,image-pipelines=0")
            .unwrap();
        assert_eq!(q.limit(Quota::Components), Some(2));
        assert_eq!(q.limit(Quota::ConcurrentBuilds), None);
        assert_eq!(q.limit(Quota::ImagePipelines), Some(0));
        let err = q.parse_assignments("widgets=3").unwrap_err();
        assert!(
            err.contains("widgets") && err.contains("image-recipes"),
            "{err}"
        );
        assert!(q.parse_assignments("components").is_err());
        assert!(q.parse_assignments("components=-1").is_err());
    }

    #[test]
    fn every_operation_whose_model_has_the_error_has_a_quota() {
        for def in kiln_wire::OPERATIONS.iter() {
            if def.errors.contains(&"ServiceQuotaExceededException") {
                assert!(
                    Quota::of(def.operation).is_some(),
                    "{} has no quota",
                    def.name
                );
            }
        }
        assert_eq!(
            Quota::of(Operation::StartImagePipelineExecution),
            Some(Quota::ConcurrentBuilds)
        );
        assert_eq!(Quota::of(Operation::GetImage), None);
    }

    mod with_a_service {
        use super::*;
        use crate::service::Service;
        use serde_json::{json, Value};
        use std::sync::Arc;

        const NOW: i64 = 1_795_694_400_000;

        fn ctx(account: &str) -> RequestContext {
            RequestContext {
                request_id: "r".into(),
                account_id: account.into(),
                region: "us-east-1".into(),
                now_millis: NOW,
                valid_until: Default::default(),
                ..Default::default()
            }
        }

        fn call(svc: &Service, op: Operation, input: Value) -> Result<Value, ApiError> {
            svc.call(op, &ctx("123456789012"), input)
                .map(|out| serde_json::from_str(&out).expect("JSON"))
        }

        fn service(quotas: &str) -> (tempfile::TempDir, Service) {
            let dir = tempfile::tempdir().unwrap();
            let mut q = Quotas::default();
            q.parse_assignments(quotas).unwrap();
            let svc = Service::open(dir.path(), kiln_store::sqlite::Sync::Normal)
                .unwrap()
                .with_quotas(q);
            (dir, svc)
        }

        #[test]
        fn builds_under_way_are_limited_and_an_ended_one_frees_room() {
            // No worker runs here: a created image stays PENDING until it is cancelled.
            let (_dir, svc) = service("concurrent-builds=1");
            let infra = call(
                &svc,
                Operation::CreateInfrastructureConfiguration,
                json!({"name": "infra", "instanceProfileName": "p", "clientToken": "t1"}),
            )
            .unwrap()["infrastructureConfigurationArn"]
                .clone();
            let recipe = call(
                &svc,
                Operation::CreateImageRecipe,
                json!({"name": "rcp", "semanticVersion": "1.0.0",
                       "parentImage": "ami-0123456789abcdef0", "clientToken": "t2"}),
            )
            .unwrap()["imageRecipeArn"]
                .clone();
            let image = |token: &str| {
                call(
                    &svc,
                    Operation::CreateImage,
                    json!({"imageRecipeArn": recipe, "infrastructureConfigurationArn": infra,
                           "clientToken": token}),
                )
            };
            let first = image("i1").unwrap()["imageBuildVersionArn"].clone();
            let refused = image("i2").unwrap_err();
            assert_eq!(refused.kind, ErrorKind::ServiceQuotaExceededException);
            assert!(
                refused.message.contains("concurrent-builds")
                    && refused.message.contains("allows 1"),
                "{}",
                refused.message
            );
            let pipeline = call(
                &svc,
                Operation::CreateImagePipeline,
                json!({"name": "pip", "imageRecipeArn": recipe,
                       "infrastructureConfigurationArn": infra, "clientToken": "p1"}),
            )
            .unwrap()["imagePipelineArn"]
                .clone();
            let start = |token: &str| {
                call(
                    &svc,
                    Operation::StartImagePipelineExecution,
                    json!({"imagePipelineArn": pipeline, "clientToken": token}),
                )
            };
            assert_eq!(
                start("s1").unwrap_err().kind,
                ErrorKind::ServiceQuotaExceededException
            );
            // Another account builds beside it.
            svc.call(
                Operation::CreateInfrastructureConfiguration,
                &ctx("111122223333"),
                json!({"name": "infra", "instanceProfileName": "p", "clientToken": "o1"}),
            )
            .unwrap();

            call(
                &svc,
                Operation::CancelImageCreation,
                json!({"imageBuildVersionArn": first, "clientToken": "c1"}),
            )
            .unwrap();
            start("s2").unwrap();
        }

        #[test]
        fn simultaneous_creates_cannot_overshoot() {
            let (_dir, svc) = service("infrastructure-configurations=3");
            let svc = Arc::new(svc);
            let threads: Vec<_> = (0..12)
                .map(|i| {
                    let svc = svc.clone();
                    std::thread::spawn(move || {
                        call(
                            &svc,
                            Operation::CreateInfrastructureConfiguration,
                            json!({"name": format!("infra-{i}"), "instanceProfileName": "p",
                                   "clientToken": format!("t{i}")}),
                        )
                        .map_err(|e| e.kind)
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let created = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(created, 3, "{results:?}");
            assert!(results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|k| *k == ErrorKind::ServiceQuotaExceededException));
            let listed =
                call(&svc, Operation::ListInfrastructureConfigurations, json!({})).unwrap();
            assert_eq!(
                listed["infrastructureConfigurationSummaryList"]
                    .as_array()
                    .map(Vec::len),
                Some(3)
            );
        }
    }
}
