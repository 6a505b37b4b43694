//! The base images Kiln offers under the `aws` owner, as Image Builder offers Amazon-managed
//! images: `arn:aws:imagebuilder:<region>:aws:image/<name>/<version>/1`. They exist in every
//! region, are always AVAILABLE, and their contents are made on first use by the build worker
//! (busybox from the host's busybox-static; Debian with mmdebstrap from the configured mirror).

use crate::arn::{Arn, ResourceKind};
use crate::version::{SemVer, VersionFilter};

/// The account segment of managed images' ARNs.
pub const OWNER: &str = "aws";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedBase {
    Busybox,
    DebianMinimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedImage {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub os_version: &'static str,
    pub base: ManagedBase,
    /// When the image appeared (for `dateCreated`): Kiln 0.1's release.
    pub date_created: i64,
}

/// Nov 27 2026, 00:00 UTC.
pub const RELEASED: i64 = 1_795_737_600_000;

pub const IMAGES: [ManagedImage; 2] = [
    ManagedImage {
        name: "busybox-x86",
        version: "1.0.0",
        description:
            "BusyBox on x86_64: a static busybox, one link per applet, /bin/bash running ash",
        os_version: "BusyBox",
        base: ManagedBase::Busybox,
        date_created: RELEASED,
    },
    ManagedImage {
        name: "debian-12-minimal-x86",
        version: "1.0.0",
        description: "Debian 12 (bookworm) minbase on x86_64, made with mmdebstrap",
        os_version: "Debian 12",
        base: ManagedBase::DebianMinimal,
        date_created: RELEASED,
    },
];

impl ManagedImage {
    /// The image's build version ARN in `region`.
    pub fn arn(&self, region: &str) -> Arn {
        Arn::new(region, OWNER, ResourceKind::Image, self.name)
            .with_version(self.version)
            .with_build(1)
    }

    /// The tag of its contents in the image store.
    pub fn store_tag(&self) -> String {
        format!("aws-{}-{}", self.name, self.version)
    }
}

/// The managed image an ARN names (its version may be an `x` filter, or absent), if any.
pub fn find(arn: &Arn) -> Option<&'static ManagedImage> {
    if arn.account != OWNER || arn.kind != ResourceKind::Image {
        return None;
    }
    let image = IMAGES.iter().find(|m| m.name == arn.name)?;
    let version = SemVer::parse(image.version).ok()?;
    let matches = match arn.version.as_deref() {
        None => true,
        Some(v) => VersionFilter::parse(v)
            .ok()?
            .newest([(version, 1)])
            .is_some(),
    };
    let build_ok = arn.build.is_none_or(|b| b == 1);
    (matches && build_ok).then_some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_with_filters() {
        let p = |s: &str| Arn::parse(s).unwrap();
        let busybox = find(&p(
            "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
        ));
        assert_eq!(busybox.map(|m| m.base), Some(ManagedBase::Busybox));
        assert!(find(&p(
            "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/1.0.0/1"
        ))
        .is_some());
        assert!(find(&p(
            "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/2.x.x"
        ))
        .is_none());
        assert!(find(&p(
            "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/1.0.0/2"
        ))
        .is_none());
        assert!(find(&p(
            "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2-x86/x.x.x"
        ))
        .is_none());
        assert!(find(&p(
            "arn:aws:imagebuilder:us-east-1:123456789012:image/busybox-x86/x.x.x"
        ))
        .is_none());
        assert_eq!(
            IMAGES[1].arn("eu-west-1").to_string(),
            "arn:aws:imagebuilder:eu-west-1:aws:image/debian-12-minimal-x86/1.0.0/1"
        );
    }
}
