//! What an instance may use: CPUs, memory and processes.
//!
//! An infrastructure configuration names EC2 instance types (`instanceTypes`). Kiln has no
//! hypervisor, so a type becomes a set of cgroup limits taken from a built-in table of common
//! types: `t3.micro` is 2 vCPUs and 1 GiB. Only the first listed type counts (EC2 Image Builder
//! tries the others only when the first has no capacity, which cannot happen here). An empty
//! list means [`DEFAULT_INSTANCE_TYPE`], the type EC2 Image Builder picks for x86_64 builds when
//! none is given. A type that is not in the table is an error naming it, rather than a guess.
//!
//! The process limit is not an EC2 notion; every instance gets [`DEFAULT_PIDS_MAX`], enough for
//! any package manager and small enough to stop a fork bomb long before it hurts the host.

use crate::Error;

/// The type used when the infrastructure configuration lists none.
pub const DEFAULT_INSTANCE_TYPE: &str = "m5.large";

/// The most processes (and threads) an instance may hold at once.
pub const DEFAULT_PIDS_MAX: u64 = 4096;

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

/// Sizes by family: (size suffix, vCPUs, memory in MiB).
type Sizes = &'static [(&'static str, u32, u64)];

const T2: Sizes = &[
    ("nano", 1, 512),
    ("micro", 1, 1024),
    ("small", 1, 2048),
    ("medium", 2, 4096),
    ("large", 2, 8192),
    ("xlarge", 4, 16384),
    ("2xlarge", 8, 32768),
];
const T3: Sizes = &[
    ("nano", 2, 512),
    ("micro", 2, 1024),
    ("small", 2, 2048),
    ("medium", 2, 4096),
    ("large", 2, 8192),
    ("xlarge", 4, 16384),
    ("2xlarge", 8, 32768),
];
/// General purpose: 4 GiB per vCPU.
const M: Sizes = &[
    ("large", 2, 8192),
    ("xlarge", 4, 16384),
    ("2xlarge", 8, 32768),
    ("4xlarge", 16, 65536),
    ("8xlarge", 32, 131072),
];
/// Compute optimised: 2 GiB per vCPU.
const C: Sizes = &[
    ("large", 2, 4096),
    ("xlarge", 4, 8192),
    ("2xlarge", 8, 16384),
    ("4xlarge", 16, 32768),
    ("8xlarge", 32, 65536),
];
/// Memory optimised: 8 GiB per vCPU.
const R: Sizes = &[
    ("large", 2, 16384),
    ("xlarge", 4, 32768),
    ("2xlarge", 8, 65536),
    ("4xlarge", 16, 131072),
    ("8xlarge", 32, 262144),
];

const FAMILIES: &[(&str, Sizes)] = &[
    ("t2", T2),
    ("t3", T3),
    ("t3a", T3),
    ("t4g", T3),
    ("m5", M),
    ("m5a", M),
    ("m6i", M),
    ("m6a", M),
    ("m6g", M),
    ("m7i", M),
    ("m7g", M),
    ("c5", C),
    ("c5a", C),
    ("c6i", C),
    ("c6a", C),
    ("c6g", C),
    ("c7i", C),
    ("c7g", C),
    ("r5", R),
    ("r5a", R),
    ("r6i", R),
    ("r6g", R),
    ("r7i", R),
];

/// The limits of one instance type, if the table knows it.
pub fn for_instance_type(name: &str) -> Option<Limits> {
    let (family, size) = name.split_once('.')?;
    let (_, sizes) = FAMILIES.iter().find(|(f, _)| *f == family)?;
    let (_, vcpus, mib) = sizes.iter().find(|(s, _, _)| *s == size)?;
    Some(Limits {
        vcpus: *vcpus,
        memory_bytes: mib * (GIB / 1024),
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
