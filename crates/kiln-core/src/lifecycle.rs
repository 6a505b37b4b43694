//! The lifecycle engine: runs lifecycle policies and StartResourceStateUpdate requests as
//! lifecycle executions (contract §4.3-§4.6).
//!
//! - [`select`] gathers the images a policy governs (its account and Region; by recipe name
//!   and version pattern, or by tags on the Image Builder image) with the facts the pure
//!   evaluation (`kiln_domain::resources::lifecycle::evaluate`) needs;
//! - [`start`] creates executions: a policy's daily run (one per policy at a time: a running
//!   one is resumed, not doubled), and the executions of StartResourceStateUpdate. Each
//!   execution carries its plan, the images to act on, decided when it started;
//! - [`apply`] applies ONE planned image in one write transaction: the image's AMIs
//!   (deprecated, disabled or deregistered), its container images (deleted from their
//!   registries beforehand, outside the transaction, by the caller), then the image itself,
//!   and records the execution's resource rows;
//! - [`run`] drives an execution entry by entry, so a cancel lands between two images: a
//!   CANCELLING execution ends CANCELLED before its next image, and the images it did not reach
//!   get no row.
//!
//! The worker's lifecycle thread calls [`run`] on the service clock; the registry deletes go
//! through the [`run::Registries`] it implements (kiln-core does no network IO).

pub mod apply;
pub mod extension;
pub mod run;
pub mod select;
pub mod start;

#[cfg(test)]
mod tests;
