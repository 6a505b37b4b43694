//! Version orders of the package managers a scan meets (contract §2.5).
//!
//! - `Dpkg` (Debian, Ubuntu): Debian policy's order, through the `debversion` crate: epochs,
//!   `~` before everything (even the end), revisions, digits compared as numbers. A version dpkg
//!   would refuse (empty, spaces, an empty or non-numeric epoch, an empty revision, characters
//!   outside policy's sets, an upstream part that does not start with a digit) is *unparsable*:
//!   it sorts after every valid version, and two unparsable ones compare as byte strings.
//! - `Apk` (Alpine): apk-tools' own algorithm (`src/version.c`), ported token by token: digits,
//!   one letter, `_alpha`/`_beta`/`_pre`/`_rc` (before the plain version) and
//!   `_cvs`/`_svn`/`_git`/`_hg`/`_p` (after it), `~hash`, `-rN`. apk orders every string, valid
//!   or not (an invalid tail makes the version smaller, as apk-tools decides), so nothing is
//!   unparsable here.
//! - `Rpm` (RHEL, AlmaLinux, Rocky, SUSE): `rpmvercmp` (`~` before, `^` after, alphanumeric
//!   segments, numbers longer wins) over `[epoch:]version[-release]` as rpm's `rpmverCmp`
//!   splits and compares them (missing epoch = 0; a missing release compares lower). rpm orders
//!   every string too.
//!
//! Each comparator is tested with the upstream project's own cases (`tests/data/`).

pub mod apk;
pub mod dpkg;
pub mod rpm;

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Which package manager's order versions follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VersionOrder {
    Dpkg,
    Apk,
    Rpm,
}

/// Orders two versions of one package.
pub fn compare(order: VersionOrder, a: &str, b: &str) -> Ordering {
    match order {
        VersionOrder::Dpkg => dpkg::compare(a, b),
        VersionOrder::Apk => apk::compare(a, b),
        VersionOrder::Rpm => rpm::compare_evr(a, b),
    }
}

/// Whether the package manager would accept `version` as written.
pub fn is_valid(order: VersionOrder, version: &str) -> bool {
    match order {
        VersionOrder::Dpkg => dpkg::parse(version).is_some(),
        VersionOrder::Apk => apk::validate(version),
        VersionOrder::Rpm => !version.is_empty(),
    }
}

/// [`compare`] for many comparisons in one order: dpkg versions are parsed once each (a scan
/// compares the same installed and fixed versions thousands of times).
pub struct Comparator {
    order: VersionOrder,
    parsed: std::cell::RefCell<HashMap<String, Option<Rc<debversion::Version>>>>,
}

use std::collections::HashMap;
use std::rc::Rc;

impl Comparator {
    pub fn new(order: VersionOrder) -> Self {
        Comparator {
            order,
            parsed: Default::default(),
        }
    }

    pub fn order(&self) -> VersionOrder {
        self.order
    }

    fn dpkg(&self, text: &str) -> Option<Rc<debversion::Version>> {
        if let Some(v) = self.parsed.borrow().get(text) {
            return v.clone();
        }
        let v = dpkg::parse(text).map(Rc::new);
        self.parsed.borrow_mut().insert(text.to_string(), v.clone());
        v
    }

    pub fn compare(&self, a: &str, b: &str) -> Ordering {
        if self.order != VersionOrder::Dpkg {
            return compare(self.order, a, b);
        }
        match (self.dpkg(a), self.dpkg(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}
