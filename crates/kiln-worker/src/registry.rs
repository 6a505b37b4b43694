//! Images shared between machines through the registry of `--registry` (see
//! [`kiln_image::SharedRegistry`]): every image a worker builds is pushed there before it
//! becomes AVAILABLE, and a worker whose store lacks an image Kiln built (a parent, an export)
//! pulls it from there. The local store is a cache of the registry.
//!
//! Names: `[PREFIX/]kiln/<account>/<region>/<image name>:<version>-<build>-<build id>`. The
//! build id (unique to the build) keeps a tag from ever naming two images, even when a build
//! number is used again after a DeleteImage; pulls are by that tag.

use crate::run::store_tag;
use crate::Shared;
use kiln_domain::arn::Arn;
use kiln_domain::resources::image::Image;
use kiln_image::{ImageRef, SharedRegistry};

/// The repository and tag of `image` in the registry.
pub fn name_of(image: &Image) -> (String, String) {
    repository_and_tag(&image.arn, &image.build_id)
}

fn repository_and_tag(arn: &Arn, build_id: &str) -> (String, String) {
    // A repository path component must start and end with a letter or digit; an image name
    // may start or end with a hyphen.
    let name = arn.name.trim_matches('-');
    let name = if name.is_empty() { "image" } else { name };
    let repository = format!("kiln/{}/{}/{name}", arn.account, arn.region);
    let version = arn.version.as_deref().unwrap_or("0.0.0");
    let build = arn.build.unwrap_or(0);
    (repository, format!("{version}-{build}-{build_id}"))
}

/// Where `image` is (or will be) in `registry`: `host:port/[prefix/]repository:tag`.
pub fn reference_of(registry: &SharedRegistry, image: &Image) -> String {
    let (repository, tag) = name_of(image);
    registry.reference(&repository, &tag)
}

/// Pushes the image a build made to the shared registry; the error names the registry.
pub fn push(shared: &Shared, image: &Image, built: &ImageRef) -> Result<(), String> {
    let Some(registry) = &shared.config.registry else {
        return Ok(());
    };
    let reference = reference_of(registry, image);
    shared
        .store
        .push_registry_with(built, &reference, &registry.access())
        .map(|_| ())
        .map_err(|e| {
            format!(
                "pushing the image to the registry {} as {reference}: {e}",
                registry.host_port
            )
        })
}

/// The store entry of an image Kiln built: from the local store, or else pulled from the
/// shared registry into it (under the same tag, so later builds find it there).
pub fn local_or_pulled(shared: &Shared, image: &Image) -> Result<ImageRef, String> {
    local_or_pulled_build(shared, &image.arn, &image.build_id)
}

/// [`local_or_pulled`] for the build `build_id` of the image `arn` (which may have been
/// deleted since, when an AMI distributed from it still names its contents).
pub fn local_or_pulled_build(shared: &Shared, arn: &Arn, build_id: &str) -> Result<ImageRef, String> {
    let tag = store_tag(build_id);
    let missing = match shared.store.resolve(&tag) {
        Ok(found) => return Ok(found),
        Err(e @ kiln_image::Error::UnknownTag(_)) => e,
        Err(e) => return Err(format!("the image store: {e}")),
    };
    let Some(registry) = &shared.config.registry else {
        return Err(format!(
            "{arn}: {missing} on this machine, and no shared registry (kiln serve --registry) is configured to pull it from"
        ));
    };
    let (repository, reference) = repository_and_tag(arn, build_id);
    tracing::info!(arn = %arn, registry = registry.host_port, "pulling an image from the shared registry");
    shared
        .store
        .pull_registry_with(
            &registry.host_port,
            &registry.repository(&repository),
            &reference,
            &registry.access(),
            &tag,
        )
        .map_err(|e| {
            format!(
                "{arn}: not on this machine, and pulling it from the registry {} failed: {e}",
                registry.host_port
            )
        })
}

/// Deletes a deleted image's copy from the registry; a registry that refuses deletes (or is
/// away) leaves it there, which is logged.
pub fn remove(shared: &Shared, image: &Image) {
    let Some(registry) = &shared.config.registry else {
        return;
    };
    let reference = reference_of(registry, image);
    if let Err(e) = shared.store.delete_registry(&reference, &registry.access()) {
        tracing::warn!(arn = %image.arn, reference, error = %e, "deleting the image from the shared registry failed; it stays there");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_account_region_name_version_build_and_build_id() {
        let arn = Arn::parse("arn:aws:imagebuilder:us-east-1:123456789012:image/-my-app-/1.0.0/2")
            .unwrap();
        let (repository, tag) = repository_and_tag(&arn, "0123456789abcdef");
        assert_eq!(repository, "kiln/123456789012/us-east-1/my-app");
        assert_eq!(tag, "1.0.0-2-0123456789abcdef");
        let registry = SharedRegistry::parse("127.0.0.1:5000/team", None, None).unwrap();
        assert_eq!(
            registry.reference(&repository, &tag),
            "127.0.0.1:5000/team/kiln/123456789012/us-east-1/my-app:1.0.0-2-0123456789abcdef"
        );
    }
}
