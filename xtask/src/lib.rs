//! Repository tasks. The only one so far is code generation for `kiln-wire`.
pub mod codegen;
