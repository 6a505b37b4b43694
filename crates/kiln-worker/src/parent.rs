//! Finding a build's parent image in the image store.
//!
//! - Kiln's managed images (`arn:aws:imagebuilder:<region>:aws:image/busybox-x86/x.x.x`, ...)
//!   are made on first use and kept under a fixed store tag.
//! - An image Kiln built, named by its Image Builder ARN (`x` filters pick the newest AVAILABLE
//!   match) or by its `ami-` id, must belong to the building image's account and region (or
//!   be shared with it); one built on another machine is pulled from the shared registry
//!   ([`crate::registry`]). A build of a recipe another account shares resolves its parent as
//!   that account would, while the recipe is still shared ([`recipe_scope`]).
//! - OCI layouts, root filesystem archives and registry images are imported for the build
//!   under a temporary tag, removed when the build ends (the layers the new image shares stay).

use crate::Shared;
use kiln_domain::arn::Arn;
use kiln_domain::resources::image::Image;
use kiln_domain::resources::infrastructure::InfrastructureConfiguration;
use kiln_domain::resources::managed::{self, ManagedBase, ManagedImage};
use kiln_domain::resources::parent::ParentSource;
use kiln_image::ImageRef;
use kiln_toe::actions::net::address::NetworkAccess;

/// The suite of the managed Debian image.
const DEBIAN_SUITE: &str = "bookworm";

/// A parent image ready in the store.
pub struct Parent {
    pub image: ImageRef,
    /// The parent's operating system as Image Builder names it (`osVersion`), when Kiln knows
    /// it: a managed image's, or the one recorded for an image Kiln built.
    pub os_version: Option<String>,
    /// A tag made for this build only, removed by [`Parent::release`].
    temporary: bool,
    /// Keeps the parent's layers while the build runs on them, even if the parent is deleted
    /// (its tag removed and the store collected) meanwhile.
    pin: std::sync::Mutex<Option<kiln_image::Pin>>,
}

impl Parent {
    /// Drops the build's temporary tag, if it made one, and the pin on the parent's layers. If
    /// nothing else keeps the parent (a temporary import, or an image deleted while the build
    /// ran on it), the store is collected now: what the new image does not share goes.
    pub fn release(&self, shared: &Shared) {
        let unreferenced = self.temporary || shared.store.resolve(&self.image.tag).is_err();
        if self.temporary {
            let _ = shared.store.delete(&self.image.tag);
        }
        let pin = self.pin.lock().unwrap_or_else(|p| p.into_inner()).take();
        if pin.is_some() && unreferenced {
            drop(pin);
            crate::run::collect(shared, &self.image.tag);
        }
    }
}

/// Networking is on when the infrastructure configuration places the instance in a network:
/// a subnet or security groups. Without either, an instance has only a loopback device.
pub fn network_allowed(infrastructure: &InfrastructureConfiguration) -> bool {
    infrastructure.subnet_id.is_some() || !infrastructure.security_group_ids.is_empty()
}

/// Where a build's WebDownload and S3 actions may connect. They connect from the Kiln process,
/// on the host, so they follow the instance's network: none without one, and with one only
/// public addresses plus the registries the operator listed (`--allow-registry`; not the shared
/// `--registry`, which holds every account's images), never the host's
/// own services or private networks.
pub fn build_network_access(
    shared: &Shared,
    infrastructure: &InfrastructureConfiguration,
) -> NetworkAccess {
    if !network_allowed(infrastructure) {
        return NetworkAccess::Off {
            reason: "the build instance has no network (its infrastructure configuration has no subnet or security group)".to_string(),
        };
    }
    NetworkAccess::Public {
        allowed: shared.core.parents.registries().to_vec(),
    }
}

/// The build's parent, pinned in the store for as long as the answer lives.
pub fn resolve(shared: &Shared, image: &Image, parent: &str) -> Result<Parent, String> {
    let found = find(shared, image, parent)?;
    let pin = shared.store.pin_image(&found.image).map_err(|e| {
        format!("the parent image {parent} went away before the build could use it: {e}")
    })?;
    Ok(Parent {
        pin: std::sync::Mutex::new(Some(pin)),
        ..found
    })
}

fn find(shared: &Shared, image: &Image, parent: &str) -> Result<Parent, String> {
    let scope = recipe_scope(shared, image)?;
    let temporary_tag = format!("parent-{}", image.build_id);
    let store_err = |e: kiln_image::Error| e.to_string();
    let kept = |image: ImageRef| Parent {
        image,
        os_version: None,
        temporary: false,
        pin: std::sync::Mutex::new(None),
    };
    let temporary = |image: ImageRef| Parent {
        image,
        os_version: None,
        temporary: true,
        pin: std::sync::Mutex::new(None),
    };
    let with_os = |os_version: Option<String>| {
        move |parent: Parent| Parent {
            os_version,
            ..parent
        }
    };
    match ParentSource::parse(parent) {
        ParentSource::ImageBuilderImage(arn) if arn.account == managed::OWNER => {
            let m = managed::find(&arn).ok_or_else(|| {
                format!(
                    "Kiln has no managed image matching {arn}; it offers {}",
                    managed::IMAGES
                        .iter()
                        .map(|m| format!("{}/x.x.x", m.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            managed_base(shared, m)
                .map(kept)
                .map(with_os(Some(m.os_version.to_string())))
        }
        ParentSource::ImageBuilderImage(arn) => {
            // The image the filter picked when the build was ordered, so that what the pipeline
            // recorded as its dependencies is what it builds on.
            let arn = image
                .resolved_parent
                .as_deref()
                .and_then(|a| Arn::parse(a).ok())
                .unwrap_or(arn);
            let built = read_parent(shared, &scope, image, |tx, account, region| {
                kiln_core::parents::newest_parent(tx, account, region, &arn)
            })?;
            let launched: Vec<String> = built
                .amis
                .iter()
                .filter(|a| a.region == image.arn.region)
                .map(|a| a.image_id.clone())
                .collect();
            record_launch(shared, image, &launched);
            crate::registry::local_or_pulled(shared, &built)
                .map(kept)
                .map(with_os(built.os_version.clone()))
        }
        ParentSource::Ami(id) => {
            let ami = read_parent(shared, &scope, image, |tx, account, region| {
                kiln_core::parents::by_ami(tx, account, region, &id)
            })?;
            record_launch(shared, image, std::slice::from_ref(&ami.image_id));
            crate::registry::local_or_pulled_build(shared, &ami.source_image, &ami.build_id)
                .map(kept)
                .map(with_os(ami.os_version.clone()))
        }
        ParentSource::OciLayout { path, tag } => {
            let layout = open_allowed(shared, &path, true)?;
            shared
                .store
                .import_confined_layout(&layout, tag.as_deref().unwrap_or(""), &temporary_tag)
                .map(temporary)
                .map_err(store_err)
        }
        ParentSource::RootfsArchive { path, .. } => {
            let archive = open_allowed(shared, &path, false)?;
            shared
                .store
                .import_confined_archive(&archive, &temporary_tag)
                .map(temporary)
                .map_err(store_err)
        }
        ParentSource::Registry {
            registry,
            repository,
            reference,
            plain_http,
        } => {
            check_registry(shared, &registry)?;
            shared
                .store
                .pull_registry(
                    &registry,
                    &repository,
                    &reference,
                    plain_http,
                    &temporary_tag,
                )
                .map(temporary)
                .map_err(store_err)
        }
        ParentSource::Unsupported(reason) => Err(reason),
    }
}

/// The `oci:` or `file://` parent at `path`, checked again against the operator's import
/// directories (the file system may have changed since the recipe was created) and opened
/// without leaving the import directory it is in.
fn open_allowed(
    shared: &Shared,
    path: &str,
    directory: bool,
) -> Result<kiln_image::confined::Confined, String> {
    let rules = &shared.core.parents;
    let allowed = rules.allowed_path(path)?;
    let opened =
        kiln_image::confined::open_beneath(&allowed.import_dir, &allowed.relative, directory)
            .map_err(|e| e.to_string())?;
    if rules.in_data_dir(&opened.real_path) {
        return Err(format!(
            "{path} is inside Kiln's data directory, which no parent image may name; use the image's ARN"
        ));
    }
    Ok(opened)
}

/// The registry checked on the addresses its name resolves to now (the API could check only
/// literal addresses and `localhost`).
fn check_registry(shared: &Shared, registry: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let Some((host, port)) = kiln_toe::actions::net::address::split_host_port(registry, 443) else {
        return Err(format!("bad registry `{registry}`"));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::IpAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving the registry {registry}: {e}"))?
        .map(|a| a.ip())
        .collect();
    shared.core.parents.check_registry(registry, &addrs)
}

/// A managed base image, made the first time a build asks for it.
fn managed_base(shared: &Shared, m: &ManagedImage) -> Result<ImageRef, String> {
    let tag = m.store_tag();
    let _once = shared.base_lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(image) = shared.store.resolve(&tag) {
        return Ok(image);
    }
    tracing::info!(image = m.name, "making a managed base image");
    let config = &shared.config;
    let mirror = match &config.debian_keyring {
        Some(file) => kiln_image::DebianMirror::with_keyring_file(&config.debian_mirror, file)
            .map_err(|e| format!("making the managed image {}: {e}", m.name))?,
        None => kiln_image::DebianMirror::new(&config.debian_mirror),
    };
    let source = config.base_source;
    let made = match m.base {
        ManagedBase::Busybox => shared
            .store
            .managed_busybox(source, &mirror, DEBIAN_SUITE, &tag),
        ManagedBase::DebianMinimal => {
            shared
                .store
                .managed_debian(source, &mirror, DEBIAN_SUITE, &tag)
        }
    };
    made.map_err(|e| format!("making the managed image {}: {e}", m.name))
}

/// Records that this build launches its instance from the AMIs `ids` (EC2's last-launched
/// time, read by lifecycle policies' `lastLaunched` exclusion). A failure to record it does not
/// stop the build: the AMI then looks less recently launched than it was.
fn record_launch(shared: &Shared, image: &Image, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let now = shared.core.clock.now_millis();
    let region = image.arn.region.as_str();
    let recorded = shared
        .core
        .store
        .write(|tx| kiln_core::amis::record_launch(tx, region, ids, now));
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(arn = %image.arn, error = %e, "recording the AMI launch failed")
        }
        Err(e) => tracing::warn!(arn = %image.arn, error = %e, "recording the AMI launch failed"),
    }
}

/// The account a build resolves its parent in: its recipe's owner (`kiln_core::sharing::
/// recipe_scope`), which is the image's account unless another account shared the recipe. That
/// recipe must still be shared with the image's account when the build starts: taking the grant
/// away fails the builds that have not started yet, with the reason.
fn recipe_scope(shared: &Shared, image: &Image) -> Result<String, String> {
    let Ok(recipe) = Arn::parse(&image.recipe_arn) else {
        return Ok(image.arn.account.clone());
    };
    if recipe.account == image.arn.account {
        return Ok(recipe.account);
    }
    let grantee = kiln_core::caller::Caller {
        account_id: &image.arn.account,
        region: &image.arn.region,
        now_millis: 0,
    };
    let shared_now = shared
        .core
        .store
        .read(|tx| kiln_core::sharing::is_shared_with(tx, grantee, &recipe));
    match shared_now {
        Ok(Ok(true)) => Ok(recipe.account),
        Ok(Ok(false)) => Err(format!(
            "the {} {recipe} is no longer shared with account {}",
            recipe.kind.label(),
            image.arn.account
        )),
        Ok(Err(e)) => Err(format!("reading the recipe's grants: {e}")),
        Err(e) => Err(format!("reading the recipe's grants: {e}")),
    }
}

/// Reads through the parent rules the API also applies ([`kiln_core::parents`]), in the
/// account `scope_account` (the recipe's owner) and the building image's region.
fn read_parent<T>(
    shared: &Shared,
    scope_account: &str,
    image: &Image,
    find: impl FnOnce(&mut dyn kiln_store::Txn, &str, &str) -> Result<T, String>,
) -> Result<T, String> {
    let account = scope_account;
    let region = image.arn.region.as_str();
    match shared.core.store.read(|tx| find(tx, account, region)) {
        Ok(found) => found,
        Err(e) => Err(format!("reading images: {e}")),
    }
}
