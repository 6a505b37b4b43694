//! TEMPORARY STUB (the lead's, replaced by the `vuln` branch's crate at merge).
use kiln_domain::resources::scan::{Inventory, ScanFinding};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceMode {
    Incremental,
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    pub modified: i64,
    pub withdrawn: Option<i64>,
}

impl Advisory {
    pub fn package_keys(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

pub fn check(_a: &Advisory) -> Result<(), String> {
    Ok(())
}

pub mod ecosystem {
    pub fn ecosystems(_inventory: &super::Inventory) -> Vec<String> {
        Vec::new()
    }
}

pub mod matching {
    use super::*;
    pub fn lookup_keys(_inventory: &Inventory) -> Vec<(String, String)> {
        Vec::new()
    }
    pub fn scan(_inventory: &Inventory, _advisories: &[Advisory], _now: i64) -> Vec<ScanFinding> {
        Vec::new()
    }
    pub fn enrich(_findings: &mut [ScanFinding], _scored: &[Advisory]) {}
}

pub mod import {
    use super::{Advisory, SourceMode};
    pub trait Sink {
        fn source(&mut self, source: &str, mode: SourceMode) -> Result<(), String>;
        fn advisory(&mut self, source: &str, mode: SourceMode, advisory: Advisory) -> Result<(), String>;
    }
    pub fn read_path(_path: &std::path::Path, _sink: &mut dyn Sink) -> Result<(), String> {
        Err("stub".into())
    }
}
