//! Repository tasks: code generation for `kiln-wire`, and the files and Debian package made
//! from the `kiln` binary's flags.
pub mod codegen;
pub mod package;
