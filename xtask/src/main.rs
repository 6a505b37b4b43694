//! `cargo xtask codegen`: regenerate `crates/kiln-wire/src/generated/` from the model.
//! `cargo xtask dist`: regenerate `packaging/kiln.toml` from `kiln`'s flags.
//! `cargo xtask deb [--debug]`: build the Debian package, `target/debian/kiln_<version>_<arch>.deb`.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xtask::{codegen, package};

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
        "dist" => package::dist(&workspace_root()),
        "deb" => {
            let profile = match std::env::args().nth(2).as_deref() {
                None => package::Profile::Release,
                Some("--debug") => package::Profile::Debug,
                Some(other) => bail!("cargo xtask deb: unknown argument {other} (only --debug)"),
            };
            package::deb(&workspace_root(), profile).map(|_| ())
        }
        _ => bail!("usage: cargo xtask codegen | dist | deb [--debug]"),
    }
}
