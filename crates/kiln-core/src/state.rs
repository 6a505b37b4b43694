//! The state every part of Kiln shares, whichever way it is asked to act: the store, the
//! clock, the work signal and the parent rules. The HTTP service, the build worker and the
//! scheduler each hold the same [`Core`].

use crate::clock::{Clock, SystemClock};
use crate::containers::ContainerRegistries;
use crate::parents::ParentRules;
use crate::work::WorkSignal;
use kiln_store::{Database, Store, StoreError};
use std::path::Path;
use std::sync::Arc;

pub struct Core {
    pub store: Store,
    /// Woken by every committed write (the build worker and the scheduler wait on it).
    pub work: WorkSignal,
    /// The time of requests, builds and schedules.
    pub clock: Arc<dyn Clock>,
    /// What callers may name as parent images besides their own images.
    pub parents: ParentRules,
    /// The Regions with a registry for container images (`--ecr-registry`).
    pub container_registries: ContainerRegistries,
}

impl Core {
    /// Opens (or creates) the SQLite database under `data_dir`, on the system clock, with no
    /// import directories or registries.
    pub fn open(data_dir: &Path, sync: kiln_store::sqlite::Sync) -> Result<Core, StoreError> {
        Core::open_database(data_dir, None, sync)
    }

    /// Opens `database` (by default, SQLite under `data_dir`); the data directory holds the
    /// machine's own state (images, instances, logs) either way.
    pub fn open_database(
        data_dir: &Path,
        database: Option<&Database>,
        sync: kiln_store::sqlite::Sync,
    ) -> Result<Core, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let store = match database {
            Some(database) => Store::open(database, sync)?,
            None => Store::open(&Database::Sqlite(data_dir.join("kiln.db")), sync)?,
        };
        let parents = ParentRules::new(data_dir, &[], &[]).map_err(|message| StoreError::Open {
            path: data_dir.display().to_string(),
            message,
        })?;
        Ok(Core {
            store,
            work: Default::default(),
            clock: Arc::new(SystemClock),
            parents,
            container_registries: ContainerRegistries::None,
        })
    }

    /// The same core on another clock (a test clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Core {
        self.clock = clock;
        self
    }

    /// The same core with the operator's import directories and registries.
    pub fn with_parent_rules(mut self, rules: ParentRules) -> Core {
        self.parents = rules;
        self
    }

    /// The same core with the Regions that have a registry for container images.
    pub fn with_container_registries(mut self, registries: ContainerRegistries) -> Core {
        self.container_registries = registries;
        self
    }
}
