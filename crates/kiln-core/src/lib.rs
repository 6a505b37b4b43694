//! What Kiln does, as opposed to how it is asked over HTTP.
//!
//! The HTTP crate (`kiln-api`), the build worker (`kiln-worker`) and the scheduler
//! (`kiln-scheduler`) share one [`Core`]: the store, the [`clock`], the [`work`] signal and
//! the [`parents`] rules. The actions that more than one of them take live here, on a store
//! transaction: creating images and queueing their builds and starting pipeline runs
//! ([`images`]), creating imported images and queueing their imports ([`imports`]), firing schedules ([`scheduled`]), keeping a pipeline's last-run fields
//! ([`images::sync_pipeline_status`]), ending the builds of lost workers ([`leases`]),
//! resolving parents ([`parents`]), checking that container images have a registry to go to
//! ([`containers`]), running lifecycle policies and StartResourceStateUpdate ([`lifecycle`]),
//! deleting an image record ([`deletion`]). They fail with a
//! [`CoreError`]; only the HTTP crate turns it into an AWS error shape.
//!
//! Kiln's own endpoints (`/kiln/v1/...`) are answered by [`extension::Extension`]s that the
//! worker and the scheduler implement and the HTTP crate routes to.

pub mod amis;
pub mod caller;
pub mod clock;
pub mod containers;
pub mod deletion;
pub mod error;
pub mod extension;
pub mod iam_roles;
pub mod images;
pub mod imports;
pub mod leases;
pub mod lifecycle;
pub mod lifecycle_records;
pub mod lookup;
pub mod parents;
pub mod scans;
pub mod scheduled;
pub mod sharing;
pub mod state;
pub mod vulndb;
pub mod work;
pub mod workflow_config;
pub mod workflow_runs;

pub use crate::caller::Caller;
pub use crate::error::{CoreError, CoreResult};
pub use crate::state::Core;
