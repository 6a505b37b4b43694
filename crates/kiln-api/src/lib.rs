//! The Image Builder API service.
//!
//! [`server`] accepts HTTP connections (hyper), verifies each request's SigV4 signature
//! ([`auth`]), and turns it into an operation, a [`kiln_wire::RequestContext`] (the account of
//! the key that signed it, the region of its credential scope) and
//! a JSON input, and hands them to [`service::Service::call`] on a blocking thread. The service
//! validates the input against the model, opens the call's transaction (read-only for reads,
//! the write transaction otherwise), applies idempotency for operations with a `clientToken`,
//! and dispatches to the [`handlers`], which turn wire types into domain values, apply the
//! domain's rules, and read and write storage.
//!
//! The same endpoint answers the EC2 Query calls for Kiln's AMIs ([`ec2`]: `POST /` with
//! `Action=DescribeImages...`, signed for the service `ec2`), in XML as EC2 answers.

pub mod accounts;
pub mod auth;
pub mod convert;
pub mod documents;
pub mod ec2;
pub mod filters;
mod generation;
pub mod handlers;
pub mod health;
pub mod http_edges;
pub mod iam;
pub mod paging;
pub mod quotas;
pub mod request_id;
pub mod server;
pub mod service;
pub mod throttle;
pub mod tls;

pub use accounts::Accounts;
pub use auth::Authenticator;
pub use server::{serve, ServerConfig};
pub use service::Service;
