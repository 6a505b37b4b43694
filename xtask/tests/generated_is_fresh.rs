//! Fails when `crates/kiln-wire/src/generated/` is not what `cargo xtask codegen` makes of the model.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn rustfmt(text: &str) -> String {
    let mut child = Command::new("rustfmt")
        .args(["--edition=2021", "--emit=stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("rustfmt runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("rustfmt output");
    assert!(out.status.success(), "rustfmt failed");
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn generated_code_matches_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let model = std::fs::read_to_string(root.join(xtask::codegen::MODEL_PATH)).expect("model");
    let generated = xtask::codegen::generate(&model).expect("codegen");
    let dir = root.join(xtask::codegen::OUT_DIR);
    for (file, text) in [
        ("types.rs", &generated.types),
        ("schema.rs", &generated.schema),
        ("operations.rs", &generated.operations),
    ] {
        let on_disk = std::fs::read_to_string(dir.join(file)).expect("generated file");
        assert!(
            rustfmt(text) == on_disk,
            "{file} is stale: run `cargo xtask codegen` and commit the result"
        );
    }
}
