//! Which Regions have a registry for container images (`--ecr-registry`), as far as the API
//! checks them before it queues a build: a container image bound for a Region with no registry
//! is refused by CreateImage and StartImagePipelineExecution, instead of failing at the end of
//! its build. The registries themselves (addresses, TLS, credentials) and the pushes are the
//! worker's (`kiln_worker::containers`), which checks again: a scheduled run, or a worker
//! configured apart from the server, fails in the distribute stage instead.

use crate::error::{CoreError, CoreResult};
use kiln_domain::resources::image::ContainerDestination;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ContainerRegistries {
    /// None configured here: container images stay in the image store of the machine that
    /// built them, and nothing is checked.
    #[default]
    None,
    /// A registry serves every Region (`--ecr-registry HOST:PORT`, without `REGION=`).
    Every,
    /// Registries serve these Regions only.
    Regions(BTreeSet<String>),
}

impl ContainerRegistries {
    /// Whether images pushed to `region` have a registry to go to.
    pub fn covers(&self, region: &str) -> bool {
        match self {
            ContainerRegistries::None => false,
            ContainerRegistries::Every => true,
            ContainerRegistries::Regions(regions) => regions.contains(region),
        }
    }

    /// Refuses destinations in a Region with no registry, naming the member they come from.
    pub fn check(&self, destinations: &[ContainerDestination]) -> CoreResult<()> {
        if *self == ContainerRegistries::None {
            return Ok(());
        }
        match destinations.iter().find(|d| !self.covers(&d.region)) {
            Some(d) => Err(CoreError::Invalid(unmapped_region(d))),
            None => Ok(()),
        }
    }
}

impl ContainerRegistries {
    /// The copy of a scanned container image (`ecrConfiguration`): like a destination, it
    /// needs its Region's registry; with no registry at all it stays in Kiln's store, unless
    /// `ecrConfiguration` was given (there would be nowhere to act on it).
    pub fn check_scan_copy(&self, copy: Option<&(ContainerDestination, bool)>) -> CoreResult<()> {
        match copy {
            Some((d, true)) if *self == ContainerRegistries::None => Err(CoreError::Invalid(format!(
                "{}: the scanned copy of the container image goes to the repository '{}', but this Kiln has no registry for container images: start it with --ecr-registry {}=HOST:PORT[/PREFIX], or leave ecrConfiguration out (the image is scanned in Kiln's own store)",
                d.source, d.repository, d.region
            ))),
            Some((d, _)) => self.check(std::slice::from_ref(d)),
            None => Ok(()),
        }
    }
}

/// Why a destination cannot be pushed to: its Region has no registry.
pub fn unmapped_region(d: &ContainerDestination) -> String {
    format!(
        "{}: the container image goes to the repository '{}' in the Region {}, which has no \
         registry for container images: start Kiln with --ecr-registry {}=HOST:PORT[/PREFIX] \
         (or --ecr-registry HOST:PORT for every Region)",
        d.source, d.repository, d.region, d.region
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(region: &str) -> ContainerDestination {
        ContainerDestination {
            region: region.into(),
            repository: "app".into(),
            tags: vec!["1.0.0-1".into()],
            source:
                "distributionConfigurationArn: distributions[1].containerDistributionConfiguration"
                    .into(),
        }
    }

    #[test]
    fn only_configured_registries_refuse_anything() {
        let destinations = [to("us-east-1"), to("us-west-2")];
        assert!(ContainerRegistries::None.check(&destinations).is_ok());
        assert!(ContainerRegistries::Every.check(&destinations).is_ok());
        let east = ContainerRegistries::Regions(BTreeSet::from(["us-east-1".to_string()]));
        assert!(east.check(&destinations[..1]).is_ok());
        let Err(CoreError::Invalid(message)) = east.check(&destinations) else {
            panic!("us-west-2 has no registry");
        };
        assert!(
            message.starts_with("distributionConfigurationArn: distributions[1]")
                && message.contains("Region us-west-2")
                && message.contains("--ecr-registry us-west-2=HOST:PORT"),
            "{message}"
        );
    }
}
