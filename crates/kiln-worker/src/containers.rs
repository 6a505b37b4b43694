//! Container images pushed to the registries that stand in for ECR (`--ecr-registry`).
//!
//! A container image (a build of a container recipe) goes where AWS would put it (see
//! [`Image::container_destinations`]): every `containerDistributionConfiguration` of its
//! distribution configuration, or else the recipe's `targetRepository` in the build's Region.
//! Each Region's registry comes from `--ecr-registry REGION=HOST:PORT[/PREFIX]`, or from one
//! given without `REGION=`, which serves every Region; the repository there is
//! `[PREFIX/]<repositoryName>`. Every push gets the tag `<version>-<build>` and the entry's
//! `containerTags`.
//!
//! The pushes are `skopeo copy` from the store's own OCI layout, once per tag: the first sends
//! the blobs the registry lacks, the others none. The registry's manifest digest must be the
//! image's own (`imageDigest`), or the build fails. The URIs (by tag and by digest) become
//! `outputResources.containers`, one entry per Region.
//!
//! With no `--ecr-registry` at all, container images stay in the local image store (an `oci:`
//! URI), as before registries existed, and the build log says so.

use crate::logs::BuildLog;
use crate::Shared;
use kiln_core::containers::{unmapped_region, ContainerRegistries};
use kiln_domain::resources::distribution::is_region;
use kiln_domain::resources::image::{ContainerDestination, ContainerOutput, Image, ImageType};
use kiln_image::{ImageRef, RegistryFlags, SharedRegistry};
use std::collections::BTreeMap;
use std::path::Path;

/// The parsed `--ecr-registry` values, with `--ecr-registry-ca` and `--ecr-auth-file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcrRegistries {
    /// The registry of every Region not named on its own.
    pub every_region: Option<SharedRegistry>,
    pub by_region: BTreeMap<String, SharedRegistry>,
}

impl EcrRegistries {
    /// Parses `[REGION=][https://]HOST[:PORT][/PREFIX]` values; the errors name the flag.
    pub fn parse(
        values: &[String],
        ca: Option<&Path>,
        auth: Option<&Path>,
    ) -> Result<EcrRegistries, String> {
        let flag = RegistryFlags::ECR.registry;
        let mut registries = EcrRegistries::default();
        for value in values {
            let value = value.trim();
            let (region, address) = match value.split_once('=') {
                Some((region, address)) => (Some(region), address),
                None => (None, value),
            };
            // Errors about the address name the whole value, Region and all.
            let registry = SharedRegistry::parse_flags(address, ca, auth, RegistryFlags::ECR)
                .map_err(|e| {
                    e.to_string().replacen(
                        &format!("{flag} `{address}`"),
                        &format!("{flag} `{value}`"),
                        1,
                    )
                })?;
            match region {
                Some(region) if !is_region(region) => {
                    return Err(format!(
                        "{flag} `{value}`: `{region}` is not a Region code (for example us-east-1); give REGION=HOST:PORT[/PREFIX], or HOST:PORT[/PREFIX] for every Region"
                    ))
                }
                Some(region) => {
                    if registries
                        .by_region
                        .insert(region.to_string(), registry)
                        .is_some()
                    {
                        return Err(format!(
                            "{flag} `{value}`: the Region {region} already has a registry"
                        ));
                    }
                }
                None => {
                    if registries.every_region.replace(registry).is_some() {
                        return Err(format!(
                            "{flag} `{value}`: a registry for every Region (no REGION=) is already given"
                        ));
                    }
                }
            }
        }
        if registries.is_empty() && (ca.is_some() || auth.is_some()) {
            let other = if ca.is_some() {
                RegistryFlags::ECR.ca
            } else {
                RegistryFlags::ECR.auth
            };
            return Err(format!("{other} is given without {flag}"));
        }
        Ok(registries)
    }

    pub fn is_empty(&self) -> bool {
        self.every_region.is_none() && self.by_region.is_empty()
    }

    /// The registry of `region`, if any.
    pub fn for_region(&self, region: &str) -> Option<&SharedRegistry> {
        self.by_region.get(region).or(self.every_region.as_ref())
    }

    /// What the API checks before it queues a build.
    pub fn coverage(&self) -> ContainerRegistries {
        if self.every_region.is_some() {
            ContainerRegistries::Every
        } else if self.by_region.is_empty() {
            ContainerRegistries::None
        } else {
            ContainerRegistries::Regions(self.by_region.keys().cloned().collect())
        }
    }
}

/// Each destination with its registry; the first destination without one is the error.
fn plan(
    registries: &EcrRegistries,
    destinations: Vec<ContainerDestination>,
) -> Result<Vec<(ContainerDestination, &SharedRegistry)>, String> {
    destinations
        .into_iter()
        .map(|d| match registries.for_region(&d.region) {
            Some(registry) => Ok((d, registry)),
            None => Err(unmapped_region(&d)),
        })
        .collect()
}

/// The URIs of a pushed image: one per tag, then the one by digest.
fn image_uris(registry: &SharedRegistry, d: &ContainerDestination, digest: &str) -> Vec<String> {
    let mut uris: Vec<String> = d
        .tags
        .iter()
        .map(|tag| registry.reference(&d.repository, tag))
        .collect();
    uris.push(registry.digest_reference(&d.repository, digest));
    uris
}

/// Pushes a built container image where it goes, after the test stage; answers
/// `outputResources.containers` (empty for AMI images, and when no registry is configured).
/// Nothing is pushed unless every destination has a registry. A failure names the Region, the
/// registry and the repository; tags already pushed stay, as AWS leaves what a failed
/// distribution made.
pub fn push(
    shared: &Shared,
    image: &Image,
    built: &ImageRef,
    log: &BuildLog,
) -> Result<Vec<ContainerOutput>, String> {
    if image.image_type != ImageType::Docker {
        return Ok(Vec::new());
    }
    let registries = &shared.config.ecr_registries;
    if registries.is_empty() {
        log.event(
            "no registry for container images is configured (kiln --ecr-registry): the image \
             stays in this machine's image store, and its targetRepository and \
             containerDistributionConfiguration are not pushed to",
        );
        return Ok(Vec::new());
    }
    let pushes = plan(registries, image.container_destinations())?;
    let distributions = image.snapshot.iter().flat_map(|s| &s.distribution);
    for (i, d) in distributions.flat_map(|d| d.distributions.iter().enumerate()) {
        if d.container_distribution_configuration.is_none() {
            log.event(&format!(
                "distributions[{i}] ({}) has no containerDistributionConfiguration: this \
                 container image does not go there",
                d.region
            ));
        }
    }
    let mut outputs = Vec::with_capacity(pushes.len());
    for (d, registry) in pushes {
        let repository = registry.repository(&d.repository);
        log.event(&format!(
            "pushing to {}/{repository} in {} ({}) with the tags {}",
            registry.host_port,
            d.region,
            d.source,
            d.tags.join(", ")
        ));
        // A registry that stores another manifest than the image's (it converted it) fails
        // the build too: the image's digest would not name what was pushed.
        shared
            .store
            .push_registry_tags(
                built,
                &registry.host_port,
                &repository,
                &d.tags,
                &registry.access(),
            )
            .map_err(|e| {
                format!(
                    "pushing the container image to {}/{repository} (the Region {}'s registry): {e}",
                    registry.host_port, d.region
                )
            })?;
        let uris = image_uris(registry, &d, &built.digest);
        log.event(&format!("pushed: {}", uris.join(" ")));
        outputs.push(ContainerOutput {
            region: d.region,
            image_uris: uris,
        });
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<EcrRegistries, String> {
        let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        EcrRegistries::parse(&values, None, None)
    }

    fn to(region: &str, repository: &str) -> ContainerDestination {
        ContainerDestination {
            region: region.into(),
            repository: repository.into(),
            tags: vec!["1.0.0-1".into(), "latest".into()],
            source:
                "distributionConfigurationArn: distributions[0].containerDistributionConfiguration"
                    .into(),
        }
    }

    #[test]
    fn a_registry_without_a_region_serves_every_region_the_others_theirs() {
        let registries = parse(&["127.0.0.1:5000/all", "us-west-2=127.0.0.1:6000"]).unwrap();
        let host = |region: &str| registries.for_region(region).map(|r| r.host_port.clone());
        assert_eq!(host("us-east-1").as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(host("us-west-2").as_deref(), Some("127.0.0.1:6000"));
        assert_eq!(registries.coverage(), ContainerRegistries::Every);
        let only_west = parse(&["us-west-2=127.0.0.1:6000"]).unwrap();
        assert_eq!(only_west.for_region("us-east-1"), None);
        assert!(only_west.coverage().covers("us-west-2"));
        assert!(!only_west.coverage().covers("us-east-1"));
        assert!(parse(&[]).unwrap().is_empty());
        assert_eq!(parse(&[]).unwrap().coverage(), ContainerRegistries::None);
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (values, says) in [
            (&["us-east-1=http://10.0.0.1:5000"][..], "plain HTTP"),
            (&["useast=127.0.0.1:5000"][..], "not a Region code"),
            (&["=127.0.0.1:5000"][..], "not a Region code"),
            (&["us-east-1="][..], "`us-east-1=`: give HOST[:PORT]"),
            (&["127.0.0.1:5000/Team"][..], "the prefix `Team`"),
            (&["127.0.0.1:5000", "127.0.0.1:6000"][..], "already given"),
            (
                &["us-east-1=127.0.0.1:5000", "us-east-1=127.0.0.1:6000"][..],
                "already has a registry",
            ),
        ] {
            let err = parse(values).unwrap_err();
            assert!(
                err.starts_with("--ecr-registry `") && err.contains(says),
                "{values:?}: {err}"
            );
        }
        let dir = std::env::temp_dir();
        let err = EcrRegistries::parse(&[], None, Some(&dir)).unwrap_err();
        assert!(
            err.contains("--ecr-auth-file is given without --ecr-registry"),
            "{err}"
        );
    }

    #[test]
    fn every_destination_needs_a_registry_before_anything_is_pushed() {
        let registries = parse(&["us-east-1=127.0.0.1:5000/kiln"]).unwrap();
        let planned = plan(&registries, vec![to("us-east-1", "app")]).unwrap();
        assert_eq!(planned.len(), 1);
        let err = plan(
            &registries,
            vec![to("us-east-1", "app"), to("eu-west-1", "app")],
        )
        .unwrap_err();
        assert!(
            err.contains("Region eu-west-1")
                && err.contains("--ecr-registry eu-west-1=HOST:PORT")
                && err.starts_with("distributionConfigurationArn: distributions[0]"),
            "{err}"
        );
    }

    #[test]
    fn image_uris_name_each_tag_then_the_digest_under_the_prefix() {
        let registries = parse(&["127.0.0.1:5000/kiln"]).unwrap();
        let registry = registries.for_region("us-east-1").unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            image_uris(registry, &to("us-east-1", "team/app"), &digest),
            vec![
                "127.0.0.1:5000/kiln/team/app:1.0.0-1".to_string(),
                "127.0.0.1:5000/kiln/team/app:latest".to_string(),
                format!("127.0.0.1:5000/kiln/team/app@{digest}"),
            ]
        );
    }
}
