//! The Dockerfile syntax (to be written).

use crate::{Dockerfile, Error};

/// Parses a Dockerfile.
pub fn parse(_text: &str) -> Result<Dockerfile, Error> {
    Err(Error::new(1, "the Dockerfile parser is not written yet"))
}
