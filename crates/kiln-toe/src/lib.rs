//! AWSTOE component documents (issue 3, in progress).
//!
//! - [`condition`]: `if` expressions and `Assert` comparisons.
//! - [`variables`]: `{{ ... }}` substitution of parameters, constants, chaining and loop values.

pub mod condition;
pub mod variables;
