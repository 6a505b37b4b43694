//! Vulnerability data and matching for Kiln's image scans (issue 17, contract §2.5). Pure:
//! no network, no store; the only IO is reading the files an import is given.
//!
//! - [`version`]: dpkg, apk and rpm version orders.
//! - [`ecosystem`]: which OSV ecosystems an image's os-release names, and their order.
//! - [`advisory`]: the normalised, OSV-shaped record Kiln stores.
//! - [`import`]: streaming readers of OSV (files, directories, `all.zip`), the Debian security
//!   tracker JSON and Alpine secdb JSON, with limits against hostile input.
//! - [`cvss`]: base scores of CVSS vectors and the severity a finding gets.
//! - [`matching`]: an inventory against advisories, to `ScanFinding`s.
//! - [`synth`]: realistic generated OSV records for the benchmark.

pub mod advisory;
pub mod cvss;
pub mod ecosystem;
pub mod import;
pub mod matching;
pub mod synth;
pub mod version;
