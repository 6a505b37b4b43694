//! The Image Builder wire protocol (AWS rest-json), and nothing else.
//!
//! A request travels through this crate in four steps:
//! 1. [`route::route`] finds the operation from the HTTP method and the raw path, and
//!    [`route::assemble_input`] merges the JSON body, query string and URI label into one JSON
//!    object keyed by member name.
//! 2. [`validate::validate`] walks that JSON against the operation's input shape in the generated
//!    [`generated::schema`] table: JSON types, required members, lengths, patterns, enums, ranges.
//!    Every violation becomes an `InvalidRequestException` naming the member path and the rule.
//! 3. [`generated::operations::dispatch`] decodes the JSON into the generated request type and
//!    calls the matching [`Handlers`] method, which the API crate implements.
//! 4. The response type is encoded back to JSON; errors are [`ApiError`]s that know their
//!    shape name and HTTP status.
//!
//! Everything under `generated/` is written by `cargo xtask codegen` from
//! `model/imagebuilder-service-2.json`; a test fails when it is stale.

pub mod codec;
pub mod context;
pub mod error;
pub mod route;
pub mod schema;
pub mod validate;

#[allow(clippy::all, non_camel_case_types)]
pub mod generated {
    pub mod operations;
    pub mod schema;
    pub mod types;
}

pub use context::{CallerCredentials, FetchedDocument, RequestContext};
pub use error::{ApiError, ErrorKind};
pub use generated::operations::{dispatch, Handlers, Operation, OPERATIONS};
pub use generated::types;
