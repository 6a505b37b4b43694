//! The workflow engine core (issue 16): everything about running an image workflow that can be
//! decided without doing IO. The worker (not wired yet) drives an [`execution::Execution`]: it
//! asks [`execution::Execution::next`] what to do, performs the step action, reports back with
//! [`execution::Execution::step_finished`], and stores the serialised execution after every call
//! so a restart can [`execution::Execution::recover`].
//!
//! Times are milliseconds since the Unix epoch, passed in by the caller: the crate has no clock.

pub mod actions;
pub mod document;
pub mod execution;
pub mod expr;
pub mod params;

pub use document::{Document, DocumentError};
pub use execution::{Execution, Next};
