//! AWSTOE component documents: reading, validating and running them.
//!
//! - [`condition`]: `if` expressions and `Assert` comparisons.
//! - [`variables`]: `{{ ... }}` substitution of parameters, constants, chaining and loop values.
//! - [`document`]: parsing and validating documents, with the line of every problem.
//! - [`engine`]: running documents against a target; [`report`] and [`logs`] are what a run
//!   leaves behind.
//! - [`target`]: where a document runs, and how its paths stay inside the target's root.
//! - [`actions`]: the action modules.

pub mod actions;
pub mod condition;
pub mod document;
pub mod engine;
mod lines;
pub mod logs;
pub mod report;
pub mod target;
pub mod variables;
pub mod yaml;
