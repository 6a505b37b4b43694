//! `cargo xtask dist` and `cargo xtask deb`: the files made from `kiln`'s clap definitions, and
//! the Debian package.
//!
//! The definitions live in the `kiln` binary, so both build it and run its hidden
//! `kiln dist-files DIR`, which writes the commented config file, the man pages and the shell
//! completions. `dist` copies the config file to `packaging/kiln.toml` (checked in; a test in
//! `kiln` fails when it is stale); the man pages and completions are made again for each
//! package, into `target/`. `deb` lays out the package's tree under `target/debian/root` and
//! builds it with `dpkg-deb --root-owner-group`, which every Debian has, so no packaging tool
//! needs installing.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The systemd unit and the config file, from the workspace root.
pub const UNIT: &str = "packaging/kiln.service";
pub const CONFIG: &str = "packaging/kiln.toml";

/// Tools some features of `kiln serve` run (see `Command::new` in kiln-image and
/// kiln-instance): installed by default with the package, but it works without them until a
/// build needs one.
const RECOMMENDS: &[&str] = &[
    // Parent images from registries, container image pushes (kiln-image fetch and export).
    "skopeo",
    // Disk image exports and imports: mkfs.ext4 -d, e2fsck, debugfs; qemu-img.
    "e2fsprogs",
    "qemu-utils",
    // Build instances with networking: veth pairs and the host firewall.
    "iproute2",
    "nftables",
];
/// Useful with Kiln, never needed by it.
const SUGGESTS: &[&str] = &[
    // The managed bases come from the Debian mirror without them (kiln-image's debian/); with
    // them, `--base-source auto` takes the busybox base from the host's static /bin/busybox (no
    // download) and ... see the README's "Managed base images".
    "busybox-static",
    "mmdebstrap",
    // A shared database for several Kiln processes (`--database postgres://...`).
    "postgresql",
    // A local registry to push container images to (`--ecr-registry`).
    "docker-registry",
];

/// Which build of `kiln` goes into the package.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    /// CI packages the debug build it already has rather than compile everything again.
    Debug,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Builds `kiln` and answers its path.
fn build_kiln(root: &Path, profile: Profile) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--package", "kiln"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    Ok(target_dir(root).join(profile.dir()).join("kiln"))
}

/// Runs `kiln dist-files` into a fresh `dir`.
fn dist_files(kiln: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run(Command::new(kiln).arg("dist-files").arg(dir))
}

/// `cargo xtask dist`: regenerates `packaging/kiln.toml`; the man pages and completions are
/// left in `target/dist` to look at.
pub fn dist(root: &Path) -> Result<()> {
    let kiln = build_kiln(root, Profile::Debug)?;
    let dir = target_dir(root).join("dist");
    dist_files(&kiln, &dir)?;
    let config = root.join(CONFIG);
    std::fs::copy(dir.join("kiln.toml"), &config)
        .with_context(|| format!("writing {}", config.display()))?;
    println!("wrote {}", config.display());
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

/// The package's version: the workspace's.
fn version(root: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).context("Cargo.toml")?;
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("version") {
                let value = value.trim_start().trim_start_matches('=').trim();
                return Ok(value.trim_matches('"').to_string());
            }
        }
    }
    bail!("no version in [workspace.package] of Cargo.toml")
}

/// What the binary links against, as dpkg-shlibdeps reads it from the ELF and the installed
/// packages' shlibs/symbols files (`libc6 (>= 2.34), libgcc-s1 (>= 4.2)`).
fn shlib_depends(tree: &Path) -> Result<String> {
    // dpkg-shlibdeps wants a source package around it; an empty stanza is enough.
    let scratch = tree
        .parent()
        .map(|p| p.join("shlibdeps"))
        .unwrap_or_else(|| PathBuf::from("shlibdeps"));
    write(
        &scratch.join("debian/control"),
        "Source: kiln\n\nPackage: kiln\nArchitecture: any\n",
        0o644,
    )?;
    let line = output(
        Command::new("dpkg-shlibdeps")
            .current_dir(&scratch)
            .arg("-O")
            .arg(format!("-e{}", tree.join("usr/bin/kiln").display())),
    )
    .context("dpkg-shlibdeps (package dpkg-dev)")?;
    line.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

/// `cargo xtask deb [--debug]`: `target/debian/kiln_<version>_<arch>.deb`.
pub fn deb(root: &Path, profile: Profile) -> Result<PathBuf> {
    let kiln = build_kiln(root, profile)?;
    let out = target_dir(root).join("debian");
    let files = out.join("files");
    let tree = out.join("root");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    dist_files(&kiln, &files)?;
    // The checked-in config file is the one shipped; it must be what the binary makes.
    let generated = std::fs::read_to_string(files.join("kiln.toml"))?;
    let checked_in = std::fs::read_to_string(root.join(CONFIG)).context(CONFIG)?;
    ensure!(
        generated == checked_in,
        "{CONFIG} is stale: run `cargo xtask dist` and commit it"
    );

    let bin = tree.join("usr/bin/kiln");
    copy(&kiln, &bin, 0o755)?;
    // Debug info stays in target/; the package carries symbols for backtraces only.
    run(Command::new("strip").arg("--strip-debug").arg(&bin)).context("strip (binutils)")?;
    copy(
        &root.join(UNIT),
        &tree.join("lib/systemd/system/kiln.service"),
        0o644,
    )?;
    // 0640: the file may hold secrets (s3-secret-access-key).
    copy(&root.join(CONFIG), &tree.join("etc/kiln/kiln.toml"), 0o640)?;
    let man1 = tree.join("usr/share/man/man1");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(files.join("man"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    for page in pages {
        let Some(name) = page.file_name() else {
            continue;
        };
        let to = man1.join(name);
        copy(&page, &to, 0o644)?;
        // -n: no name or time in the header, so the package is the same for the same sources.
        run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&to))?;
    }
    let completions = files.join("completions");
    copy(
        &completions.join("kiln.bash"),
        &tree.join("usr/share/bash-completion/completions/kiln"),
        0o644,
    )?;
    copy(
        &completions.join("_kiln"),
        &tree.join("usr/share/zsh/vendor-completions/_kiln"),
        0o644,
    )?;
    copy(
        &completions.join("kiln.fish"),
        &tree.join("usr/share/fish/vendor_completions.d/kiln.fish"),
        0o644,
    )?;
    let doc = tree.join("usr/share/doc/kiln");
    write(&doc.join("copyright"), COPYRIGHT, 0o644)?;
    write(&doc.join("README.Debian"), README_DEBIAN, 0o644)?;

    let version = version(root)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let depends = shlib_depends(&tree)?;
    let installed_kib = output(Command::new("du").args(["-s", "-k"]).arg(&tree))?
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .to_string();
    let control = format!(
        "Package: kiln\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: Kiln developers <kiln@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Recommends: {}\n\
         Suggests: {}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: self-hosted EC2 Image Builder\n \
         Kiln serves the EC2 Image Builder API (AWS SDKs and the aws CLI talk to it\n \
         with --endpoint-url) and builds the images on this machine, in isolated\n \
         build instances.\n \
         .\n \
         The kiln.service unit runs `kiln serve` with /etc/kiln/kiln.toml and keeps\n \
         its state in /var/lib/kiln.\n",
        RECOMMENDS.join(", "),
        SUGGESTS.join(", "),
    );
    let debian = tree.join("DEBIAN");
    write(&debian.join("control"), &control, 0o644)?;
    write(&debian.join("conffiles"), "/etc/kiln/kiln.toml\n", 0o644)?;
    write(&debian.join("postinst"), POSTINST, 0o755)?;
    write(&debian.join("prerm"), PRERM, 0o755)?;
    write(&debian.join("postrm"), POSTRM, 0o755)?;

    let deb = out.join(format!("kiln_{version}_{arch}.deb"));
    // xz makes the smaller package; on CI's 80 MB debug binary it took 61 s against gzip's 5 s,
    // so the debug package (CI's) is gzip'd.
    let compression = match profile {
        Profile::Release => "-Zxz",
        Profile::Debug => "-Zgzip",
    };
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", compression, "-z6", "--build"])
        .arg(&tree)
        .arg(&deb))?;
    println!("{}", deb.display());
    Ok(deb)
}

const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: kiln
Source: the Kiln repository

Files: *
Copyright: the Kiln developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
";

const README_DEBIAN: &str = "\
Kiln on Debian
==============

The package installs the kiln.service unit but neither enables nor starts it: read
/etc/kiln/kiln.toml first (every flag of `kiln serve`, with its help, env var and default),
then

    systemctl enable --now kiln
    journalctl -u kiln            # the log; `kiln listening on ...` once it serves

Settings: /etc/kiln/kiln.toml < the environment (`systemctl edit kiln`, Environment=KILN_...)
< the command line. State: /var/lib/kiln. On a loopback address the server makes its own key
pair in /var/lib/kiln/credentials; `systemctl reload kiln` re-reads the credentials file.
See kiln-serve(1).
";

/// Tells systemd about the unit (or its change); enabling it is the administrator's choice.
const POSTINST: &str = "\
#!/bin/sh
set -e
if [ \"$1\" = configure ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
exit 0
";

const POSTRM: &str = "\
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
exit 0
";

/// A removed package's server stops; its state in /var/lib/kiln stays, even on purge (it holds
/// the images).
const PRERM: &str = "\
#!/bin/sh
set -e
if [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then
    systemctl --system stop kiln.service >/dev/null || true
fi
exit 0
";
