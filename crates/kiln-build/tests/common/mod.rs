//! The fixture of the real-build tests (as root): a fresh image store with the busybox base,
//! requests, and a look into built images.

#![allow(dead_code)]

use kiln_build::{BuildRequest, Builder, Stage, Stages};
use kiln_image::{ImageRef, ImageStore};
use kiln_instance::{Limits, RealPrivileged};
use kiln_toe::engine::{EngineConfig, Quiet, SourceDocument};
use std::sync::{Arc, Mutex};

pub fn require_root() {
    assert!(
        unsafe_geteuid_is_root(),
        "these tests build real images and must run as root (bash .ci/run does)"
    );
}

fn unsafe_geteuid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[derive(Default)]
pub struct Recorded(pub Mutex<Vec<Stage>>);

impl Stages for Recorded {
    fn entered(&self, stage: Stage) {
        self.0.lock().unwrap().push(stage);
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
    pub base: ImageRef,
}

impl Fixture {
    pub fn new() -> Fixture {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("images")).unwrap();
        let base = store.busybox_base("busybox-x86:1.0.0").unwrap();
        Fixture { dir, store, base }
    }

    pub fn request(&self, id: &str, parent: &ImageRef, components: &[&str]) -> BuildRequest {
        BuildRequest {
            container: None,
            build_id: id.into(),
            parent: parent.clone(),
            components: components
                .iter()
                .enumerate()
                .map(|(i, text)| SourceDocument {
                    name: format!("component-{i}"),
                    text: text.to_string(),
                    parameters: Vec::new(),
                })
                .collect(),
            limits: Limits {
                vcpus: 2,
                memory_bytes: 512 << 20,
                pids_max: 512,
            },
            network: false,
            tests_enabled: true,
            enhanced_metadata: true,
            tag: format!("{id}:1"),
            log_directory: self.dir.path().join("logs"),
            instances_directory: self.dir.path().join("instances"),
            keep_failed_instance: false,
        }
    }

    pub fn build(
        &self,
        request: &BuildRequest,
        stages: &Recorded,
    ) -> Result<kiln_build::Built, kiln_build::BuildError> {
        self.build_with(request, stages, &EngineConfig::default())
    }

    pub fn build_with(
        &self,
        request: &BuildRequest,
        stages: &Recorded,
        engine: &EngineConfig,
    ) -> Result<kiln_build::Built, kiln_build::BuildError> {
        Builder {
            store: &self.store,
            sys: Arc::new(RealPrivileged::new()),
            engine,
            observer: &Quiet,
            stages,
        }
        .build_image(request)
    }

    pub fn merged(&self, image: &ImageRef, path: &str) -> Option<String> {
        let out = self
            .dir
            .path()
            .join(format!("merged-{}", &image.digest[7..19]));
        if !out.exists() {
            self.store.merged_rootfs(image, &out).unwrap();
        }
        std::fs::read_to_string(out.join(path.trim_start_matches('/'))).ok()
    }

    pub fn instances_left(&self) -> usize {
        let dir = self.dir.path().join("instances");
        std::fs::read_dir(&dir).map_or(0, |d| d.count())
    }
}
