//! The model-driven API fuzzer of `tests/fuzz_api.rs`: valid requests generated from the
//! model's shapes, mutated at every level, signed as the SDKs sign, checked for the AWS error
//! contract.

pub mod check;
pub mod gen;
pub mod mutate;
pub mod regex_gen;
pub mod sign;
pub mod wire;
