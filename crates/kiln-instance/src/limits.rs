//! What an instance may use: CPUs, memory and processes.
//!
//! An infrastructure configuration names EC2 instance types (`instanceTypes`). Kiln has no
//! hypervisor, so a type becomes a set of cgroup limits taken from a built-in table of common
//! types (`kiln_domain::instance_types`): `t3.micro` is 2 vCPUs and 1 GiB. Only the first listed type counts (EC2 Image Builder
//! tries the others only when the first has no capacity, which cannot happen here). An empty
//! list means [`DEFAULT_INSTANCE_TYPE`], the type EC2 Image Builder picks for x86_64 builds when
//! none is given. A type that is not in the table is an error naming it, rather than a guess.
//!
//! The process limit is not an EC2 notion; every instance gets [`DEFAULT_PIDS_MAX`], enough for
//! any package manager and small enough to stop a fork bomb long before it hurts the host.

use crate::Error;

/// The type used when the infrastructure configuration lists none.
pub use kiln_domain::instance_types::DEFAULT_INSTANCE_TYPE;

/// The most processes (and threads) an instance may hold at once.
pub const DEFAULT_PIDS_MAX: u64 = 4096;

const MIB: u64 = 1 << 20;
#[cfg(test)]
const GIB: u64 = 1 << 30;

/// Resource limits of one instance, enforced through cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// CPU time, in CPUs (a quota of `vcpus` x the period).
    pub vcpus: u32,
    /// Memory (without swap); beyond it the kernel's OOM killer picks a process in the instance.
    pub memory_bytes: u64,
    /// Processes and threads.
    pub pids_max: u64,
}

/// The limits of one instance type, if Kiln knows it (`kiln_domain::instance_types`, the
/// table the API also checks configurations against).
pub fn for_instance_type(name: &str) -> Option<Limits> {
    let size = kiln_domain::instance_types::lookup(name)?;
    Some(Limits {
        vcpus: size.vcpus,
        memory_bytes: size.memory_mib * MIB,
        pids_max: DEFAULT_PIDS_MAX,
    })
}

/// The limits for an infrastructure configuration's `instanceTypes`: the first type's, or
/// [`DEFAULT_INSTANCE_TYPE`]'s when the list is empty.
pub fn for_instance_types(types: &[String]) -> Result<Limits, Error> {
    let name = types
        .first()
        .map(String::as_str)
        .unwrap_or(DEFAULT_INSTANCE_TYPE);
    for_instance_type(name).ok_or_else(|| Error::UnknownInstanceType(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn common_types_map_to_their_size() {
        let l = for_instance_types(&types(&["t3.micro"])).unwrap();
        assert_eq!((l.vcpus, l.memory_bytes), (2, GIB));
        let l = for_instance_types(&types(&["c5.xlarge", "t3.micro"])).unwrap();
        assert_eq!((l.vcpus, l.memory_bytes), (4, 8 * GIB));
        let l = for_instance_types(&types(&["r5.4xlarge"])).unwrap();
        assert_eq!((l.vcpus, l.memory_bytes), (16, 128 * GIB));
        let l = for_instance_types(&types(&["t2.nano"])).unwrap();
        assert_eq!((l.vcpus, l.memory_bytes), (1, GIB / 2));
        assert_eq!(l.pids_max, DEFAULT_PIDS_MAX);
    }

    #[test]
    fn empty_list_is_the_default_type() {
        assert_eq!(
            for_instance_types(&[]).unwrap(),
            for_instance_type("m5.large").unwrap()
        );
    }

    #[test]
    fn unknown_types_are_named() {
        for bad in ["x9.huge", "t3", "t3.enormous", ""] {
            let err = for_instance_types(&types(&[bad])).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }
}
