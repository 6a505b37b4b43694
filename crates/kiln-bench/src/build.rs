//! `cargo run --release -p kiln-bench -- build [--rounds N] [--kiln PATH] [--only busybox|debian]
//! [--buildah-driver overlay|vfs]`: a whole image build, from StartImagePipelineExecution to an
//! AVAILABLE image, against buildah doing the same steps. Two references are measured, one after
//! the other on one data directory: the busybox one described here, then a Debian one
//! (`debian.rs`: a local .deb, 200 MB in 20,000 files, permissions, a deleted directory of the
//! parent). `--only` runs one of them alone.
//!
//! The busybox reference recipe is a busybox base and five components, each an AWSTOE document whose
//! `ExecuteBash` scripts are POSIX sh (busybox ash):
//!
//! 1. `files`: a few files under `/opt/app` (a config, an executable script, a version file);
//! 2. `loop`: a shell loop of 20 iterations, each writing a file;
//! 3. `big`: a 50 MB file of random bytes (`dd if=/dev/urandom bs=1048576 count=50`: busybox
//!    `head -c` reads in small blocks and takes 2.5x longer);
//! 4. `packages`: a package-list style edit (an apt `sources.list` written and `sed -i`-ed, a
//!    package list appended to, filtered and sorted);
//! 5. `test`: only a `test` phase, checking everything the others made.
//!
//! Components 1 to 4 have a `build` step and a `validate` step that checks the build step's
//! result.
//!
//! Kiln: the real server binary (`--kiln PATH`, default `target/release/kiln`, built with
//! `cargo build --release -p kiln` when missing) runs as
//! `kiln serve --listen 127.0.0.1:<free port> --data-dir <temporary directory>` and is stopped
//! with SIGTERM at the end. Over plain HTTP (rest-json, unsigned) the benchmark creates the five
//! components, a recipe on `arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x`, an
//! infrastructure configuration (t3.micro) and a pipeline with image tests enabled. One untimed
//! warm-up build lets Kiln create and cache the managed busybox base. A round is the time from
//! sending StartImagePipelineExecution to the first GetImage (polled every 20 ms) that answers
//! `AVAILABLE`; `FAILED` or `CANCELLED` stops the benchmark with the image's `state.reason`.
//!
//! buildah: a busybox root filesystem (`/bin/busybox` of the host, `--install -s`) is committed
//! once, untimed, to a local image in a private store (overlay driver unless
//! `--buildah-driver` says otherwise, in the temporary directory). A round is `buildah from`
//! that image, one `buildah run --isolation chroot -- sh -c '<script>'` per component (the
//! build and validate scripts of a component in one run; the test component last), `buildah
//! commit` to a local name and `buildah rm`; the committed image is removed between rounds,
//! untimed. One untimed warm-up round runs first here too.
//!
//! Rounds alternate (Kiln first in even rounds, buildah first in odd ones), because the machine
//! is shared and noisy. It prints every round, the medians with min and max, the ratio, and the
//! targets: Kiln <= 0.25x buildah, and Kiln under 1 s.
//!
//! Beside them it times the floor: the same scripts run with `chroot` in a copy of buildah's
//! busybox tree, with no build tool at all (`floor_round`), and prints how far Kiln and buildah
//! each are above it. From the worker's build logs it prints where Kiln's time goes, stage by
//! stage (`crate::stages`).

use crate::client::Connection;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The managed base image Kiln creates on first use.
const PARENT_IMAGE: &str = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x";
/// How often GetImage is polled while a build runs (the breakdown shows what it adds): under
/// the default rate limit of 100 reads per second and account.
const POLL: Duration = Duration::from_millis(12);
/// A build that takes longer than this is reported as stuck.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// The buildah image the rounds start from.
pub(crate) const BUILDAH_BASE: &str = "localhost/kiln-bench-busybox:latest";

/// One component of a reference recipe: the same scripts run in Kiln (as ExecuteBash steps)
/// and in buildah (as `buildah run -- <shell> -c`).
pub(crate) struct Component {
    pub(crate) name: &'static str,
    /// Script of the `build` phase, or of the `test` phase when `test_only`.
    pub(crate) script: &'static str,
    /// Script of the `validate` phase.
    pub(crate) validate: Option<&'static str>,
    pub(crate) test_only: bool,
}

/// A reference recipe, as both sides build it: Kiln from its managed `parent`, buildah from
/// `buildah_base` (a local image with the same root file system), running `components` in order.
pub(crate) struct Reference {
    /// The recipe's and pipeline's name; its components are `<name>-<component>` in Kiln, so
    /// that several references live on one server.
    pub(crate) name: &'static str,
    pub(crate) parent: &'static str,
    pub(crate) buildah_base: &'static str,
    /// What `buildah run` runs a component's script with (Kiln's ExecuteBash runs `bash`).
    pub(crate) shell: &'static str,
    pub(crate) components: &'static [Component],
}

/// The busybox reference recipe.
pub(crate) const BUSYBOX: Reference = Reference {
    name: "bench",
    parent: PARENT_IMAGE,
    buildah_base: BUILDAH_BASE,
    shell: "sh",
    components: &COMPONENTS,
};

const COMPONENTS: [Component; 5] = [
    Component {
        name: "files",
        script: r#"set -e
mkdir -p /opt/app/etc /opt/app/bin
echo 'name=app' > /opt/app/etc/app.conf
echo 'port=8080' >> /opt/app/etc/app.conf
printf '#!/bin/sh\necho hello\n' > /opt/app/bin/hello
chmod 755 /opt/app/bin/hello
echo 1.0.0 > /opt/app/VERSION"#,
        validate: Some(
            r#"set -e
test -x /opt/app/bin/hello
grep -q '^port=8080$' /opt/app/etc/app.conf"#,
        ),
        test_only: false,
    },
    Component {
        name: "loop",
        script: r#"set -e
mkdir -p /opt/app/data
i=0
while [ "$i" -lt 20 ]; do
  echo "record $i" > "/opt/app/data/record-$i.txt"
  i=$((i + 1))
done"#,
        validate: Some(
            r#"set -e
test -f /opt/app/data/record-0.txt
test -f /opt/app/data/record-19.txt"#,
        ),
        test_only: false,
    },
    Component {
        name: "big",
        script: r#"set -e
dd if=/dev/urandom of=/opt/big.bin bs=1048576 count=50"#,
        validate: Some(
            r#"set -e
test "$(wc -c < /opt/big.bin | tr -d ' ')" = 52428800"#,
        ),
        test_only: false,
    },
    Component {
        name: "packages",
        script: r#"set -e
mkdir -p /etc/apt
cat > /etc/apt/sources.list <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://security.debian.org/debian-security bookworm-security main
EOF
sed -i 's/ main$/ main contrib non-free/' /etc/apt/sources.list
printf 'openssl\nca-certificates\ncurl\nvim\n' >> /etc/packages.list
sed -i '/^vim$/d' /etc/packages.list
sort -o /etc/packages.list /etc/packages.list"#,
        validate: Some(
            r#"set -e
test "$(grep -c 'main contrib non-free$' /etc/apt/sources.list)" = 3
test "$(head -n 1 /etc/packages.list)" = ca-certificates"#,
        ),
        test_only: false,
    },
    Component {
        name: "test",
        script: r#"set -e
test "$(/opt/app/bin/hello)" = hello
test "$(cat /opt/app/VERSION)" = 1.0.0
test "$(ls /opt/app/data | wc -l | tr -d ' ')" = 20
test "$(wc -c < /opt/big.bin | tr -d ' ')" = 52428800
grep -q contrib /etc/apt/sources.list
! grep -q '^vim$' /etc/packages.list"#,
        validate: None,
        test_only: true,
    },
];

impl Component {
    /// The AWSTOE document, named `name`.
    fn document(&self, name: &str) -> String {
        let mut doc = format!(
            "name: {name}\ndescription: kiln-bench build reference component {}\nschemaVersion: 1.0\nphases:\n",
            self.name
        );
        let mut phase = |phase: &str, step: &str, script: &str| {
            let _ = write!(
                doc,
                "  - name: {phase}\n    steps:\n      - name: {step}\n        action: ExecuteBash\n        inputs:\n          commands:\n            - |\n"
            );
            for line in script.lines() {
                let _ = writeln!(doc, "              {line}");
            }
        };
        if self.test_only {
            phase("test", "Check", self.script);
        } else {
            phase("build", "Make", self.script);
            if let Some(validate) = self.validate {
                phase("validate", "Check", validate);
            }
        }
        doc
    }

    /// What one `buildah run` executes: the build script, then the validate script.
    fn buildah_script(&self) -> String {
        match self.validate {
            Some(v) => format!("{}\n{v}\n", self.script),
            None => format!("{}\n", self.script),
        }
    }
}

/// The flags of `build` and `container`.
pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) kiln: Option<PathBuf>,
    /// `build --only busybox|debian`: one reference alone (`None`: both).
    pub(crate) only: Option<String>,
    /// `build --buildah-driver overlay|vfs`: buildah's storage driver.
    pub(crate) driver: String,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
    parse_options(args, "build")
}

/// `--rounds N` and `--kiln PATH`, for the `command` subcommand.
pub(crate) fn parse_options(
    mut args: impl Iterator<Item = String>,
    command: &str,
) -> Result<Options> {
    let mut options = Options {
        rounds: 5,
        kiln: None,
        only: None,
        driver: "overlay".into(),
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => options.rounds = value.parse().context("--rounds")?,
            "--kiln" => options.kiln = Some(PathBuf::from(value)),
            "--only" if command == "build" => match value.as_str() {
                "busybox" | "debian" => options.only = Some(value),
                _ => bail!("--only takes busybox or debian, not {value}"),
            },
            "--buildah-driver" if command == "build" => options.driver = value,
            _ if command == "build" => bail!(
                "unknown flag {flag} (build takes --rounds N, --kiln PATH, --only busybox|debian \
                 and --buildah-driver overlay|vfs)"
            ),
            _ => bail!("unknown flag {flag} ({command} takes --rounds N and --kiln PATH)"),
        }
    }
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(options)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// The server binary: `--kiln`, or `target/release/kiln` of this workspace (built if missing).
fn kiln_binary(options: &Options) -> Result<PathBuf> {
    binary_at(options.kiln.as_deref())
}

/// The `kiln` binary: `path` (`--kiln`), or this workspace's release build (built when missing).
pub(crate) fn binary_at(path: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = path {
        if !path.is_file() {
            bail!("--kiln {}: no such file", path.display());
        }
        return Ok(path.to_path_buf());
    }
    let root = workspace_root();
    let path = root.join("target/release/kiln");
    if !path.is_file() {
        println!(
            "{} is missing: cargo build --release -p kiln",
            path.display()
        );
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "kiln"])
            .current_dir(&root)
            .status()
            .context("running cargo build --release -p kiln")?;
        if !status.success() {
            bail!("cargo build --release -p kiln failed: {status}");
        }
    }
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// buildah

pub(crate) struct Buildah {
    storage: Vec<String>,
    pub(crate) driver: String,
}

impl Buildah {
    pub(crate) fn new(dir: &Path) -> Buildah {
        Buildah::with_driver(dir, "overlay")
    }

    /// buildah on a private store in `dir` with the storage driver `driver`.
    pub(crate) fn with_driver(dir: &Path, driver: &str) -> Buildah {
        Buildah {
            driver: driver.to_string(),
            storage: vec![
                "--storage-driver".into(),
                driver.into(),
                "--root".into(),
                dir.join("root").display().to_string(),
                "--runroot".into(),
                dir.join("run").display().to_string(),
            ],
        }
    }

    /// Runs `buildah <storage> <args>` and answers its standard output, trimmed.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("buildah")
            .args(&self.storage)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running buildah {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "buildah {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Commits a busybox root filesystem to [`BUILDAH_BASE`] (untimed).
    pub(crate) fn make_base(&self, work: &Path) -> Result<()> {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .context("no /bin/busybox on this machine (apt-get install busybox-static)")?;
        let root = work.join("busybox-rootfs");
        for dir in [
            "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
        ] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        std::fs::copy(busybox, root.join("bin/busybox")).context("copying busybox")?;
        let status = Command::new("chroot")
            .arg(&root)
            .args(["/bin/busybox", "--install", "-s"])
            .status()
            .context("chroot ... busybox --install -s")?;
        if !status.success() {
            bail!("busybox --install -s in the rootfs failed: {status}");
        }
        let container = self.run(&["from", "scratch"])?;
        self.run(&["copy", &container, &root.display().to_string(), "/"])?;
        self.run(&["commit", "--quiet", &container, BUILDAH_BASE])?;
        self.run(&["rm", &container])?;
        // The tree stays for the floor rounds (see `floor_round`).
        Ok(())
    }

    /// One timed round of the busybox reference.
    fn round(&self) -> Result<BuildahRound> {
        self.round_of(&BUSYBOX)
    }

    /// One timed round of `reference`: from, one run per component, commit, rm. Removes the
    /// image afterwards (untimed). A round that buildah's runtime failed to start a command in
    /// (EBUSY sealing its memfd copy of itself: a transient kernel refusal on this machine, not
    /// the build's fault) is thrown away and run again, at most twice.
    pub(crate) fn round_of(&self, reference: &Reference) -> Result<BuildahRound> {
        let mut attempt = 1;
        loop {
            match self.try_round(reference) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("sealing memfd copy") => {
                    println!("  (buildah: \"sealing memfd copy: Device or resource busy\": round run again)");
                    let _ = self.run(&["rm", "--all"]);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn try_round(&self, reference: &Reference) -> Result<BuildahRound> {
        let started = Instant::now();
        let container = self.run(&["from", "--quiet", "--pull-never", reference.buildah_base])?;
        let from = started.elapsed();
        let runs_started = Instant::now();
        let mut steps = Vec::new();
        for component in reference.components {
            let script = component.buildah_script();
            let step_started = Instant::now();
            self.run(&[
                "run",
                "--isolation",
                "chroot",
                &container,
                "--",
                reference.shell,
                "-c",
                &script,
            ])
            .with_context(|| format!("buildah: step {}", component.name))?;
            steps.push(step_started.elapsed());
        }
        let runs = runs_started.elapsed();
        let commit_started = Instant::now();
        self.run(&["commit", "--quiet", &container, "kiln-bench-out"])?;
        let commit = commit_started.elapsed();
        self.run(&["rm", &container])?;
        let total = started.elapsed();
        self.run(&["rmi", "kiln-bench-out"])?;
        Ok(BuildahRound {
            total,
            from,
            runs,
            steps,
            commit,
        })
    }

    pub(crate) fn clean(&self) {
        let _ = self.run(&["rm", "--all"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
    }
}

/// The floor: the components' own work with no build tool at all. A copy of the busybox root
/// filesystem buildah's base was made from (copied untimed), and each component's scripts run
/// in it with `chroot DIR sh -c`, as root, with no namespaces, cgroups, layers or snapshot:
/// what any tool must at least spend on these scripts (busybox `wc -c` alone reads the 50 MB
/// file 4 KB at a time, twice).
fn floor_round(work: &Path, round: usize) -> Result<Duration> {
    let tree = work.join("busybox-rootfs");
    let dir = work.join(format!("floor-{round}"));
    let status = Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&dir)
        .status()
        .context("cp -a of the busybox tree")?;
    if !status.success() {
        bail!("cp -a {} {}: {status}", tree.display(), dir.display());
    }
    // The two devices the scripts use (buildah and Kiln give their instances a /dev).
    for (name, minor) in [("null", "3"), ("urandom", "9")] {
        let status = Command::new("mknod")
            .arg(dir.join("dev").join(name))
            .args(["-m", "666", "c", "1", minor])
            .status()
            .context("mknod")?;
        if !status.success() {
            bail!("mknod {name} in {}: {status}", dir.display());
        }
    }
    let started = Instant::now();
    for component in &COMPONENTS {
        let out = Command::new("chroot")
            .arg(&dir)
            .args(["/bin/sh", "-c", &component.buildah_script()])
            .stdin(Stdio::null())
            .output()
            .context("chroot ... sh -c")?;
        if !out.status.success() {
            bail!(
                "floor: component {} failed ({}): {}",
                component.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let elapsed = started.elapsed();
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(elapsed)
}

pub(crate) struct BuildahRound {
    pub(crate) total: Duration,
    pub(crate) from: Duration,
    pub(crate) runs: Duration,
    /// Each component's `buildah run`, in the reference's order.
    pub(crate) steps: Vec<Duration>,
    pub(crate) commit: Duration,
}

// ---------------------------------------------------------------------------------------------
// Kiln

/// The `kiln serve` process; SIGTERM and wait on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(
        binary: &Path,
        data: &Path,
        log: PathBuf,
        extra: &[String],
    ) -> Result<Server> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data)
            // The benchmark's client sends unsigned requests: it measures builds, not SigV4.
            .arg("--insecure-no-auth")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Server { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "kiln serve exited before answering ({status}); its log:\n{}",
                    server.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "kiln serve did not answer on {addr} within 30 s; its log:\n{}",
                    server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Prints the end of the server's log to stderr, and answers `error` in the context of `what`.
    pub(crate) fn explain(&self, error: anyhow::Error, what: &str) -> anyhow::Error {
        eprintln!(
            "--- end of the kiln serve log ---\n{}\n---",
            self.log_tail()
        );
        error.context(what.to_string())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("kiln serve did not stop within 30 s of SIGTERM: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn arn<'a>(value: &'a serde_json::Value, member: &str) -> Result<&'a str> {
    value[member]
        .as_str()
        .with_context(|| format!("the answer has no {member}: {value}"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) struct Kiln {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) addr: SocketAddr,
    pub(crate) pipeline: String,
    pub(crate) tokens: usize,
    /// The last build that reached AVAILABLE, for [`crate::stages`].
    pub(crate) last: Option<crate::stages::Round>,
}

/// How a Kiln build ended.
pub(crate) enum Outcome {
    /// The time to AVAILABLE, and the image's build version ARN.
    Available(Duration, String),
    /// StartImagePipelineExecution is not implemented by this server; its message.
    NotImplemented(String),
}

impl Kiln {
    /// Creates the busybox reference's components, recipe, infrastructure configuration and
    /// pipeline.
    pub(crate) fn setup(addr: SocketAddr) -> Result<Kiln> {
        Kiln::setup_reference(addr, &BUSYBOX)
    }

    /// Creates the components, recipe, infrastructure configuration and pipeline of `reference`.
    pub(crate) fn setup_reference(addr: SocketAddr, reference: &Reference) -> Result<Kiln> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let pipeline = runtime.block_on(async {
            let mut conn = Connection::open(addr).await?;
            let mut components = Vec::new();
            for (i, component) in reference.components.iter().enumerate() {
                let name = format!("{}-{}", reference.name, component.name);
                let body = serde_json::json!({
                    "name": name,
                    "semanticVersion": "1.0.0",
                    "platform": "Linux",
                    "data": component.document(&name),
                    "clientToken": format!("{}-component-{i}", reference.name),
                });
                let answer = conn
                    .call("PUT", "/CreateComponent", &body.to_string())
                    .await
                    .with_context(|| format!("creating component {}", component.name))?;
                components.push(
                    serde_json::json!({"componentArn": arn(&answer, "componentBuildVersionArn")?}),
                );
            }
            let recipe_name = format!("{}-build", reference.name);
            let body = serde_json::json!({
                "name": recipe_name,
                "semanticVersion": "1.0.0",
                "components": components,
                "parentImage": reference.parent,
                "clientToken": format!("{}-recipe", reference.name),
            });
            let recipe = conn
                .call("PUT", "/CreateImageRecipe", &body.to_string())
                .await?;
            let tests = serde_json::json!({"imageTestsEnabled": true, "timeoutMinutes": 60});
            pipeline_on(
                &mut conn,
                &recipe_name,
                ("imageRecipeArn", arn(&recipe, "imageRecipeArn")?),
                Some(tests),
            )
            .await
        })?;
        Ok(Kiln {
            runtime,
            addr,
            pipeline,
            tokens: 0,
            last: None,
        })
    }

    /// One build: StartImagePipelineExecution, then GetImage every [`POLL`] until AVAILABLE.
    pub(crate) fn build(&mut self) -> Result<Outcome> {
        self.tokens += 1;
        // Unique in this process, not per pipeline: a second server on the same data directory
        // remembers the tokens of the first one's pipelines.
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = serde_json::json!({
            "imagePipelineArn": self.pipeline,
            "clientToken": format!("run-{}-{run}", std::process::id()),
        })
        .to_string();
        let addr = self.addr;
        let last = &mut self.last;
        self.runtime.block_on(async move {
            let mut conn = Connection::open(addr).await?;
            let started = Instant::now();
            let sent = std::time::SystemTime::now();
            let answer = match conn
                .call("PUT", "/StartImagePipelineExecution", &body)
                .await
            {
                Ok(answer) => answer,
                Err(e) if e.to_string().contains("not implemented") => {
                    return Ok(Outcome::NotImplemented(e.to_string()));
                }
                Err(e) => return Err(e.context("StartImagePipelineExecution")),
            };
            let image = arn(&answer, "imageBuildVersionArn")?.to_string();
            let path = format!("/GetImage?imageBuildVersionArn={}", percent_encode(&image));
            loop {
                let answer = conn.call("GET", &path, "").await?;
                let state = &answer["image"]["state"];
                let status = state["status"].as_str().unwrap_or("").to_string();
                match status.as_str() {
                    "AVAILABLE" => {
                        let elapsed = started.elapsed();
                        *last = Some(crate::stages::Round {
                            image_arn: image.clone(),
                            sent,
                            seen: std::time::SystemTime::now(),
                        });
                        return Ok(Outcome::Available(elapsed, image));
                    }
                    "FAILED" | "CANCELLED" => bail!(
                        "Kiln build {image} ended {status}: {}",
                        state["reason"].as_str().unwrap_or("(no reason given)")
                    ),
                    _ => {}
                }
                if started.elapsed() > BUILD_TIMEOUT {
                    bail!(
                        "Kiln build {image} is still {status} after {} s",
                        BUILD_TIMEOUT.as_secs()
                    );
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }
}

/// An infrastructure configuration (t3.micro) and a pipeline named `name` on `recipe` (its
/// member and ARN); answers the pipeline's ARN.
pub(crate) async fn pipeline_on(
    conn: &mut Connection,
    name: &str,
    recipe: (&str, &str),
    tests: Option<serde_json::Value>,
) -> Result<String> {
    let body = serde_json::json!({
        "name": name,
        "instanceTypes": ["t3.micro"],
        "instanceProfileName": "kiln",
        "clientToken": format!("infrastructure-{name}"),
    });
    let infra = conn
        .call(
            "PUT",
            "/CreateInfrastructureConfiguration",
            &body.to_string(),
        )
        .await?;
    let mut body = serde_json::json!({
        "name": name,
        recipe.0: recipe.1,
        "infrastructureConfigurationArn": arn(&infra, "infrastructureConfigurationArn")?,
        "clientToken": format!("pipeline-{name}"),
    });
    if let Some(tests) = tests {
        body["imageTestsConfiguration"] = tests;
    }
    let pipeline = conn
        .call("PUT", "/CreateImagePipeline", &body.to_string())
        .await?;
    Ok(arn(&pipeline, "imagePipelineArn")?.to_string())
}

// ---------------------------------------------------------------------------------------------

pub(crate) fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[sorted.len() - 1])
}

/// The median of each component's `buildah run` over `rounds`, on one line.
pub(crate) fn print_per_component(components: &[Component], rounds: &[BuildahRound]) {
    let steps: Vec<String> = components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let times: Vec<f64> = rounds.iter().map(|r| r.steps[i].as_secs_f64()).collect();
            format!("{} {:.2}", c.name, stats(&times).0)
        })
        .collect();
    println!(
        "  buildah run per component (median s): {}",
        steps.join(", ")
    );
}

pub(crate) fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let with_buildah = have("buildah");
    if !with_buildah {
        println!(
            "buildah is not installed (apt-get install buildah): measuring Kiln alone, without \
             its baseline"
        );
    }
    let mut work = tempfile::tempdir()?;
    // KILN_BENCH_KEEP=1 keeps the work directory (the server's build logs) for a look after.
    work.disable_cleanup(std::env::var_os("KILN_BENCH_KEEP").is_some());
    let binary = kiln_binary(&options)?;
    println!(
        "kiln-bench build: {} rounds, Kiln = {}, buildah storage driver {}, work directory {}",
        options.rounds,
        binary.display(),
        options.driver,
        work.path().display()
    );

    let buildah =
        with_buildah.then(|| Buildah::with_driver(&work.path().join("buildah"), &options.driver));
    let result = (|| {
        if options.only.as_deref() != Some("debian") {
            run(&options, &binary, work.path(), buildah.as_ref())?;
        }
        // The Debian reference (debian.rs), after the busybox one, on the same data directory.
        if options.only.as_deref() != Some("busybox") {
            crate::debian::run(&options, &binary, work.path(), buildah.as_ref())?;
        }
        Ok(())
    })();
    if let Some(buildah) = &buildah {
        buildah.clean();
    }
    result
}

fn run(options: &Options, binary: &Path, work: &Path, buildah: Option<&Buildah>) -> Result<()> {
    if let Some(buildah) = buildah {
        buildah.make_base(work)?;
    }

    let data = work.join("kiln-data");
    std::fs::create_dir_all(&data)?;
    let server = Server::start(binary, &data, work.join("kiln.log"), &[])?;
    println!("kiln serve on http://{}", server.addr);
    let mut kiln =
        Kiln::setup(server.addr).map_err(|e| server.explain(e, "setting up the pipeline"))?;

    // Warm-ups, untimed: Kiln creates and caches its busybox base on the first build.
    let warm = Instant::now();
    let not_implemented = match kiln.build() {
        Ok(Outcome::Available(..)) => {
            println!(
                "warm-up: Kiln {:.2} s (includes creating the busybox base)",
                warm.elapsed().as_secs_f64()
            );
            None
        }
        Ok(Outcome::NotImplemented(message)) => {
            println!();
            println!("KILN NOT MEASURED: this server does not implement StartImagePipelineExecution yet:");
            println!("  {message}");
            println!("Only the buildah baseline is measured.");
            println!();
            Some(message)
        }
        Err(e) => return Err(server.explain(e, "the Kiln warm-up build")),
    };
    if let Some(buildah) = buildah {
        let warm = buildah.round()?;
        println!("warm-up: buildah {:.2} s", warm.total.as_secs_f64());
    }

    let mut kiln_times = Vec::new();
    // Each timed round, whose build log gives the per-stage breakdown.
    let mut kiln_rounds: Vec<crate::stages::Round> = Vec::new();
    let mut floor_times: Vec<f64> = Vec::new();
    let mut buildah_rounds = Vec::new();
    for round in 0..options.rounds {
        let mut measure_kiln = || -> Result<()> {
            if not_implemented.is_some() {
                return Ok(());
            }
            match kiln
                .build()
                .map_err(|e| server.explain(e, &format!("Kiln, round {}", round + 1)))?
            {
                Outcome::Available(d, image) => {
                    kiln_times.push(d.as_secs_f64());
                    kiln_rounds.extend(kiln.last.clone().filter(|r| r.image_arn == image));
                }
                Outcome::NotImplemented(m) => {
                    bail!("StartImagePipelineExecution stopped working: {m}")
                }
            }
            Ok(())
        };
        let Some(buildah) = buildah else {
            measure_kiln()?;
            if let Some(k) = kiln_times.get(round) {
                println!("  round {}: Kiln {k:.2} s", round + 1);
            }
            continue;
        };
        if round % 2 == 0 {
            measure_kiln()?;
            buildah_rounds.push(buildah.round()?);
            floor_times.push(floor_round(work, round)?.as_secs_f64());
        } else {
            floor_times.push(floor_round(work, round)?.as_secs_f64());
            buildah_rounds.push(buildah.round()?);
            measure_kiln()?;
        }
        let b = &buildah_rounds[round];
        println!(
            "  round {}: {}buildah {:.2} s (from {:.2}, 5 runs {:.2}, commit {:.2}), scripts alone {:.2} s",
            round + 1,
            kiln_times
                .get(round)
                .map(|k| format!("Kiln {k:.2} s, "))
                .unwrap_or_default(),
            b.total.as_secs_f64(),
            b.from.as_secs_f64(),
            b.runs.as_secs_f64(),
            b.commit.as_secs_f64(),
            floor_times[round],
        );
    }
    drop(server);
    crate::stages::print_median(
        "Kiln, where a build's time goes",
        &data,
        &kiln_rounds,
        || stats(&kiln_times).0 * 1000.0,
    )?;
    let verdict = |ok: bool| if ok { "OK" } else { "MISSED" };
    if buildah.is_none() {
        let message = not_implemented
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        anyhow::ensure!(!kiln_times.is_empty(), "Kiln was not measured{message}");
        let (k, k_lo, k_hi) = stats(&kiln_times);
        println!();
        println!(
            "Kiln (StartImagePipelineExecution to AVAILABLE):        {k:.2} s (min {k_lo:.2}, max {k_hi:.2})"
        );
        println!("Kiln / buildah: not measured (no buildah)");
        println!(
            "Kiln wall time: {k:.2} s (target < 1 s) {}",
            verdict(k < 1.0)
        );
        return Ok(());
    }

    let totals: Vec<f64> = buildah_rounds
        .iter()
        .map(|r| r.total.as_secs_f64())
        .collect();
    let part = |f: fn(&BuildahRound) -> Duration| {
        stats(
            &buildah_rounds
                .iter()
                .map(|r| f(r).as_secs_f64())
                .collect::<Vec<_>>(),
        )
        .0
    };
    let (b, b_lo, b_hi) = stats(&totals);
    println!();
    println!(
        "buildah (from, 5 x run --isolation chroot, commit, rm): {b:.2} s (min {b_lo:.2}, max {b_hi:.2}; median from {:.2}, runs {:.2}, commit {:.2})",
        part(|r| r.from),
        part(|r| r.runs),
        part(|r| r.commit),
    );
    print_per_component(&COMPONENTS, &buildah_rounds);
    match not_implemented {
        None => {
            let (k, k_lo, k_hi) = stats(&kiln_times);
            println!(
                "Kiln (StartImagePipelineExecution to AVAILABLE):        {k:.2} s (min {k_lo:.2}, max {k_hi:.2})"
            );
            let (f, f_lo, f_hi) = stats(&floor_times);
            println!(
                "the scripts alone (chroot, no build tool):              {f:.2} s (min {f_lo:.2}, max {f_hi:.2})"
            );
            println!(
                "Kiln / buildah: {:.2}x (target <= 0.25x) {}",
                k / b,
                verdict(k / b <= 0.25)
            );
            println!(
                "Kiln wall time: {k:.2} s (target < 1 s) {}",
                verdict(k < 1.0)
            );
            println!(
                "beyond the scripts' own time: Kiln {:.2} s, buildah {:.2} s: {:.2}x; the scripts alone are {:.2}x buildah, the least any tool could reach",
                k - f,
                b - f,
                (k - f) / (b - f),
                f / b
            );
            Ok(())
        }
        Some(message) => {
            println!("Kiln: not measured (target <= 0.25x buildah and < 1 s): StartImagePipelineExecution is not implemented");
            bail!("Kiln was not measured: {message}")
        }
    }
}
