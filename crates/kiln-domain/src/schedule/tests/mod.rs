//! Table-driven tests of the public schedule API.
//!
//! - `next.rs`: expressions and the run they should produce next.
//! - `invalid.rs`: rejected expressions and the message each must give.
//! - `fuzz.rs`: arbitrary input never panics, and the worst cases are fast.

mod fuzz;
mod invalid;
mod next;
