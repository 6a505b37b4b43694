//! `cargo xtask codegen`: regenerate `crates/kiln-wire/src/generated/` from the model.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xtask::codegen;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "codegen" => {
            let root = workspace_root();
            let model = std::fs::read_to_string(root.join(codegen::MODEL_PATH))
                .with_context(|| format!("reading {}", codegen::MODEL_PATH))?;
            let generated = codegen::generate(&model)?;
            let out = root.join(codegen::OUT_DIR);
            for (file, text) in [
                ("types.rs", &generated.types),
                ("schema.rs", &generated.schema),
                ("operations.rs", &generated.operations),
            ] {
                let path = out.join(file);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            let status = std::process::Command::new("rustfmt")
                .arg("--edition=2021")
                .args(["types.rs", "schema.rs", "operations.rs"].map(|f| out.join(f)))
                .status()
                .context("running rustfmt")?;
            if !status.success() {
                bail!("rustfmt failed on the generated code");
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask codegen"),
    }
}
