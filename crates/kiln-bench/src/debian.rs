//! The Debian reference of `kiln-bench build` (`--only debian` runs it alone): a whole image
//! build on the managed `debian-12-minimal-x86` parent, from StartImagePipelineExecution to an
//! AVAILABLE image, against buildah doing the same steps on the same root file system.
//!
//! The recipe has four components, each an AWSTOE document whose `ExecuteBash` scripts run in
//! bash (buildah runs the same scripts with `bash -c`):
//!
//! 1. `deb`: builds a tiny package inside the instance (`dpkg-deb --build` of a `DEBIAN/control`
//!    and a file under `/usr/share/kiln-bench`) and installs it with `dpkg -i`: a local .deb, as
//!    Kiln's instances have no network; validate: `dpkg -s` says it is installed;
//! 2. `data`: 200 MB of random bytes across 20,000 files of 10,000 bytes under `/opt/data`, in
//!    one process (`head -c | split`: a shell loop of 20,000 commands would measure fork, not
//!    the build tool); validate counts them;
//! 3. `perms`: `chmod -R` and `chown -R` of `/opt/data` (every file's mode and owner change)
//!    and `rm -rf /usr/share/doc`, a directory of the parent (whiteouts in the new layer);
//! 4. `test`: only a `test` phase, which reads everything back: the package installed, 20,000
//!    files of 200,000,000 bytes in all (every file read), their modes and owner, and the
//!    deleted directory absent.
//!
//! Kiln: the real server, as for the busybox reference (`build.rs`), on the same data
//! directory, with the pipeline's image tests enabled. The untimed warm-up build lets Kiln make
//! its `debian-12-minimal-x86` base (mmdebstrap from deb.debian.org, once).
//!
//! buildah: the same root file system, made as Kiln makes it (`mmdebstrap --variant=minbase
//! --mode=root --format=tar bookworm` from deb.debian.org with Kiln's `SOURCE_DATE_EPOCH`), is
//! added to an empty container and committed once, untimed. A round is `buildah from`, one
//! `buildah run --isolation chroot` per component (build and validate scripts in one run, the
//! test last), `buildah commit` and `buildah rm`, as for busybox; the image is removed between
//! rounds, untimed. The storage driver is `--buildah-driver` (overlay unless told; vfs also
//! works here) and is printed.
//!
//! Rounds alternate (Kiln first in even rounds). The target: Kiln <= 0.3x buildah. Without
//! mmdebstrap or a reachable mirror the Debian reference is reported as not measured and the
//! busybox reference's figures stand.

use crate::build::{
    have, stats, Buildah, BuildahRound, Component, Kiln, Options, Outcome, Reference, Server,
};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The managed base image Kiln makes on first use.
const PARENT_IMAGE: &str = "arn:aws:imagebuilder:us-east-1:aws:image/debian-12-minimal-x86/x.x.x";
/// The buildah image the rounds start from.
const BUILDAH_BASE: &str = "localhost/kiln-bench-debian:latest";
/// The suite of Kiln's `debian-12-minimal-x86`.
const SUITE: &str = "bookworm";
/// Kiln / buildah must be at most this.
const TARGET: f64 = 0.3;

const COMPONENTS: [Component; 4] = [
    Component {
        name: "deb",
        script: r#"set -e
pkg=/tmp/kiln-bench-hello
rm -rf "$pkg"
mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/kiln-bench"
cat > "$pkg/DEBIAN/control" <<'EOF'
Package: kiln-bench-hello
Version: 1.0.0
Architecture: all
Maintainer: kiln-bench <bench@example.invalid>
Description: kiln-bench Debian reference package
 One file under /usr/share/kiln-bench.
EOF
echo 'hello from kiln-bench' > "$pkg/usr/share/kiln-bench/hello.txt"
dpkg-deb --root-owner-group --build "$pkg" /tmp/kiln-bench-hello.deb
dpkg -i /tmp/kiln-bench-hello.deb
rm -rf "$pkg" /tmp/kiln-bench-hello.deb"#,
        validate: Some(
            r#"set -e
dpkg -s kiln-bench-hello | grep -qx 'Status: install ok installed'
test "$(cat /usr/share/kiln-bench/hello.txt)" = 'hello from kiln-bench'"#,
        ),
        test_only: false,
    },
    Component {
        name: "data",
        script: r#"set -e
mkdir -p /opt/data
head -c 200000000 /dev/urandom | split -b 10000 -a 5 -d - /opt/data/f"#,
        validate: Some(
            r#"set -e
test "$(find /opt/data -type f | wc -l)" = 20000"#,
        ),
        test_only: false,
    },
    Component {
        name: "perms",
        script: r#"set -e
chmod -R u=rwX,g=rX,o= /opt/data
chown -R daemon:daemon /opt/data
rm -rf /usr/share/doc"#,
        validate: Some(
            r#"set -e
test "$(stat -c %a:%U:%G /opt/data/f19999)" = 640:daemon:daemon
test ! -e /usr/share/doc"#,
        ),
        test_only: false,
    },
    Component {
        name: "test",
        script: r#"set -e
dpkg -s kiln-bench-hello | grep -qx 'Status: install ok installed'
test "$(cat /usr/share/kiln-bench/hello.txt)" = 'hello from kiln-bench'
test "$(find /opt/data -type f | wc -l)" = 20000
test "$(find /opt/data -type f -exec cat {} + | wc -c)" = 200000000
test "$(find /opt/data -type f ! -perm 0640 | wc -l)" = 0
test "$(find /opt/data ! -user daemon | wc -l)" = 0
test "$(stat -c %a /opt/data)" = 750
test ! -e /usr/share/doc"#,
        validate: None,
        test_only: true,
    },
];

/// The Debian reference recipe.
const DEBIAN: Reference = Reference {
    name: "bench-debian",
    parent: PARENT_IMAGE,
    buildah_base: BUILDAH_BASE,
    shell: "bash",
    components: &COMPONENTS,
};

/// Commits the Debian minbase root file system, made as Kiln makes its base, to
/// [`BUILDAH_BASE`] (untimed).
fn make_base(buildah: &Buildah, work: &Path) -> Result<()> {
    let tar = work.join("debian-minbase.tar");
    let out = Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--mode=root",
            "--format=tar",
            "--",
            SUITE,
        ])
        .arg(&tar)
        .arg(kiln_image::DEFAULT_DEBIAN_MIRROR)
        .env("SOURCE_DATE_EPOCH", kiln_image::DEBIAN_EPOCH.to_string())
        .stdin(Stdio::null())
        .output()
        .context("running mmdebstrap")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        bail!(
            "mmdebstrap {SUITE} from {} failed ({}): {}",
            kiln_image::DEFAULT_DEBIAN_MIRROR,
            out.status,
            lines[lines.len().saturating_sub(10)..].join("\n")
        );
    }
    let container = buildah.run(&["from", "scratch"])?;
    // `buildah add` unpacks a local tar archive at the destination.
    buildah.run(&["add", &container, &tar.display().to_string(), "/"])?;
    buildah.run(&["commit", "--quiet", &container, BUILDAH_BASE])?;
    buildah.run(&["rm", &container])?;
    std::fs::remove_file(&tar)?;
    Ok(())
}

/// Says that the Debian reference is not measured and why; an error when it was to run alone.
fn not_measured(options: &Options, why: &str) -> Result<Option<Vec<String>>> {
    println!();
    println!("DEBIAN REFERENCE NOT MEASURED: {why}");
    if options.only.is_some() {
        bail!("the Debian reference was not measured: {why}");
    }
    println!("(the busybox reference's figures above stand)");
    Ok(None)
}

/// Measures the Debian reference with a server on `<work>/kiln-data`. Answers the image ARN of
/// every timed Kiln round (their build logs give the per-stage breakdown), or `None` when the
/// Debian base could not be made.
pub(crate) fn run(
    options: &Options,
    binary: &Path,
    work: &Path,
    buildah: Option<&Buildah>,
) -> Result<Option<Vec<String>>> {
    println!();
    println!(
        "Debian reference: debian-12-minimal-x86 parent; components deb (dpkg -i of a local .deb), \
         data (200 MB in 20,000 files), perms (chmod/chown -R, rm -rf /usr/share/doc), test"
    );
    if !have("mmdebstrap") {
        return not_measured(
            options,
            "mmdebstrap is not installed (apt-get install mmdebstrap): neither Kiln nor this \
             benchmark can make the Debian base",
        );
    }
    if let Some(buildah) = buildah {
        let started = Instant::now();
        if let Err(e) = make_base(buildah, work) {
            return not_measured(options, &format!("the Debian base: {e:#}"));
        }
        println!(
            "buildah base: mmdebstrap minbase {SUITE}, {:.1} s (untimed); buildah storage driver: {}",
            started.elapsed().as_secs_f64(),
            buildah.driver
        );
    }

    let data = work.join("kiln-data");
    std::fs::create_dir_all(&data)?;
    let server = Server::start(binary, &data, work.join("kiln-debian.log"), &[])?;
    println!(
        "kiln serve on http://{} (data {})",
        server.addr,
        data.display()
    );
    let mut kiln = Kiln::setup_reference(server.addr, &DEBIAN)
        .map_err(|e| server.explain(e, "setting up the Debian pipeline"))?;

    // Warm-ups, untimed: Kiln makes and caches its Debian base on the first build.
    let warm = Instant::now();
    match kiln.build() {
        Ok(Outcome::Available(..)) => println!(
            "warm-up: Kiln {:.2} s (includes making the debian-12-minimal-x86 base)",
            warm.elapsed().as_secs_f64()
        ),
        Ok(Outcome::NotImplemented(message)) => {
            return not_measured(
                options,
                &format!("StartImagePipelineExecution is not implemented: {message}"),
            )
        }
        Err(e) if format!("{e:#}").contains("making the managed image") => {
            return not_measured(options, &format!("Kiln could not make its base: {e:#}"));
        }
        Err(e) => return Err(server.explain(e, "the Kiln warm-up build (Debian)")),
    }
    if let Some(buildah) = buildah {
        let warm = buildah.round_of(&DEBIAN)?;
        println!("warm-up: buildah {:.2} s", warm.total.as_secs_f64());
    }

    let mut kiln_times = Vec::new();
    let mut images = Vec::new();
    let mut kiln_rounds: Vec<crate::stages::Round> = Vec::new();
    let mut buildah_rounds: Vec<BuildahRound> = Vec::new();
    for round in 0..options.rounds {
        let mut measure_kiln = || -> Result<()> {
            match kiln
                .build()
                .map_err(|e| server.explain(e, &format!("Kiln, Debian round {}", round + 1)))?
            {
                Outcome::Available(d, image) => {
                    kiln_times.push(d.as_secs_f64());
                    kiln_rounds.extend(kiln.last.clone().filter(|r| r.image_arn == image));
                    images.push(image);
                    Ok(())
                }
                Outcome::NotImplemented(m) => {
                    bail!("StartImagePipelineExecution stopped working: {m}")
                }
            }
        };
        match buildah {
            None => measure_kiln()?,
            Some(buildah) if round % 2 == 0 => {
                measure_kiln()?;
                buildah_rounds.push(buildah.round_of(&DEBIAN)?);
            }
            Some(buildah) => {
                buildah_rounds.push(buildah.round_of(&DEBIAN)?);
                measure_kiln()?;
            }
        }
        let buildah_part = buildah_rounds
            .get(round)
            .map(|b| {
                format!(
                    ", buildah {:.2} s (from {:.2}, runs {}, commit {:.2})",
                    b.total.as_secs_f64(),
                    b.from.as_secs_f64(),
                    per_component(b),
                    b.commit.as_secs_f64()
                )
            })
            .unwrap_or_default();
        println!(
            "  round {}: Kiln {:.2} s{buildah_part}",
            round + 1,
            kiln_times[round]
        );
    }
    drop(server);

    let (k, k_lo, k_hi) = stats(&kiln_times);
    println!();
    if buildah_rounds.is_empty() {
        println!("Debian: Kiln (StartImagePipelineExecution to AVAILABLE): {k:.2} s (min {k_lo:.2}, max {k_hi:.2})");
        println!("Debian: Kiln / buildah: not measured (no buildah; target <= {TARGET}x)");
    } else {
        let totals: Vec<f64> = buildah_rounds
            .iter()
            .map(|r| r.total.as_secs_f64())
            .collect();
        let (b, b_lo, b_hi) = stats(&totals);
        let part = |f: fn(&BuildahRound) -> f64| {
            stats(&buildah_rounds.iter().map(f).collect::<Vec<_>>()).0
        };
        println!(
            "Debian: buildah ({} driver; from, 4 x run --isolation chroot, commit, rm): {b:.2} s (min {b_lo:.2}, max {b_hi:.2}; median from {:.2}, runs {:.2}, commit {:.2})",
            buildah.map(|b| b.driver.as_str()).unwrap_or_default(),
            part(|r| r.from.as_secs_f64()),
            part(|r| r.runs.as_secs_f64()),
            part(|r| r.commit.as_secs_f64()),
        );
        crate::build::print_per_component(&COMPONENTS, &buildah_rounds);
        println!("Debian: Kiln (StartImagePipelineExecution to AVAILABLE): {k:.2} s (min {k_lo:.2}, max {k_hi:.2})");
        println!(
            "Debian: Kiln / buildah: {:.2}x (target <= {TARGET}x) {}",
            k / b,
            if k / b <= TARGET { "OK" } else { "MISSED" }
        );
    }
    println!("Debian: Kiln wall time: {k:.2} s");
    crate::stages::print_median(
        "Debian: Kiln, where a build's time goes",
        &data,
        &kiln_rounds,
        || k * 1000.0,
    )?;
    Ok(Some(images))
}

/// A round's `buildah run` times, as `deb 0.12 + data 1.50 + ...`.
fn per_component(round: &BuildahRound) -> String {
    COMPONENTS
        .iter()
        .zip(&round.steps)
        .map(|(c, d)| format!("{} {:.2}", c.name, d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" + ")
}
