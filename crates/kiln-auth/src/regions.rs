//! The region names a request may be scoped to.
//!
//! The region of a request's credential scope goes into every ARN it creates, so it must be a
//! real region name. By default that is the commercial AWS regions (the `aws` partition, which
//! is the partition of every ARN Kiln writes); an operator can serve other names
//! (`kiln serve --regions`), for example a private naming scheme of their own.

/// The regions of the `aws` partition, as of late 2026.
pub const AWS_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// The regions a server accepts.
#[derive(Debug, Clone)]
pub struct Regions {
    names: Vec<String>,
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            names: AWS_REGIONS.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// A region name is what a credential scope may carry: lower-case letters, digits and dashes,
/// starting with a letter.
pub fn is_well_formed(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Regions {
    /// Parses `--regions`: a comma-separated list of names.
    pub fn parse(list: &str) -> Result<Regions, String> {
        let mut names = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !is_well_formed(name) {
                return Err(format!(
                    "'{name}' is not a region name (lower-case letters, digits and dashes, like us-east-1)"
                ));
            }
            names.push(name.to_string());
        }
        if names.is_empty() {
            return Err("the list of regions is empty".to_string());
        }
        Ok(Regions { names })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_has_the_commercial_regions_only() {
        let r = Regions::default();
        assert!(r.contains("us-east-1"));
        assert!(r.contains("eu-central-1"));
        assert!(!r.contains("us-east-1:111111111111"));
        assert!(!r.contains("mars-north-1"));
        assert!(AWS_REGIONS.iter().all(|n| is_well_formed(n)));
    }

    #[test]
    fn operators_may_list_their_own() {
        let r = Regions::parse("home-lab-1, us-east-1").unwrap();
        assert!(r.contains("home-lab-1"));
        assert!(!r.contains("us-west-2"));
        assert!(Regions::parse("us-east-1:1").is_err());
        assert!(Regions::parse("").is_err());
        assert!(Regions::parse("US-EAST-1").is_err());
    }
}
