//! What a rootless instance records about itself in `rootless.json` ([`super::STATE_FILE`]):
//! the mounts its commands' namespaces are made of, and its limits.

use super::STATE_FILE;
use crate::limits::Limits;
use crate::sys::{SysError, SysResult};
use std::io;
use std::path::{Path, PathBuf};

/// One mount a command's child makes, in the order recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountOp {
    /// An overlay; `lowers` top-most first.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    Tmpfs {
        target: PathBuf,
        options: String,
    },
    Bind {
        src: PathBuf,
        dst: PathBuf,
        readonly: bool,
    },
    /// A device node: the host's node `src` bound onto a file created at `dst`.
    Device {
        src: PathBuf,
        dst: PathBuf,
    },
}

/// What `rootless.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootlessState {
    pub mounts: Vec<MountOp>,
    /// The instance's limits, applied as rlimits; `None` until `cgroup_create`.
    pub limits: Option<Limits>,
}

/// Reads `<dir>/rootless.json`.
pub fn read_state(dir: &Path) -> SysResult<RootlessState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read(&path).map_err(|e| SysError::new("read", &path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| SysError::new("read", &path, io::Error::new(io::ErrorKind::InvalidData, e)))
}

pub(super) fn write_state(dir: &Path, state: &RootlessState) -> SysResult<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(".rootless.json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|e| {
        SysError::new(
            "write",
            &path,
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })?;
    std::fs::write(&tmp, text).map_err(|e| SysError::new("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| SysError::new("rename", &path, e))
}
