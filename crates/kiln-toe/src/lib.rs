//! AWSTOE component documents (issue 3, in progress).
//!
//! - [`condition`]: `if` expressions and `Assert` comparisons.
//! - [`variables`]: `{{ ... }}` substitution of parameters, constants, chaining and loop values.
//! - [`target`]: where a document runs, and how its paths stay inside the target's root.
//! - [`actions`]: the action modules.

pub mod actions;
pub mod condition;
pub mod target;
pub mod variables;
