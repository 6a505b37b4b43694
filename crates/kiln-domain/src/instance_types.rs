//! The EC2 instance types Kiln knows, with their size.
//!
//! Kiln has no hypervisor: a build instance's type becomes cgroup limits (`kiln-instance`), so
//! only types whose size is known here can be honoured. This table is the one list: the API
//! refuses other types when an infrastructure configuration names them, and the build
//! instance takes its limits from the same entries.

/// The type EC2 Image Builder picks for x86_64 builds when a configuration names none.
pub const DEFAULT_INSTANCE_TYPE: &str = "m5.large";

/// What an instance type offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceSize {
    pub vcpus: u32,
    pub memory_mib: u64,
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

/// The size of `name` (`t3.micro`), if Kiln knows the type.
pub fn lookup(name: &str) -> Option<InstanceSize> {
    let (family, size) = name.split_once('.')?;
    let (_, sizes) = FAMILIES.iter().find(|(f, _)| *f == family)?;
    let (_, vcpus, memory_mib) = sizes.iter().find(|(s, _, _)| *s == size)?;
    Some(InstanceSize {
        vcpus: *vcpus,
        memory_mib: *memory_mib,
    })
}

/// The families Kiln knows, for messages that list what would be accepted.
pub fn families() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|(f, _)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_types() {
        assert_eq!(
            lookup("t3.micro"),
            Some(InstanceSize {
                vcpus: 2,
                memory_mib: 1024
            })
        );
        assert!(lookup(DEFAULT_INSTANCE_TYPE).is_some());
        for bad in ["x9.huge", "t3", "t3.enormous", "", ".micro", "T3.MICRO"] {
            assert_eq!(lookup(bad), None, "{bad}");
        }
        assert!(families().any(|f| f == "c7g"));
    }
}
