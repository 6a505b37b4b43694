//! `cargo run --release -p kiln-bench -- container [--rounds N] [--kiln PATH]`: a container
//! pipeline from StartImagePipelineExecution to AVAILABLE with its image pushed to a registry,
//! against `buildah bud` + `buildah push` of the same Dockerfile; and the push alone of a 170 MB
//! image against `skopeo copy` of the same image.
//!
//! The Dockerfile ([`DOCKERFILE`]) has five `RUN` steps (files, a shell loop, a 50 MB file of
//! random bytes, a package-list style edit, checks), `ENV`, `WORKDIR` and `ENTRYPOINT`, on the
//! busybox base: Kiln's managed `busybox-x86` base for Kiln, a busybox root file system
//! committed once to buildah's store (overlay driver, `--isolation chroot`: the fastest that
//! works on these machines) for buildah. Both push to one Debian `docker-registry` on 127.0.0.1
//! (plain HTTP), each round to a new tag.
//!
//! Kiln: the real `kiln serve` (`--ecr-registry` naming that registry for every region) with a
//! container recipe whose `targetRepository` is `kiln-bench`; one untimed warm-up build. buildah:
//! one untimed warm-up round. Rounds alternate which goes first. Target: Kiln <= 0.5x buildah.
//!
//! The push alone: an image of the busybox base plus a 170 MB layer of random bytes (zstd, as
//! Kiln stores layers) in an image store of this process. Kiln's push is
//! `ImageStore::push_registry_tags` (what a build's distribution uses: skopeo from the store's
//! own layout, the digest checked); the baseline is `skopeo copy`
//! from an OCI layout of the same image, exported once, untimed. Each push goes to a registry
//! started for it (skopeo would otherwise mount blobs it pushed before instead of sending
//! them), so every blob is sent. Target: Kiln <= 1.0x skopeo.

use crate::build::{
    arn, binary_at, have, parse_options, pipeline_on, stats, Buildah, Kiln, Options, Outcome,
    Server, BUILDAH_BASE,
};
use crate::client::Connection;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `{{{ imagebuilder:parentImage }}}` is replaced by each side's base.
const DOCKERFILE: &str = r#"FROM {{{ imagebuilder:parentImage }}}
ENV APP_HOME=/opt/app MODE=fast
WORKDIR /opt/app
RUN mkdir -p bin && printf 'mode=%s\n' "$MODE" > config && printf '#!/bin/sh\necho ready\n' > bin/run && chmod 755 bin/run && echo 1.0.0 > VERSION
RUN i=0; while [ $i -lt 20 ]; do echo "line $i" > "loop-$i.txt"; i=$((i+1)); done
RUN dd if=/dev/urandom of=big.bin bs=1048576 count=50 2>/dev/null
RUN mkdir -p /etc/apt && echo 'deb http://deb.debian.org/debian bookworm main' > /etc/apt/sources.list && sed -i 's/main/main contrib/' /etc/apt/sources.list && printf 'zlib\nbash\ncurl\n' | sort > packages
RUN test "$(cat config)" = mode=fast && test -x bin/run && test "$(ls loop-*.txt | wc -l)" -eq 20 && test -s big.bin
ENTRYPOINT ["/opt/app/bin/run"]
"#;

const PARENT_IMAGE: &str = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x";

/// Size of the pushed image's big layer.
const PUSH_BYTES: usize = 170 << 20;

/// Debian's `docker-registry` on 127.0.0.1, killed when dropped.
struct Registry {
    child: Child,
    address: String,
}

impl Registry {
    fn start(dir: &Path) -> Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir)?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {address}}}\n",
                dir.join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry")?;
        let registry = Registry { child, address };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            if Instant::now() > deadline {
                bail!("docker-registry did not listen on {}", registry.address);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The container recipe, infrastructure configuration and pipeline of the Kiln side.
fn kiln_pipeline(addr: std::net::SocketAddr) -> Result<Kiln> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pipeline = runtime.block_on(async {
        let mut conn = Connection::open(addr).await?;
        let body = serde_json::json!({
            "containerType": "DOCKER",
            "name": "bench-container",
            "semanticVersion": "1.0.0",
            "parentImage": PARENT_IMAGE,
            "dockerfileTemplateData": DOCKERFILE,
            "targetRepository": {"service": "ECR", "repositoryName": "kiln-bench"},
            "clientToken": "recipe",
        });
        let recipe = conn
            .call("PUT", "/CreateContainerRecipe", &body.to_string())
            .await
            .context("CreateContainerRecipe")?;
        pipeline_on(
            &mut conn,
            "bench-container",
            ("containerRecipeArn", arn(&recipe, "containerRecipeArn")?),
            None,
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

/// `buildah bud` of the Dockerfile, then `buildah push` to the registry (a new tag each round);
/// the built image is removed afterwards, untimed.
fn buildah_round(
    buildah: &Buildah,
    context: &Path,
    registry: &str,
    round: usize,
) -> Result<Duration> {
    let started = Instant::now();
    buildah.run(&[
        "bud",
        "--quiet",
        "--isolation",
        "chroot",
        "--pull-never",
        "-t",
        "kiln-bench-container",
        &context.display().to_string(),
    ])?;
    buildah.run(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        "kiln-bench-container",
        &format!("docker://{registry}/buildah-bench:{round}"),
    ])?;
    let elapsed = started.elapsed();
    buildah.run(&["rmi", "--force", "kiln-bench-container"])?;
    Ok(elapsed)
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn print_figures(name: &str, kiln: &[f64], baseline: &[f64], baseline_name: &str, target: f64) {
    let (k, kmin, kmax) = stats(kiln);
    let (b, bmin, bmax) = stats(baseline);
    println!("{name}: Kiln {k:.2} s (min {kmin:.2}, max {kmax:.2}); {baseline_name} {b:.2} s (min {bmin:.2}, max {bmax:.2})");
    let ratio = k / b;
    println!(
        "{name}: Kiln / {baseline_name} = {ratio:.2} (target <= {target:.1}) {}",
        if ratio <= target { "OK" } else { "NOT MET" }
    );
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse_options(args, "container")?;
    for tool in ["buildah", "docker-registry", "skopeo"] {
        if !have(tool) {
            bail!("{tool} is not installed (bash .ci/run installs it): it is this benchmark's baseline or its registry");
        }
    }
    let mut work = tempfile::tempdir()?;
    work.disable_cleanup(std::env::var_os("KILN_BENCH_KEEP").is_some());
    let binary = binary_at(options.kiln.as_deref())?;
    println!(
        "kiln-bench container: {} rounds, Kiln = {}, work directory {}",
        options.rounds,
        binary.display(),
        work.path().display()
    );
    let buildah = Buildah::new(&work.path().join("buildah"));
    let result = run(&options, &binary, work.path(), &buildah);
    buildah.clean();
    result
}

fn run(options: &Options, binary: &Path, work: &Path, buildah: &Buildah) -> Result<()> {
    let registry = Registry::start(&work.join("registry"))?;
    println!("docker-registry on {}", registry.address);
    buildah.make_base(work)?;
    let context = work.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(
        context.join("Dockerfile"),
        DOCKERFILE.replace("{{{ imagebuilder:parentImage }}}", BUILDAH_BASE),
    )?;

    let data = work.join("kiln-data");
    std::fs::create_dir_all(&data)?;
    let server = Server::start(
        binary,
        &data,
        work.join("kiln.log"),
        &["--ecr-registry".to_string(), registry.address.clone()],
    )?;
    let mut kiln = kiln_pipeline(server.addr).map_err(|e| server.explain(e, "setting up"))?;

    // Warm-up, untimed: Kiln makes its managed base; buildah fills its caches.
    match kiln
        .build()
        .map_err(|e| server.explain(e, "the warm-up build"))?
    {
        Outcome::Available(d, _) => println!("warm-up: Kiln {:.2} s", seconds(d)),
        Outcome::NotImplemented(m) => bail!("this Kiln cannot run the benchmark: {m}"),
    }
    let warm = buildah_round(buildah, &context, &registry.address, 0)?;
    println!("warm-up: buildah {:.2} s", seconds(warm));

    let mut kiln_times = Vec::new();
    let mut buildah_times = Vec::new();
    for round in 1..=options.rounds {
        let mut kiln_round = || -> Result<f64> {
            match kiln.build().map_err(|e| server.explain(e, "a build"))? {
                Outcome::Available(d, _) => Ok(seconds(d)),
                Outcome::NotImplemented(m) => bail!("{m}"),
            }
        };
        let (k, b) = if round % 2 == 0 {
            let k = kiln_round()?;
            (
                k,
                seconds(buildah_round(buildah, &context, &registry.address, round)?),
            )
        } else {
            let b = seconds(buildah_round(buildah, &context, &registry.address, round)?);
            (kiln_round()?, b)
        };
        println!(
            "  round {round}: Kiln {k:.2} s, buildah bud + push {b:.2} s (x{:.2})",
            k / b
        );
        kiln_times.push(k);
        buildah_times.push(b);
    }
    drop(server);
    println!();
    print_figures(
        "build + push (StartImagePipelineExecution to AVAILABLE)",
        &kiln_times,
        &buildah_times,
        "buildah bud + buildah push",
        0.5,
    );

    drop(registry);
    push_alone(options, work)
}

/// The push of a 170 MB image: Kiln's registry push against `skopeo copy`.
fn push_alone(options: &Options, work: &Path) -> Result<()> {
    let store = kiln_image::ImageStore::open(&work.join("push-store"))?;
    let base = store.busybox_base("busybox:1")?;
    let upper = work.join("push-upper");
    std::fs::create_dir_all(upper.join("data"))?;
    let mut file = std::fs::File::create(upper.join("data/random.bin"))?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..PUSH_BYTES >> 20 {
        for word in chunk.chunks_mut(8) {
            // xorshift: incompressible bytes without reading /dev/urandom for 170 MB.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        file.write_all(&chunk)?;
    }
    drop(file);
    let layer = store.snapshot_layer(&upper, kiln_image::Compression::Zstd)?;
    let image = store.commit(
        Some(&base),
        layer,
        &kiln_image::CommitMeta::default(),
        "push:1",
    )?;
    let layout = work.join("push-layout");
    store.export_oci_layout(&image, &layout, "push")?;
    println!();
    println!("push alone: an image of {} MB", PUSH_BYTES >> 20);
    let mut kiln_times = Vec::new();
    let mut skopeo_times = Vec::new();
    for round in 1..=options.rounds {
        // A registry of its own for each push: skopeo remembers where it put a blob and mounts
        // it from there instead of sending it again, which would measure nothing.
        let fresh =
            |side: &str| Registry::start(&work.join(format!("push-registry-{side}-{round}")));
        let kiln_push = || -> Result<f64> {
            let registry = fresh("kiln")?;
            let started = Instant::now();
            store.push_registry_tags(
                &image,
                &registry.address,
                "kiln-push",
                &["1".to_string()],
                &kiln_image::registry::RegistryAccess {
                    insecure: true,
                    ..Default::default()
                },
            )?;
            Ok(seconds(started.elapsed()))
        };
        let skopeo_push = || -> Result<f64> {
            let registry = fresh("skopeo")?;
            let started = Instant::now();
            let status = Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:push", layout.display()))
                .arg(format!("docker://{}/skopeo-push:1", registry.address))
                .status()?;
            if !status.success() {
                bail!("skopeo copy failed: {status}");
            }
            Ok(seconds(started.elapsed()))
        };
        let (k, s) = if round % 2 == 0 {
            let k = kiln_push()?;
            (k, skopeo_push()?)
        } else {
            let s = skopeo_push()?;
            (kiln_push()?, s)
        };
        println!(
            "  round {round}: Kiln {k:.2} s, skopeo copy {s:.2} s (x{:.2})",
            k / s
        );
        kiln_times.push(k);
        skopeo_times.push(s);
    }
    println!();
    print_figures("push alone", &kiln_times, &skopeo_times, "skopeo copy", 1.0);
    Ok(())
}
