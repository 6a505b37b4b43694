//! Creating an image from a disk image (ImportDiskImage, ImportVmImage) and queueing its import.
//!
//! An imported image is an Image Builder image like a built one (`image/<name>/<version>/<n>`,
//! build numbers shared with built images of the same name and version, an `ami-` id once
//! AVAILABLE), with `buildType` IMPORT and no recipe: its record holds the disk to import
//! ([`ImageImport`]) instead of a build snapshot. It is created PENDING and queued in the
//! call's transaction, as CreateImage's images are; the build worker claims it and imports the
//! disk instead of building.

use crate::caller::Caller;
use crate::error::{CoreError, CoreResult};
use crate::images::{build_id_of, next_build, NewImage};
use crate::lookup::{decode_row, resolve_required};
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{BuildType, Image, ImageStatus, StatusChange};
use kiln_domain::resources::import::ImageImport;
use kiln_domain::version::SemVer;
use kiln_store::{Txn, TxnExt};
use std::collections::BTreeMap;

/// What an import request asks for.
pub struct ImportOrder {
    /// The image's name as the request gave it (the ARN uses its normalized form).
    pub name: String,
    pub version: SemVer,
    /// `Linux` (the only platform Kiln imports).
    pub platform: String,
    /// ImportDiskImage's infrastructure configuration, resolved here in the caller's account.
    pub infrastructure_arn: Option<String>,
    pub import: ImageImport,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Creates the PENDING image of `order`, queues its import, and answers its ARN.
pub fn create_import(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    order: ImportOrder,
) -> CoreResult<NewImage> {
    let mut import = order.import;
    let mut infrastructure_arn = String::new();
    if let Some(arn) = &order.infrastructure_arn {
        let row = resolve_required(tx, caller, arn, "infrastructureConfigurationArn")?;
        infrastructure_arn = row.arn.clone();
        import.infrastructure = Some(decode_row(&row)?);
    }
    let name = kiln_domain::name::normalize(&order.name);
    if name.is_empty() || name.contains('/') {
        return Err(CoreError::Invalid(format!(
            "name: '{}' cannot name an image",
            order.name
        )));
    }
    let build = next_build(tx, caller.account_id, caller.region, &name, &order.version)?;
    let arn = Arn::new(caller.region, caller.account_id, ResourceKind::Image, &name)
        .with_version(order.version)
        .with_build(build);
    let arn_text = arn.to_string();
    let image = Image {
        build_id: build_id_of(&arn_text),
        name: order.name,
        build_type: BuildType::Import,
        history: vec![StatusChange {
            status: ImageStatus::Pending,
            reason: None,
            at: caller.now_millis,
        }],
        infrastructure_configuration_arn: infrastructure_arn,
        // Nothing is built, so nothing is tested; the OS and packages are read from the disk.
        image_tests_enabled: false,
        platform: order.platform,
        date_created: caller.now_millis,
        import: Some(import),
        ..Image::blank(arn)
    };
    tx.put_tagged(&image, order.tags.as_ref())?;
    tx.enqueue_build(&arn_text, caller.now_millis)?;
    Ok(NewImage {
        arn: image.arn,
        version: order.version,
        container_destinations: Vec::new(),
        scan_copy: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_domain::resources::import::{DiskSource, ImportKind};

    fn order(name: &str) -> ImportOrder {
        ImportOrder {
            name: name.to_string(),
            version: SemVer::parse("1.2.3").unwrap(),
            platform: "Linux".into(),
            infrastructure_arn: None,
            import: ImageImport {
                kind: ImportKind::VmImage,
                source: DiskSource::File {
                    path: "/srv/disk.raw".into(),
                },
                description: None,
                os_version: None,
                infrastructure: None,
                execution_role: None,
                log_group: None,
                found: None,
            },
            tags: None,
        }
    }

    #[test]
    fn imports_are_queued_build_versions_of_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let database = kiln_store::Database::Sqlite(dir.path().join("kiln.db"));
        let store = kiln_store::Store::open(&database, kiln_store::sqlite::Sync::Normal).unwrap();
        let caller = Caller {
            account_id: "123456789012",
            region: "us-east-1",
            now_millis: 5,
        };
        let arns: Vec<String> = (0..2)
            .map(|_| {
                store
                    .write(|tx| create_import(tx, caller, order("My Disk")))
                    .unwrap()
                    .unwrap()
                    .arn
                    .to_string()
            })
            .collect();
        assert_eq!(
            arns,
            [
                "arn:aws:imagebuilder:us-east-1:123456789012:image/my-disk/1.2.3/1",
                "arn:aws:imagebuilder:us-east-1:123456789012:image/my-disk/1.2.3/2"
            ]
        );
        let image: Image = store.read(|tx| tx.get(&arns[0])).unwrap().unwrap().unwrap();
        assert_eq!(
            (image.status, image.build_type, image.name.as_str()),
            (ImageStatus::Pending, BuildType::Import, "My Disk")
        );
        assert!(image.import.is_some() && image.snapshot.is_none());
        let queued = store.read(|tx| tx.queued_builds()).unwrap().unwrap();
        assert_eq!(queued.len(), 2);
        let missing = ImportOrder {
            infrastructure_arn: Some(
                "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/none"
                    .into(),
            ),
            ..order("x")
        };
        let err = match store
            .write(|tx| create_import(tx, caller, missing))
            .unwrap()
        {
            Err(e) => e.to_string(),
            Ok(image) => panic!("created {}", image.arn),
        };
        assert!(
            err.to_string().contains("infrastructureConfigurationArn"),
            "{err}"
        );
    }
}
