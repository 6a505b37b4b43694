//! The shape of the workspace: the HTTP crate (`kiln-api`) sits on top, and only binaries use
//! it. The build worker and the scheduler reach what Kiln does through `kiln-core`, which knows
//! nothing of HTTP or of the AWS error shapes (`kiln-wire`).

use serde_json::Value;
use std::process::Command;

/// Packages allowed to depend on `kiln-api`, in any section (normal, dev or build): the
/// `kiln` binary, which serves it, and `kiln-bench`, a binary that measures it in-process.
const HTTP_USERS: &[&str] = &["kiln", "kiln-bench"];

/// What `kiln-core` must not depend on: the HTTP crate, the wire types (with `ApiError`), and
/// the HTTP server stack.
const NOT_IN_CORE: &[&str] = &["kiln-api", "kiln-wire", "hyper", "hyper-util"];

fn workspace_packages() -> Vec<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .args(["--manifest-path", manifest])
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata answers JSON");
    metadata["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .clone()
}

fn name(package: &Value) -> &str {
    package["name"].as_str().unwrap_or_default()
}

/// Every dependency of `package`, with its section (`normal`, `dev`, `build`).
fn dependencies(package: &Value) -> Vec<(String, String)> {
    package["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_string(),
                d["kind"].as_str().unwrap_or("normal").to_string(),
            )
        })
        .collect()
}

#[test]
fn only_binaries_depend_on_the_http_crate() {
    let packages = workspace_packages();
    assert!(
        packages.iter().any(|p| name(p) == "kiln-core"),
        "the workspace has kiln-core"
    );
    let mut offenders = Vec::new();
    for package in &packages {
        for (dependency, kind) in dependencies(package) {
            if dependency == "kiln-api" && !HTTP_USERS.contains(&name(package)) {
                offenders.push(format!("{} ({kind})", name(package)));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only {HTTP_USERS:?} may depend on kiln-api; these do too: {offenders:?} \
         (use kiln-core; a test that needs the HTTP service belongs in crates/kiln/tests)"
    );
    // The allowed ones are binaries, not libraries others could build on.
    for package in packages.iter().filter(|p| HTTP_USERS.contains(&name(p))) {
        let libraries: Vec<&Value> = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib"))
            })
            .collect();
        assert!(
            libraries.is_empty(),
            "{} depends on kiln-api and has a library target",
            name(package)
        );
    }
}

#[test]
fn the_core_knows_nothing_of_http() {
    let packages = workspace_packages();
    let core = packages
        .iter()
        .find(|p| name(p) == "kiln-core")
        .expect("the workspace has kiln-core");
    let wrong: Vec<_> = dependencies(core)
        .into_iter()
        .filter(|(d, _)| NOT_IN_CORE.contains(&d.as_str()))
        .collect();
    assert!(wrong.is_empty(), "kiln-core depends on {wrong:?}");
}
