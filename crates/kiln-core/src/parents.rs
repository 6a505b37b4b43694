//! Which image a recipe's parent names, among the images Kiln built or manages. The API uses it
//! to record what an image is built from (for the schedule's dependency check) and the build
//! worker to find the parent's contents, so both agree on what `x` filters pick.

use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::managed;
use kiln_domain::resources::parent::ParentSource;
use kiln_domain::version::{SemVer, VersionFilter};
use kiln_store::{ListQuery, Txn, TxnExt};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The images of one account and region, optionally of one name.
fn images(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    name: Option<&str>,
) -> Result<Vec<Image>, String> {
    tx.list::<Image>(&ListQuery {
        account: account.to_string(),
        region: region.to_string(),
        kind: ResourceKind::Image,
        name: name.map(str::to_string),
        after: None,
    })
    .map_err(|e| format!("reading images: {e}"))
}

/// The newest AVAILABLE image an ARN (version, `x` filter or build) matches, which must belong
/// to `account` and `region` (those of the image being built).
pub fn newest_available(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    arn: &Arn,
) -> Result<Image, String> {
    if arn.account != account || arn.region != region {
        return Err(format!(
            "{arn} belongs to another account or region than the image being built"
        ));
    }
    let candidates = images(tx, account, region, Some(&arn.name))?;
    newest_of(candidates, arn, &[ImageStatus::Available])
}

/// The image a parent reference (version, `x` filter or build) builds on: the newest
/// AVAILABLE or DEPRECATED (deprecated images still build; DISABLED ones do not) image it
/// matches among `account`'s own images in `region`, or, for another account's ARN, among
/// the images that account shares with `account` here.
pub fn newest_parent(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    arn: &Arn,
) -> Result<Image, String> {
    if arn.region != region {
        return Err(format!(
            "{arn} is in {}; a parent image must be in this region ({region})",
            arn.region
        ));
    }
    let candidates = if arn.account == account {
        images(tx, account, region, Some(&arn.name))?
    } else {
        let caller = crate::Caller {
            account_id: account,
            region,
            now_millis: 0,
        };
        let rows = crate::sharing::shared_with(tx, caller, ResourceKind::Image)
            .map_err(|e| format!("reading shared images: {e}"))?;
        rows.iter()
            .filter(|row| row.account == arn.account && row.name == arn.name)
            .map(|row| crate::lookup::decode_row::<Image>(row).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?
    };
    newest_of(
        candidates,
        arn,
        &[ImageStatus::Available, ImageStatus::Deprecated],
    )
    .map_err(|e| {
        if arn.account == account {
            e
        } else {
            format!(
                "{e} among the images account {} shares with account {account}",
                arn.account
            )
        }
    })
}

/// The newest of `candidates` in one of `statuses` that `arn` matches.
fn newest_of(candidates: Vec<Image>, arn: &Arn, statuses: &[ImageStatus]) -> Result<Image, String> {
    // "no AVAILABLE image matches ..." whatever else counts, so the reason reads the same
    // as before DEPRECATED images could be parents.
    let others = statuses
        .iter()
        .filter(|s| **s != ImageStatus::Available)
        .map(|s| s.as_str())
        .collect::<Vec<_>>();
    let nothing = if others.is_empty() {
        format!("no AVAILABLE image matches {arn}")
    } else {
        format!(
            "no AVAILABLE image matches {arn} (nor a {} one)",
            others.join(" or ")
        )
    };
    let filter = match &arn.version {
        Some(v) => VersionFilter::parse(v).map_err(|e| e.message)?,
        None => VersionFilter::ANY,
    };
    let candidates: Vec<Image> = candidates
        .into_iter()
        .filter(|i| statuses.contains(&i.status))
        .filter(|i| arn.build.is_none() || i.arn.build == arn.build)
        .collect();
    let versions = candidates.iter().filter_map(|i| {
        Some((
            SemVer::parse(i.arn.version.as_deref()?).ok()?,
            i.arn.build.unwrap_or(0),
        ))
    });
    let (version, build) = filter.newest(versions).ok_or_else(|| nothing.clone())?;
    let version = version.to_string();
    candidates
        .into_iter()
        .find(|i| i.arn.version.as_deref() == Some(version.as_str()) && i.arn.build == Some(build))
        .ok_or(nothing)
}

/// What an `ami-` id names as a parent: the contents of the Image Builder image it was
/// distributed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiParent {
    pub image_id: String,
    /// The Image Builder image it was distributed from (it may have been deleted since: the
    /// AMI keeps its contents).
    pub source_image: Arn,
    pub build_id: String,
    pub os_version: Option<String>,
}

/// The AMI an `ami-` id names for `account` in `region`: one it owns, one shared with it or a
/// public one (EC2's launch permissions), or, for images built before distribution made AMI
/// records, the AVAILABLE image of the account that answers to the id.
pub fn by_ami(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    id: &str,
) -> Result<AmiParent, String> {
    let ami = crate::amis::find_launchable(tx, account, region, id)
        .map_err(|e| format!("reading AMIs: {e}"))?;
    if let Some(ami) = ami {
        if ami.disabled {
            return Err(format!(
                "the AMI {id} is disabled; a disabled AMI cannot be launched (enable it first)"
            ));
        }
        let source_image = Arn::parse(&ami.source_image).map_err(|e| e.to_string())?;
        return Ok(AmiParent {
            image_id: ami.image_id,
            source_image,
            build_id: ami.build_id,
            os_version: ami.os_version,
        });
    }
    images(tx, account, region, None)?
        .into_iter()
        .find(|i| i.output_resources.iter().any(|o| o == id) && i.amis.is_empty())
        .filter(|i| i.status == ImageStatus::Available)
        .map(|i| AmiParent {
            image_id: id.to_string(),
            source_image: i.arn,
            build_id: i.build_id,
            os_version: i.os_version,
        })
        .ok_or_else(|| {
            format!(
                "no AMI {id} in {region} that account {account} owns or may launch (shared with it or public)"
            )
        })
}

/// The build version ARN a parent reference resolves to now, for Image Builder image ARNs
/// (managed or built by Kiln) and `ami-` ids; `None` for other forms, or when nothing matches
/// yet (the build then fails with the reason, as it would have).
pub fn resolved_parent(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    parent: &str,
) -> Result<Option<String>, String> {
    Ok(match ParentSource::parse(parent) {
        ParentSource::ImageBuilderImage(arn) if arn.account == managed::OWNER => {
            managed::find(&arn).map(|m| m.arn(&arn.region).to_string())
        }
        ParentSource::ImageBuilderImage(arn) => newest_parent(tx, account, region, &arn)
            .ok()
            .map(|i| i.arn.to_string()),
        ParentSource::Ami(id) => by_ami(tx, account, region, &id)
            .ok()
            .map(|p| p.source_image.to_string()),
        _ => None,
    })
}

/// What a caller may name as a parent image beyond its own account's images: the
/// operator's `--import-dir`s for `oci:` and `file://` parents (never Kiln's data directory,
/// even inside one of them) and `--allow-registry`s on loopback, link-local or private addresses.
/// Checked when a recipe is created and again by the worker right before it reads.
#[derive(Debug, Clone, Default)]
pub struct ParentRules {
    /// Canonical (symlinks resolved).
    import_dirs: Vec<PathBuf>,
    /// The import directories as the operator wrote them (made absolute), and canonical: what
    /// a caller's path is first compared with, before the file system is read.
    named_dirs: Vec<PathBuf>,
    /// Canonical, and as the operator wrote it (made absolute); empty for a service without
    /// one (unit tests).
    data_dir: PathBuf,
    named_data_dir: PathBuf,
    /// `host[:port]` as the operator wrote them, compared case-insensitively.
    registries: Vec<String>,
}

/// A parent path that passed [`ParentRules::allowed_path`]: the import directory it is in and
/// the path below it, so that the reader can open it without leaving that directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPath {
    pub import_dir: PathBuf,
    pub relative: PathBuf,
}

const IMPORT_FLAG: &str = "kiln serve --import-dir DIR";

impl ParentRules {
    /// Canonicalizes the directories; an import directory that does not exist is an error
    /// naming it.
    pub fn new(
        data_dir: &Path,
        import_dirs: &[PathBuf],
        registries: &[String],
    ) -> Result<ParentRules, String> {
        let canonical = |p: &Path, what: &str| {
            std::fs::canonicalize(p).map_err(|e| format!("{what} {}: {e}", p.display()))
        };
        let mut dirs = Vec::new();
        let mut named = Vec::new();
        for d in import_dirs {
            let c = canonical(d, "--import-dir")?;
            if !c.is_dir() {
                return Err(format!("--import-dir {} is not a directory", d.display()));
            }
            let absolute =
                std::path::absolute(d).map_err(|e| format!("--import-dir {}: {e}", d.display()))?;
            named.extend(normalize(&absolute));
            named.push(c.clone());
            dirs.push(c);
        }
        for r in registries {
            let ok = kiln_toe::actions::net::address::split_host_port(r, 443)
                .is_some_and(|(h, _)| !h.is_empty() && !h.contains('/'));
            if !ok {
                return Err(format!(
                    "--allow-registry `{r}`: give HOST:PORT (e.g. 127.0.0.1:5000)"
                ));
            }
        }
        let named_data_dir = std::path::absolute(data_dir)
            .ok()
            .and_then(|p| normalize(&p))
            .unwrap_or_default();
        Ok(ParentRules {
            import_dirs: dirs,
            named_dirs: named,
            named_data_dir,
            data_dir: canonical(data_dir, "the data directory")?,
            registries: registries.to_vec(),
        })
    }

    pub fn registries(&self) -> &[String] {
        &self.registries
    }

    /// Whether the caller's account may use an Image Builder image ARN as a parent: its own
    /// images in this region, and Kiln's managed ones (owner `aws`). Images other accounts
    /// share with it are checked by [`ParentRules::check_at_create_in`], which reads the store.
    pub fn may_use_image(account: &str, region: &str, arn: &Arn) -> Result<(), String> {
        if arn.account == managed::OWNER {
            return Ok(());
        }
        if arn.account != account {
            return Err(format!(
                "{arn} is not an image of your account {account}; a parent image is one of your account's images or an Amazon-managed one (owner aws)"
            ));
        }
        if arn.region != region {
            return Err(format!(
                "{arn} is in {}; a parent image must be in this region ({region})",
                arn.region
            ));
        }
        Ok(())
    }

    /// [`ParentRules::check_at_create`], where an image of another account in this region is
    /// allowed when an AVAILABLE or DEPRECATED image it matches is shared with `account` now.
    pub fn check_at_create_in(
        &self,
        tx: &mut dyn Txn,
        account: &str,
        region: &str,
        parent: &str,
    ) -> Result<(), String> {
        if let ParentSource::ImageBuilderImage(arn) = ParentSource::parse(parent) {
            if arn.account != managed::OWNER && arn.account != account && arn.region == region {
                return newest_parent(tx, account, region, &arn).map(|_| ()).map_err(|e| {
                    format!(
                        "{arn} is not an image of your account {account} nor one shared with it: {e}"
                    )
                });
            }
        }
        self.check_at_create(account, region, parent)
    }

    /// The checks of CreateImageRecipe and CreateContainerRecipe. They read the file system
    /// (to resolve symlinks) but never DNS: names are resolved when the build pulls.
    pub fn check_at_create(&self, account: &str, region: &str, parent: &str) -> Result<(), String> {
        match ParentSource::parse(parent) {
            ParentSource::ImageBuilderImage(arn) => Self::may_use_image(account, region, &arn),
            ParentSource::OciLayout { path, .. } | ParentSource::RootfsArchive { path, .. } => {
                self.allowed_path(&path).map(|_| ())
            }
            ParentSource::Registry { registry, .. } => self.check_registry(&registry, &[]),
            // An ami- id names only AMIs the caller may launch (`by_ami`); other forms fail at build.
            ParentSource::Ami(_) | ParentSource::Unsupported(_) => Ok(()),
        }
    }

    /// Where `path` may be read from: inside an import directory as written (after `.` and
    /// `..`, before touching the file system, so that refusals say nothing about other host
    /// paths) and again with symlinks resolved, and not inside Kiln's data directory.
    pub fn allowed_path(&self, path: &str) -> Result<AllowedPath, String> {
        if self.import_dirs.is_empty() {
            return Err(format!(
                "{path}: oci: and file:// parents are read only from directories the operator lists with `{IMPORT_FLAG}`, and this server lists none"
            ));
        }
        let outside = || {
            format!(
                "{path} is not inside a directory this server imports parents from (`{IMPORT_FLAG}`)"
            )
        };
        let lexical = normalize(Path::new(path)).ok_or_else(outside)?;
        if !self.named_dirs.iter().any(|d| lexical.starts_with(d)) {
            return Err(outside());
        }
        let in_data_dir = || {
            format!(
                "{path} is inside Kiln's data directory, which no parent image may name; use the image's ARN"
            )
        };
        if self.in_data_dir(&lexical)
            || (!self.named_data_dir.as_os_str().is_empty()
                && lexical.starts_with(&self.named_data_dir))
        {
            return Err(in_data_dir());
        }
        let real = std::fs::canonicalize(&lexical).map_err(|e| format!("{path}: {e}"))?;
        if self.in_data_dir(&real) {
            return Err(in_data_dir());
        }
        let import_dir = self
            .import_dirs
            .iter()
            .find(|d| real.starts_with(d))
            .ok_or_else(|| {
                format!(
                    "{path} leads (through a symbolic link) outside the directories this server imports parents from (`{IMPORT_FLAG}`)"
                )
            })?;
        Ok(AllowedPath {
            relative: real
                .strip_prefix(import_dir)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            import_dir: import_dir.clone(),
        })
    }

    /// Whether the real path of an opened parent is inside Kiln's data directory.
    pub fn in_data_dir(&self, real: &Path) -> bool {
        !self.data_dir.as_os_str().is_empty() && real.starts_with(&self.data_dir)
    }

    /// A registry on this machine or a private network only when the operator lists it.
    /// `resolved` are the addresses its name resolves to (none at create time: literal
    /// addresses and `localhost` names are checked then, names when the build pulls).
    pub fn check_registry(&self, registry: &str, resolved: &[IpAddr]) -> Result<(), String> {
        use kiln_toe::actions::net::address::{is_internal, is_local_name, literal_ip};
        if self
            .registries
            .iter()
            .any(|r| r.eq_ignore_ascii_case(registry))
        {
            return Ok(());
        }
        let host = registry
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(h, _)| format!("[{h}]"))
            .unwrap_or_else(|| registry.split(':').next().unwrap_or_default().to_string());
        let internal = is_local_name(&host)
            || literal_ip(&host).is_some_and(is_internal)
            || resolved.iter().copied().any(is_internal);
        if internal {
            return Err(format!(
                "the registry {registry} is on this machine or a private network (loopback, link-local or private address); Kiln pulls from such a registry only when the operator lists it with `kiln serve --allow-registry {registry}`"
            ));
        }
        Ok(())
    }
}

/// `path` made absolute-only and free of `.` and `..` without reading the file system;
/// `None` for a relative path.
fn normalize(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn image(account: &str, version: &str, status: ImageStatus) -> Image {
        let arn = Arn::new("us-east-1", account, ResourceKind::Image, "base")
            .with_version(version)
            .with_build(1);
        Image {
            status,
            recipe_arn: "r".into(),
            infrastructure_configuration_arn: "i".into(),
            build_id: format!("{account}{version}"),
            ..Image::blank(arn)
        }
    }

    #[test]
    fn deprecated_and_shared_images_are_parents_disabled_ones_are_not() {
        use kiln_domain::resources::sharing::SharingPolicy;
        let dir = tempfile::tempdir().unwrap();
        let database = kiln_store::Database::Sqlite(dir.path().join("kiln.db"));
        let store = kiln_store::Store::open(&database, kiln_store::sqlite::Sync::Normal).unwrap();
        let (owner, grantee) = ("111111111111", "222222222222");
        let any = Arn::parse(&format!(
            "arn:aws:imagebuilder:us-east-1:{owner}:image/base/x.x.x"
        ))
        .unwrap();
        store
            .write(|tx| -> crate::CoreResult<()> {
                tx.put(&image(owner, "1.0.0", ImageStatus::Available))?;
                tx.put(&image(owner, "1.1.0", ImageStatus::Deprecated))?;
                tx.put(&image(owner, "1.2.0", ImageStatus::Disabled))?;
                let newest = |tx: &mut dyn Txn, account: &str| {
                    newest_parent(tx, account, "us-east-1", &any).map(|i| i.arn.version)
                };
                // The deprecated 1.1.0 builds; the disabled 1.2.0 does not.
                assert_eq!(newest(tx, owner), Ok(Some("1.1.0".to_string())));
                // DistributeImage still takes AVAILABLE images only.
                let available = newest_available(tx, owner, "us-east-1", &any).unwrap();
                assert_eq!(available.arn.version.as_deref(), Some("1.0.0"));
                // Another account: nothing until the owner shares a build, then that build.
                let refused = newest(tx, grantee).unwrap_err();
                assert!(refused.contains("shares with account"), "{refused}");
                let shared = image(owner, "1.0.0", ImageStatus::Available).arn;
                let policy = SharingPolicy {
                    grantees: [grantee.to_string()].into(),
                };
                let caller = crate::Caller {
                    account_id: owner,
                    region: "us-east-1",
                    now_millis: 0,
                };
                crate::sharing::put_policy(tx, caller, &shared, "{}", &policy)?;
                assert_eq!(newest(tx, grantee), Ok(Some("1.0.0".to_string())));
                let rules = ParentRules::default();
                assert!(rules
                    .check_at_create_in(tx, grantee, "us-east-1", &any.to_string())
                    .is_ok());
                assert!(rules
                    .check_at_create_in(tx, "333333333333", "us-east-1", &any.to_string())
                    .unwrap_err()
                    .contains("nor one shared with it"));
                Ok(())
            })
            .unwrap()
            .unwrap();
    }

    struct Dirs {
        _root: tempfile::TempDir,
        import: PathBuf,
        outside: PathBuf,
        data: PathBuf,
    }

    /// `root/import` (listed), `root/outside`, and the data directory `root/data`, whose
    /// parent `root` is listed too (an operator may list a parent of it).
    fn dirs() -> (Dirs, ParentRules) {
        let root = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(root.path()).unwrap();
        let d = Dirs {
            import: base.join("import"),
            outside: base.join("outside"),
            data: base.join("data"),
            _root: root,
        };
        for p in [&d.import, &d.outside, &d.data.join("images")] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(d.import.join("rootfs.tar"), b"").unwrap();
        std::fs::write(d.outside.join("secret.tar"), b"").unwrap();
        symlink(d.outside.join("secret.tar"), d.import.join("escape.tar")).unwrap();
        symlink("rootfs.tar", d.import.join("inside.tar")).unwrap();
        let rules = ParentRules::new(&d.data, std::slice::from_ref(&d.import), &[]).unwrap();
        (d, rules)
    }

    #[test]
    fn paths_must_be_inside_an_import_dir() {
        let (d, rules) = dirs();
        let ok = rules
            .allowed_path(&format!("{}/rootfs.tar", d.import.display()))
            .unwrap();
        assert_eq!(ok.import_dir, d.import);
        assert_eq!(ok.relative, PathBuf::from("rootfs.tar"));
        let through_link = rules
            .allowed_path(&format!("{}/inside.tar", d.import.display()))
            .unwrap();
        assert_eq!(through_link.relative, PathBuf::from("rootfs.tar"));

        let refused = [
            (format!("{}/secret.tar", d.outside.display()), "not inside"),
            (
                format!("{}/../outside/secret.tar", d.import.display()),
                "not inside",
            ),
            (
                format!("{}/escape.tar", d.import.display()),
                "symbolic link",
            ),
            ("/root/secret.tar".to_string(), "not inside"),
            ("relative.tar".to_string(), "not inside"),
        ];
        for (path, want) in refused {
            let err = rules.allowed_path(&path).unwrap_err();
            assert!(err.contains(want), "{path}: {err}");
            assert!(err.contains("--import-dir"), "{path}: {err}");
        }
        // The refusal of a path outside says nothing about whether it exists.
        let missing = rules.allowed_path("/root/no-such.tar").unwrap_err();
        let present = rules
            .allowed_path(&format!("{}/secret.tar", d.outside.display()))
            .unwrap_err();
        assert_eq!(
            missing.replace("/root/no-such.tar", "P"),
            present.replace(&format!("{}/secret.tar", d.outside.display()), "P")
        );

        let none = ParentRules::new(&d.data, &[], &[]).unwrap();
        let err = none
            .allowed_path(&format!("{}/rootfs.tar", d.import.display()))
            .unwrap_err();
        assert!(err.contains("lists none"), "{err}");
    }

    #[test]
    fn the_data_directory_is_never_a_parent() {
        let (d, _) = dirs();
        let parent_of_data = d.data.parent().unwrap().to_path_buf();
        let rules = ParentRules::new(&d.data, &[parent_of_data], &[]).unwrap();
        for parent in [
            format!("oci:{}/images:kiln-0123", d.data.display()),
            format!("oci:{}/../data/images", d.import.display()),
        ] {
            let err = rules
                .check_at_create("123456789012", "us-east-1", &parent)
                .unwrap_err();
            assert!(err.contains("data directory"), "{parent}: {err}");
        }
        assert!(rules
            .check_at_create(
                "123456789012",
                "us-east-1",
                &format!("file://{}/rootfs.tar", d.import.display())
            )
            .is_ok());
    }

    #[test]
    fn images_of_other_accounts_are_refused() {
        let rules = ParentRules::default();
        let (me, region) = ("123456789012", "us-east-1");
        let ok = [
            "arn:aws:imagebuilder:us-east-1:123456789012:image/mine/1.0.0/1",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/mine/x.x.x",
            "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
            "ami-0123456789abcdef0",
        ];
        for parent in ok {
            assert!(
                rules.check_at_create(me, region, parent).is_ok(),
                "{parent}"
            );
        }
        let refused = [
            (
                "arn:aws:imagebuilder:us-east-1:111122223333:image/theirs/1.0.0/1",
                "not an image of your account",
            ),
            (
                "arn:aws:imagebuilder:us-east-1:111122223333:image/theirs/x.x.x",
                "not an image of your account",
            ),
            (
                "arn:aws:imagebuilder:eu-west-1:123456789012:image/mine/1.0.0",
                "this region",
            ),
        ];
        for (parent, want) in refused {
            let err = rules.check_at_create(me, region, parent).unwrap_err();
            assert!(err.contains(want), "{parent}: {err}");
        }
    }

    #[test]
    fn internal_registries_need_the_operators_listing() {
        let (d, _) = dirs();
        let rules = ParentRules::new(&d.data, &[], &["127.0.0.1:5000".to_string()]).unwrap();
        let (me, region) = ("123456789012", "us-east-1");
        for parent in [
            "127.0.0.1:5000/app:1",
            "quay.io/team/app:1",
            "registry.example.com:5000/a",
        ] {
            assert!(
                rules.check_at_create(me, region, parent).is_ok(),
                "{parent}"
            );
        }
        for parent in [
            "127.0.0.1:5001/app:1",
            "localhost:5000/app",
            "[::1]:5000/app",
            "169.254.169.254:80/latest/meta-data",
            "10.0.0.8:5000/app",
            "192.168.1.10/app",
        ] {
            let err = rules.check_at_create(me, region, parent).unwrap_err();
            assert!(err.contains("--allow-registry"), "{parent}: {err}");
        }
        // A name is checked on what it resolves to.
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        assert!(rules
            .check_registry("sneaky.example.com", &[loopback])
            .is_err());
        assert!(rules
            .check_registry("registry.example.com", &[public])
            .is_ok());
        assert!(rules.check_registry("127.0.0.1:5000", &[loopback]).is_ok());
        assert!(ParentRules::new(&d.data, &[], &["a/b".into()]).is_err());
    }
}
