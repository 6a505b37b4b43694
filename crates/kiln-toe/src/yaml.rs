//! The one place that names the YAML crate. Every other module and crate reads and writes YAML
//! through these re-exports, so replacing the implementation is a change to this file and to
//! the workspace's Cargo.toml.
//!
//! The implementation is `yaml_serde`, the YAML organisation's maintained continuation of
//! `serde_yaml` 0.9: the same libyaml-derived parser and the same resolution of plain scalars
//! (booleans, numbers, null), tags and error messages with line and column, which documents'
//! validation messages and their tests rely on.

pub use yaml_serde::{from_str, to_string, Error, Mapping, Number, Value};
