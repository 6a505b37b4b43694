//! Image Builder semantic versions, `x` filters and version resolution.
//!
//! Every versioned Image Builder resource (components, image and container
//! recipes, images, workflows) carries a version of the form
//! `<major>.<minor>.<patch>`, and resources that are built (images, components)
//! also get a build number that Image Builder assigns, written `/<build>` after
//! the version in build-version ARNs. The user guide ("Semantic versioning")
//! fixes the rules this module implements:
//!
//! - Each of the three nodes is a non-negative integer no larger than
//!   2^30-1 ([`SemVer::MAX_NODE`]). The service model's pattern is
//!   `[0-9]+` per node, so leading zeros are accepted; we parse every node
//!   numerically and always format canonically, without leading zeros. As a
//!   consequence `01.0.0` and `1.0.0` name the same version, which is what a
//!   numeric comparison would conclude anyway.
//! - A *filter* may replace nodes with a lowercase `x` wildcard (`x.x.x`,
//!   `1.x.x`, `1.2.x`), and once a node is `x` every node to its right must be
//!   `x` too. A filter resolves to the newest matching version, newest meaning
//!   the greatest `(major, minor, patch)` compared numerically and, among
//!   builds of that version, the greatest build number.
//! - Image and container recipes may be *created* with a wildcard patch such as
//!   `1.0.x`; Image Builder then picks the next patch itself (see
//!   [`assign_recipe_version`]).
//! - Responses carry "latest version" references for a resource at `M.m.p`:
//!   the `x.x.x`, `M.x.x`, `M.m.x` and `M.m.p` forms ([`latest_version_refs`]).
//!
//! The types are:
//!
//! - [`SemVer`], a concrete `M.m.p` version. Its derived ordering compares the
//!   nodes numerically in declaration order, so `1.10.0 > 1.9.0`.
//! - [`VersionFilter`], a version whose nodes may be `x` (`None`), with
//!   [`VersionFilter::matches`] and [`VersionFilter::newest`].
//! - [`BuildVersion`], a concrete version plus build number, `M.m.p/b`.
//! - [`VersionError`], whose message is shown to API users as the message of
//!   an `InvalidVersionNumberException` or `InvalidRequestException`, so every
//!   message names the offending input and says what is wrong with it.
//!
//! Nothing here panics on input: parsing never indexes or unwraps, and
//! arithmetic on user-supplied numbers is checked.

use std::fmt;
use std::str::FromStr;

/// A version string or one of its nodes was malformed, out of range or not
/// allowed where it was used.
///
/// The message is meant to be returned verbatim to the API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VersionError {
    pub message: String,
}

impl VersionError {
    fn new(message: String) -> Self {
        VersionError { message }
    }
}

/// A concrete semantic version `<major>.<minor>.<patch>`.
///
/// Ordering is numeric, node by node from major to patch (the derive compares
/// fields in declaration order, which is why they are declared in this order).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SemVer {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl SemVer {
    /// The largest value any node may take: 2^30-1, as documented by Image
    /// Builder.
    pub const MAX_NODE: u32 = (1 << 30) - 1;

    pub const fn new(major: u32, minor: u32, patch: u32) -> SemVer {
        SemVer {
            major,
            minor,
            patch,
        }
    }

    /// Parses a concrete version such as `1.2.3`.
    ///
    /// Leading zeros are accepted (`01.2.3` is `1.2.3`). Wildcards, missing or
    /// extra nodes, signs, whitespace and nodes above [`SemVer::MAX_NODE`] are
    /// errors whose message quotes `s`.
    pub fn parse(s: &str) -> Result<SemVer, VersionError> {
        let [major, minor, patch] = split_nodes(s, Kind::Version)?;
        let node = |text: &str| match parse_node(text, s, Kind::Version)? {
            Node::Number(n) => Ok(n),
            // Say why explicitly: a caller who wrote `1.0.x` knows what `x`
            // means elsewhere and needs to hear it is not accepted here.
            Node::Wildcard => Err(VersionError::new(format!(
                "semantic version '{}' must be concrete: the 'x' wildcard is only allowed in \
                 version filters",
                quoted(s)
            ))),
        };
        Ok(SemVer::new(node(major)?, node(minor)?, node(patch)?))
    }

    /// Whether all three nodes are within the documented range. Values built
    /// with [`SemVer::new`] or deserialized from storage are not checked, so
    /// callers holding such values can use this before trusting them.
    pub fn is_in_range(&self) -> bool {
        self.major <= Self::MAX_NODE && self.minor <= Self::MAX_NODE && self.patch <= Self::MAX_NODE
    }
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for SemVer {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<SemVer, VersionError> {
        SemVer::parse(s)
    }
}

/// A version filter such as `1.x.x`; `None` stands for the `x` wildcard.
///
/// Values produced by [`VersionFilter::parse`] always satisfy the wildcard
/// rule (no number to the right of an `x`). The fields are public so that
/// callers can build filters directly; [`VersionFilter::matches`] simply
/// treats every `None` node as "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionFilter {
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub patch: Option<u32>,
}

impl VersionFilter {
    /// `x.x.x`: matches every version.
    pub const ANY: VersionFilter = VersionFilter {
        major: None,
        minor: None,
        patch: None,
    };

    /// Parses a filter: `x.x.x`, `1.x.x`, `1.2.x` or a concrete `1.2.3`.
    ///
    /// Only lowercase `x` is a wildcard, as in the service model's pattern
    /// `(?:[0-9]+|x)`. A number to the right of an `x` (`x.2.x`, `1.x.8`) is
    /// an error.
    pub fn parse(s: &str) -> Result<VersionFilter, VersionError> {
        parse_filter(s, Kind::Filter)
    }

    /// Whether `v` is selected by this filter: every numeric node must equal
    /// the corresponding node of `v`; `x` nodes match anything.
    pub fn matches(&self, v: &SemVer) -> bool {
        fn node_matches(filter: Option<u32>, value: u32) -> bool {
            filter.is_none_or(|f| f == value)
        }
        node_matches(self.major, v.major)
            && node_matches(self.minor, v.minor)
            && node_matches(self.patch, v.patch)
    }

    /// Whether the filter has no wildcard, i.e. names exactly one version.
    pub fn is_concrete(&self) -> bool {
        self.concrete().is_some()
    }

    /// The single version this filter names, if it has no wildcard.
    pub fn concrete(&self) -> Option<SemVer> {
        Some(SemVer::new(self.major?, self.minor?, self.patch?))
    }

    /// Newest matching (version, build) among candidates.
    ///
    /// Newest is the greatest version compared numerically node by node, and
    /// among builds of that version the greatest build number. Returns `None`
    /// when nothing matches.
    pub fn newest<I: IntoIterator<Item = (SemVer, u32)>>(
        &self,
        versions: I,
    ) -> Option<(SemVer, u32)> {
        // Tuples order lexicographically, and SemVer orders numerically by
        // (major, minor, patch), so the tuple max is exactly "newest version,
        // then highest build".
        versions.into_iter().filter(|(v, _)| self.matches(v)).max()
    }
}

impl From<SemVer> for VersionFilter {
    fn from(v: SemVer) -> VersionFilter {
        VersionFilter {
            major: Some(v.major),
            minor: Some(v.minor),
            patch: Some(v.patch),
        }
    }
}

impl fmt::Display for VersionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn node(f: &mut fmt::Formatter<'_>, n: Option<u32>) -> fmt::Result {
            match n {
                Some(n) => write!(f, "{n}"),
                None => f.write_str(WILDCARD),
            }
        }
        node(f, self.major)?;
        f.write_str(".")?;
        node(f, self.minor)?;
        f.write_str(".")?;
        node(f, self.patch)
    }
}

impl FromStr for VersionFilter {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<VersionFilter, VersionError> {
        VersionFilter::parse(s)
    }
}

/// Parse a `<M.m.p>/<build>` pair as it appears at the end of a build-version ARN.
///
/// Build numbers are assigned by Image Builder starting at 1, so `0` is
/// rejected. AWS documents no upper limit for them; we accept the full `u32`
/// range. Ordering is by version, then build.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct BuildVersion {
    pub version: SemVer,
    pub build: u32,
}

impl BuildVersion {
    pub const fn new(version: SemVer, build: u32) -> BuildVersion {
        BuildVersion { version, build }
    }

    /// Parses `1.2.3/4`. Both parts are required; the version part follows
    /// the rules of [`SemVer::parse`].
    pub fn parse(s: &str) -> Result<BuildVersion, VersionError> {
        let Some((version_text, build_text)) = s.split_once('/') else {
            return Err(VersionError::new(format!(
                "build version '{}' must have the form <major>.<minor>.<patch>/<build>",
                quoted(s)
            )));
        };
        let version = SemVer::parse(version_text)?;
        let build = match parse_digits(build_text) {
            Digits::Value(b) if b >= 1 => u32::try_from(b).ok(),
            Digits::Value(_) => {
                return Err(VersionError::new(format!(
                    "build number '{}' in '{}' must be at least 1",
                    quoted(build_text),
                    quoted(s)
                )))
            }
            Digits::TooLarge => None,
            Digits::Invalid => {
                return Err(VersionError::new(format!(
                    "build number '{}' in '{}' must be a positive integer",
                    quoted(build_text),
                    quoted(s)
                )))
            }
        };
        match build {
            Some(build) => Ok(BuildVersion::new(version, build)),
            None => Err(VersionError::new(format!(
                "build number '{}' in '{}' exceeds the maximum {}",
                quoted(build_text),
                quoted(s),
                u32::MAX
            ))),
        }
    }
}

impl fmt::Display for BuildVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.version, self.build)
    }
}

impl FromStr for BuildVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<BuildVersion, VersionError> {
        BuildVersion::parse(s)
    }
}

/// Version to assign when creating a recipe from `requested` (concrete or patch-wildcard) given existing versions of the same name.
///
/// - A concrete `requested` (`1.2.3`) is returned as is. Whether that version
///   already exists is a conflict, not a malformed version, so it is left to
///   the caller to report as `ResourceAlreadyExistsException`.
/// - A patch wildcard `M.m.x` takes the next free patch under `M.m`: one more
///   than the highest existing `M.m.p`, or `M.m.0` when no `M.m.*` version
///   exists yet. The user guide only says Image Builder "automatically
///   increments the version (1.0.1, 1.0.2...)"; starting at `.0` is our
///   choice, so that `1.0.x` on a fresh name behaves like writing `1.0.0`.
///   Gaps below the highest patch are not reused, so the assigned version is
///   always the newest under `M.m`, which is what the caller asked for.
/// - `M.x.x` and `x.x.x` are errors: only the patch node may be `x` when
///   creating.
pub fn assign_recipe_version(requested: &str, existing: &[SemVer]) -> Result<SemVer, VersionError> {
    let filter = parse_filter(requested, Kind::Recipe)?;
    match filter {
        VersionFilter {
            major: Some(major),
            minor: Some(minor),
            patch: Some(patch),
        } => Ok(SemVer::new(major, minor, patch)),
        VersionFilter {
            major: Some(major),
            minor: Some(minor),
            patch: None,
        } => {
            let highest = existing
                .iter()
                .filter(|v| v.major == major && v.minor == minor)
                .map(|v| v.patch)
                .max();
            let next = match highest {
                None => Some(0),
                // checked_add guards a corrupted store holding u32::MAX; the
                // range check enforces the documented node limit.
                Some(p) => p.checked_add(1).filter(|n| *n <= SemVer::MAX_NODE),
            };
            match next {
                Some(patch) => Ok(SemVer::new(major, minor, patch)),
                None => Err(VersionError::new(format!(
                    "recipe version '{}' cannot be assigned: the patch node under {major}.{minor} \
                     is already at the maximum {}",
                    quoted(requested),
                    SemVer::MAX_NODE
                ))),
            }
        }
        _ => Err(VersionError::new(format!(
            "recipe version '{}' is invalid: only the patch node may be 'x' when creating a \
             recipe (for example '1.0.x')",
            quoted(requested)
        ))),
    }
}

/// The four "latest version" references for a resource at `M.m.p`.
///
/// AWS returns these as the ARNs of the latest versions (`latestVersionArn`,
/// `latestMajorVersionArn`, `latestMinorVersionArn`, `latestPatchVersionArn`).
/// We return the filter forms instead — `x.x.x`, `M.x.x`, `M.m.x`, `M.m.p` —
/// which the caller appends to the resource's ARN prefix; a filter ARN
/// resolves to the same latest version when it is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LatestVersionRefs {
    /// `x.x.x`, for `latestVersionArn`.
    pub latest: String,
    /// `M.x.x`, for `latestMajorVersionArn`.
    pub latest_major: String,
    /// `M.m.x`, for `latestMinorVersionArn`.
    pub latest_minor: String,
    /// `M.m.p`, for `latestPatchVersionArn`.
    pub latest_patch: String,
}

/// The filter forms of the latest-version references for `v`; see
/// [`LatestVersionRefs`].
pub fn latest_version_refs(v: &SemVer) -> LatestVersionRefs {
    LatestVersionRefs {
        latest: VersionFilter::ANY.to_string(),
        latest_major: VersionFilter {
            major: Some(v.major),
            ..VersionFilter::ANY
        }
        .to_string(),
        latest_minor: VersionFilter {
            major: Some(v.major),
            minor: Some(v.minor),
            patch: None,
        }
        .to_string(),
        latest_patch: v.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Parsing internals shared by the public parsers.

/// What is being parsed, so that one parser can produce messages in the
/// vocabulary of the field the user filled in.
#[derive(Clone, Copy)]
enum Kind {
    Version,
    Filter,
    Recipe,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Version => "semantic version",
            Kind::Filter => "version filter",
            Kind::Recipe => "recipe version",
        }
    }

    fn form(self) -> &'static str {
        match self {
            Kind::Version => "<major>.<minor>.<patch>",
            Kind::Filter => "<major>.<minor>.<patch>, where a node may be 'x'",
            Kind::Recipe => "<major>.<minor>.<patch>, where the patch may be 'x'",
        }
    }
}

enum Node {
    Number(u32),
    Wildcard,
}

enum Digits {
    Value(u64),
    TooLarge,
    Invalid,
}

/// The wildcard node. Only lowercase, as in the service model's pattern.
const WILDCARD: &str = "x";

/// Splits `s` into exactly three dot-separated parts.
fn split_nodes(s: &str, kind: Kind) -> Result<[&str; 3], VersionError> {
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c), None) => Ok([a, b, c]),
        _ => Err(VersionError::new(format!(
            "{} '{}' must have the form {}",
            kind.label(),
            quoted(s),
            kind.form()
        ))),
    }
}

/// Reads an ASCII-digit string as a number, saturating into `TooLarge` rather
/// than overflowing so that arbitrarily long inputs are handled. Anything but
/// one or more ASCII digits (empty, sign, space, non-ASCII digit) is
/// `Invalid`.
fn parse_digits(text: &str) -> Digits {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Digits::Invalid;
    }
    let mut value: u64 = 0;
    for b in text.bytes() {
        value = value * 10 + u64::from(b - b'0');
        // Leading zeros keep value at 0, so "000…01" stays valid however long
        // it is; any value above u32::MAX is too large for every caller, and
        // stopping here keeps the u64 from overflowing.
        if value > u64::from(u32::MAX) {
            return Digits::TooLarge;
        }
    }
    Digits::Value(value)
}

fn parse_node(text: &str, whole: &str, kind: Kind) -> Result<Node, VersionError> {
    if text == WILDCARD {
        return Ok(Node::Wildcard);
    }
    match parse_digits(text) {
        Digits::Value(v) if v <= u64::from(SemVer::MAX_NODE) => {
            // Cannot fail after the range check; map it to the same error
            // rather than unwrap.
            u32::try_from(v)
                .map(Node::Number)
                .map_err(|_| too_large(text, whole))
        }
        Digits::Value(_) | Digits::TooLarge => Err(too_large(text, whole)),
        Digits::Invalid => {
            let expected = match kind {
                Kind::Version => "a non-negative integer",
                Kind::Filter | Kind::Recipe => "a non-negative integer or 'x'",
            };
            Err(VersionError::new(format!(
                "version node '{}' in {} '{}' must be {expected}",
                quoted(text),
                kind.label(),
                quoted(whole)
            )))
        }
    }
}

fn too_large(text: &str, whole: &str) -> VersionError {
    VersionError::new(format!(
        "version node '{}' in '{}' exceeds the maximum {}",
        quoted(text),
        quoted(whole),
        SemVer::MAX_NODE
    ))
}

fn parse_filter(s: &str, kind: Kind) -> Result<VersionFilter, VersionError> {
    let [a, b, c] = split_nodes(s, kind)?;
    let to_option = |node: Node| match node {
        Node::Number(n) => Some(n),
        Node::Wildcard => None,
    };
    let major = to_option(parse_node(a, s, kind)?);
    let minor = to_option(parse_node(b, s, kind)?);
    let patch = to_option(parse_node(c, s, kind)?);
    // The documented rule: once a node is `x`, all nodes to its right must be
    // `x`. Equivalently, a number may not follow a wildcard.
    let wildcard_then_number = (major.is_none() && (minor.is_some() || patch.is_some()))
        || (minor.is_none() && patch.is_some());
    if wildcard_then_number {
        return Err(VersionError::new(format!(
            "{} '{}' is invalid: every node after the first 'x' must also be 'x'",
            kind.label(),
            quoted(s)
        )));
    }
    Ok(VersionFilter {
        major,
        minor,
        patch,
    })
}

/// Renders user input for an error message.
///
/// The message goes back to the API caller and into logs, so the input is
/// cut to a bounded length and control characters are escaped; a multi-kilobyte
/// or multi-line "version" should not produce a message of the same shape.
fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> SemVer {
        SemVer::new(major, minor, patch)
    }

    fn f(s: &str) -> VersionFilter {
        match VersionFilter::parse(s) {
            Ok(filter) => filter,
            Err(e) => panic!("test filter {s:?} should parse: {e}"),
        }
    }

    fn assert_err_contains<T: fmt::Debug>(
        input: &str,
        result: Result<T, VersionError>,
        fragments: &[&str],
    ) {
        match result {
            Ok(value) => panic!("{input:?} should be rejected, got {value:?}"),
            Err(e) => {
                for fragment in fragments {
                    assert!(
                        e.message.contains(fragment),
                        "error for {input:?} is {:?}, expected it to contain {fragment:?}",
                        e.message
                    );
                }
                // Display is the message itself, as the API layer relies on.
                assert_eq!(e.to_string(), e.message);
            }
        }
    }

    #[test]
    fn semver_parse_valid() {
        let cases: &[(&str, SemVer, &str)] = &[
            ("0.0.0", v(0, 0, 0), "0.0.0"),
            ("1.2.3", v(1, 2, 3), "1.2.3"),
            ("10.20.30", v(10, 20, 30), "10.20.30"),
            // Leading zeros parse numerically and format canonically.
            ("01.002.0003", v(1, 2, 3), "1.2.3"),
            ("2021.01.01", v(2021, 1, 1), "2021.1.1"),
            ("00.00.00", v(0, 0, 0), "0.0.0"),
            ("0000000000000000000000000001.0.0", v(1, 0, 0), "1.0.0"),
            (
                "1073741823.1073741823.1073741823",
                v(SemVer::MAX_NODE, SemVer::MAX_NODE, SemVer::MAX_NODE),
                "1073741823.1073741823.1073741823",
            ),
        ];
        for (input, expected, canonical) in cases {
            let parsed = SemVer::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed, *expected, "{input:?}");
            assert_eq!(parsed.to_string(), *canonical, "{input:?}");
            assert_eq!(
                input.parse::<SemVer>().as_ref(),
                Ok(expected),
                "FromStr {input:?}"
            );
            assert!(parsed.is_in_range());
        }
    }

    #[test]
    fn semver_parse_invalid() {
        let cases: &[(&str, &[&str])] = &[
            (
                "",
                &["semantic version '' must have the form <major>.<minor>.<patch>"],
            ),
            (
                "1.0",
                &["semantic version '1.0' must have the form <major>.<minor>.<patch>"],
            ),
            ("1", &["'1' must have the form"]),
            (
                "1.0.0.0",
                &["semantic version '1.0.0.0' must have the form <major>.<minor>.<patch>"],
            ),
            ("1.0.0.", &["'1.0.0.' must have the form"]),
            (
                "a.b.c",
                &["version node 'a' in semantic version 'a.b.c' must be a non-negative integer"],
            ),
            ("1.b.3", &["version node 'b'", "'1.b.3'"]),
            (
                "1073741824.0.0",
                &["version node '1073741824' in '1073741824.0.0' exceeds the maximum 1073741823"],
            ),
            (
                "0.0.1073741824",
                &["'1073741824'", "exceeds the maximum 1073741823"],
            ),
            ("4294967296.0.0", &["'4294967296'", "exceeds the maximum"]),
            (
                "99999999999999999999999.0.0",
                &["exceeds the maximum 1073741823"],
            ),
            (
                "1.0.x",
                &[
                    "semantic version '1.0.x' must be concrete",
                    "only allowed in version filters",
                ],
            ),
            ("x.x.x", &["'x.x.x' must be concrete"]),
            ("1..0", &["version node '' in semantic version '1..0'"]),
            (".1.0", &["version node ''"]),
            ("-1.0.0", &["version node '-1'", "non-negative integer"]),
            ("+1.0.0", &["version node '+1'"]),
            (" 1.0.0", &["version node ' 1'"]),
            ("1.0.0 ", &["version node '0 '"]),
            (
                "1.0.0/1",
                &["version node '0/1' in semantic version '1.0.0/1'"],
            ),
            ("1.0.X", &["version node 'X'"]),
            ("1.0.٣", &["version node '٣'"]),
            ("１.0.0", &["version node '１'"]),
            ("1.0.0x", &["version node '0x'"]),
            ("1e3.0.0", &["version node '1e3'"]),
        ];
        for (input, fragments) in cases {
            assert_err_contains(input, SemVer::parse(input), fragments);
            assert_err_contains(input, input.parse::<SemVer>(), fragments);
        }
    }

    #[test]
    fn filter_parse_valid() {
        let cases: &[(&str, VersionFilter, &str)] = &[
            ("x.x.x", VersionFilter::ANY, "x.x.x"),
            (
                "1.x.x",
                VersionFilter {
                    major: Some(1),
                    minor: None,
                    patch: None,
                },
                "1.x.x",
            ),
            (
                "1.2.x",
                VersionFilter {
                    major: Some(1),
                    minor: Some(2),
                    patch: None,
                },
                "1.2.x",
            ),
            ("1.2.3", VersionFilter::from(v(1, 2, 3)), "1.2.3"),
            (
                "01.x.x",
                VersionFilter {
                    major: Some(1),
                    minor: None,
                    patch: None,
                },
                "1.x.x",
            ),
            (
                "0.0.x",
                VersionFilter {
                    major: Some(0),
                    minor: Some(0),
                    patch: None,
                },
                "0.0.x",
            ),
        ];
        for (input, expected, canonical) in cases {
            let parsed = VersionFilter::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed, *expected, "{input:?}");
            assert_eq!(parsed.to_string(), *canonical, "{input:?}");
            assert_eq!(
                input.parse::<VersionFilter>(),
                Ok(*expected),
                "FromStr {input:?}"
            );
        }
    }

    #[test]
    fn filter_parse_invalid() {
        let order = "is invalid: every node after the first 'x' must also be 'x'";
        let cases: &[(&str, &[&str])] = &[
            ("x.2.x", &["version filter 'x.2.x' is invalid: every node after the first 'x' must also be 'x'"]),
            ("1.x.8", &["version filter '1.x.8'", order]),
            ("x.x.1", &["'x.x.1'", order]),
            ("x.1.1", &["'x.1.1'", order]),
            ("1.x", &["version filter '1.x' must have the form <major>.<minor>.<patch>, where a node may be 'x'"]),
            ("x.x.x.x", &["'x.x.x.x' must have the form"]),
            ("", &["version filter '' must have the form"]),
            ("X.x.x", &["version node 'X' in version filter 'X.x.x' must be a non-negative integer or 'x'"]),
            ("xx.x.x", &["version node 'xx'"]),
            ("*.x.x", &["version node '*'"]),
            ("1.2.1073741824", &["version node '1073741824' in '1.2.1073741824' exceeds the maximum 1073741823"]),
        ];
        for (input, fragments) in cases {
            assert_err_contains(input, VersionFilter::parse(input), fragments);
            assert_err_contains(input, input.parse::<VersionFilter>(), fragments);
        }
    }

    #[test]
    fn filter_matches() {
        let cases: &[(&str, SemVer, bool)] = &[
            ("x.x.x", v(0, 0, 0), true),
            ("x.x.x", v(9, 9, 9), true),
            ("1.x.x", v(1, 0, 0), true),
            ("1.x.x", v(1, 7, 8), true),
            ("1.x.x", v(2, 0, 0), false),
            ("1.x.x", v(0, 1, 1), false),
            ("1.6.x", v(1, 6, 0), true),
            ("1.6.x", v(1, 6, 8), true),
            ("1.6.x", v(1, 7, 8), false),
            ("1.6.x", v(2, 6, 8), false),
            ("1.6.8", v(1, 6, 8), true),
            ("1.6.8", v(1, 6, 9), false),
            ("1.6.8", v(1, 7, 8), false),
            ("01.06.08", v(1, 6, 8), true),
        ];
        for (filter, version, expected) in cases {
            assert_eq!(
                f(filter).matches(version),
                *expected,
                "{filter} vs {version}"
            );
        }
    }

    #[test]
    fn filter_concrete() {
        let cases: &[(&str, Option<SemVer>)] = &[
            ("1.2.3", Some(v(1, 2, 3))),
            ("1.2.x", None),
            ("1.x.x", None),
            ("x.x.x", None),
        ];
        for (filter, expected) in cases {
            assert_eq!(f(filter).concrete(), *expected, "{filter}");
            assert_eq!(f(filter).is_concrete(), expected.is_some(), "{filter}");
        }
    }

    /// The example from the user guide's "Semantic versioning" page.
    #[test]
    fn documented_example() {
        let available = [(v(2, 2, 4), 1), (v(1, 7, 8), 1), (v(1, 6, 8), 1)];
        let cases: &[(&str, Option<SemVer>)] = &[
            ("x.x.x", Some(v(2, 2, 4))),
            ("1.x.x", Some(v(1, 7, 8))),
            ("1.6.x", Some(v(1, 6, 8))),
            ("1.6.8", Some(v(1, 6, 8))),
            ("2.2.x", Some(v(2, 2, 4))),
            ("1.7.8", Some(v(1, 7, 8))),
            ("1.6.7", None),
            ("3.x.x", None),
            ("1.5.x", None),
        ];
        for (filter, expected) in cases {
            let newest = f(filter)
                .newest(available.iter().copied())
                .map(|(version, _)| version);
            assert_eq!(newest, *expected, "{filter}");
        }
    }

    #[test]
    fn newest_with_builds() {
        let available = [
            (v(1, 0, 0), 1),
            (v(1, 0, 0), 3),
            (v(1, 0, 0), 2),
            (v(1, 9, 0), 7),
            (v(1, 10, 0), 1),
            (v(1, 10, 0), 2),
            (v(2, 0, 0), 1),
        ];
        let cases: &[(&str, Option<(SemVer, u32)>)] = &[
            ("x.x.x", Some((v(2, 0, 0), 1))),
            // Numeric, not lexicographic: 1.10.0 is newer than 1.9.0 even
            // though 1.9.0 has the higher build.
            ("1.x.x", Some((v(1, 10, 0), 2))),
            ("1.0.x", Some((v(1, 0, 0), 3))),
            ("1.0.0", Some((v(1, 0, 0), 3))),
            ("1.9.x", Some((v(1, 9, 0), 7))),
            ("1.1.x", None),
            ("3.x.x", None),
        ];
        for (filter, expected) in cases {
            assert_eq!(
                f(filter).newest(available.iter().copied()),
                *expected,
                "{filter}"
            );
            // Input order must not matter.
            assert_eq!(
                f(filter).newest(available.iter().rev().copied()),
                *expected,
                "{filter} reversed"
            );
        }
        assert_eq!(VersionFilter::ANY.newest(std::iter::empty()), None);
    }

    #[test]
    fn ordering_is_numeric() {
        let ascending = [
            v(0, 0, 0),
            v(0, 0, 1),
            v(0, 0, 10),
            v(0, 1, 0),
            v(1, 2, 3),
            v(1, 9, 0),
            v(1, 10, 0),
            v(1, 999, 999),
            v(2, 0, 0),
            v(10, 0, 0),
            v(SemVer::MAX_NODE, 0, 0),
        ];
        for pair in ascending.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
        assert!(SemVer::parse("1.10.0").ok() > SemVer::parse("1.9.0").ok());
        assert_eq!(SemVer::parse("1.01.0"), SemVer::parse("1.1.0"));

        let builds = [
            BuildVersion::new(v(1, 0, 0), 1),
            BuildVersion::new(v(1, 0, 0), 9),
            BuildVersion::new(v(1, 0, 0), 10),
            BuildVersion::new(v(1, 0, 1), 1),
        ];
        for pair in builds.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn build_version_parse() {
        let valid: &[(&str, BuildVersion, &str)] = &[
            ("1.2.3/4", BuildVersion::new(v(1, 2, 3), 4), "1.2.3/4"),
            ("0.0.0/1", BuildVersion::new(v(0, 0, 0), 1), "0.0.0/1"),
            ("01.0.0/007", BuildVersion::new(v(1, 0, 0), 7), "1.0.0/7"),
            (
                "1.0.0/4294967295",
                BuildVersion::new(v(1, 0, 0), u32::MAX),
                "1.0.0/4294967295",
            ),
        ];
        for (input, expected, canonical) in valid {
            let parsed = BuildVersion::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed, *expected, "{input:?}");
            assert_eq!(parsed.to_string(), *canonical, "{input:?}");
            assert_eq!(input.parse::<BuildVersion>(), Ok(*expected));
        }

        let invalid: &[(&str, &[&str])] = &[
            ("1.2.3", &["build version '1.2.3' must have the form <major>.<minor>.<patch>/<build>"]),
            ("", &["build version '' must have the form"]),
            ("1.2.3/", &["build number '' in '1.2.3/' must be a positive integer"]),
            ("1.2.3/0", &["build number '0' in '1.2.3/0' must be at least 1"]),
            ("1.2.3/x", &["build number 'x'"]),
            ("1.2.3/1/2", &["build number '1/2'"]),
            ("1.2.3/4294967296", &["build number '4294967296' in '1.2.3/4294967296' exceeds the maximum 4294967295"]),
            ("1.2/3", &["semantic version '1.2' must have the form"]),
            ("1.x.3/3", &["'1.x.3' must be concrete"]),
            ("1073741824.0.0/1", &["exceeds the maximum 1073741823"]),
        ];
        for (input, fragments) in invalid {
            assert_err_contains(input, BuildVersion::parse(input), fragments);
        }
    }

    #[test]
    fn assign_recipe_version_cases() {
        let existing = [v(1, 0, 0), v(1, 0, 3), v(1, 0, 1), v(1, 1, 7), v(2, 0, 0)];
        let cases: &[(&str, &[SemVer], SemVer)] = &[
            // Concrete versions are taken as given, existing or not.
            ("1.2.3", &[], v(1, 2, 3)),
            ("1.0.3", &existing, v(1, 0, 3)),
            ("01.00.05", &[], v(1, 0, 5)),
            // Patch wildcard with nothing under M.m starts at patch 0.
            ("1.0.x", &[], v(1, 0, 0)),
            ("3.4.x", &existing, v(3, 4, 0)),
            ("1.2.x", &existing, v(1, 2, 0)),
            // Otherwise one past the highest existing patch (gaps not reused).
            ("1.0.x", &existing, v(1, 0, 4)),
            ("1.1.x", &existing, v(1, 1, 8)),
            ("2.0.x", &existing, v(2, 0, 1)),
            ("1.0.x", &[v(1, 0, 0)], v(1, 0, 1)),
            ("1.0.x", &[v(1, 0, 1), v(1, 0, 2)], v(1, 0, 3)),
        ];
        for (requested, existing, expected) in cases {
            assert_eq!(
                assign_recipe_version(requested, existing),
                Ok(*expected),
                "{requested} with {existing:?}"
            );
        }
    }

    #[test]
    fn assign_recipe_version_invalid() {
        let only_patch = "only the patch node may be 'x' when creating a recipe";
        let full = [v(1, 0, SemVer::MAX_NODE)];
        let cases: &[(&str, &[SemVer], &[&str])] = &[
            ("1.x.x", &[], &["recipe version '1.x.x' is invalid", only_patch]),
            ("x.x.x", &[], &["recipe version 'x.x.x' is invalid", only_patch]),
            ("x.2.x", &[], &["recipe version 'x.2.x' is invalid: every node after the first 'x' must also be 'x'"]),
            ("1.x.0", &[], &["'1.x.0'", "every node after the first 'x'"]),
            ("1.0", &[], &["recipe version '1.0' must have the form <major>.<minor>.<patch>, where the patch may be 'x'"]),
            ("", &[], &["recipe version '' must have the form"]),
            ("1.0.y", &[], &["version node 'y' in recipe version '1.0.y' must be a non-negative integer or 'x'"]),
            ("1.0.1073741824", &[], &["'1073741824'", "exceeds the maximum 1073741823"]),
            ("1.0.x", &full, &["recipe version '1.0.x' cannot be assigned", "already at the maximum 1073741823"]),
            // A corrupted store value must not overflow.
            ("1.0.x", &[v(1, 0, u32::MAX)], &["cannot be assigned"]),
        ];
        for (requested, existing, fragments) in cases {
            assert_err_contains(
                requested,
                assign_recipe_version(requested, existing),
                fragments,
            );
        }
    }

    #[test]
    fn latest_refs() {
        let cases: &[(SemVer, [&str; 4])] = &[
            (v(1, 2, 3), ["x.x.x", "1.x.x", "1.2.x", "1.2.3"]),
            (v(0, 0, 0), ["x.x.x", "0.x.x", "0.0.x", "0.0.0"]),
            (v(2021, 1, 1), ["x.x.x", "2021.x.x", "2021.1.x", "2021.1.1"]),
        ];
        for (version, [latest, major, minor, patch]) in cases {
            let refs = latest_version_refs(version);
            assert_eq!(
                refs,
                LatestVersionRefs {
                    latest: latest.to_string(),
                    latest_major: major.to_string(),
                    latest_minor: minor.to_string(),
                    latest_patch: patch.to_string(),
                },
                "{version}"
            );
            // Each reference is a filter that selects the resource itself.
            for r in [
                &refs.latest,
                &refs.latest_major,
                &refs.latest_minor,
                &refs.latest_patch,
            ] {
                assert!(f(r).matches(version), "{r} should match {version}");
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["0.0.0", "1.2.3", "1073741823.0.1", "2021.12.31"] {
            assert_eq!(SemVer::parse(s).map(|v| v.to_string()), Ok(s.to_string()));
        }
        for s in ["x.x.x", "1.x.x", "1.2.x", "1.2.3"] {
            assert_eq!(
                VersionFilter::parse(s).map(|f| f.to_string()),
                Ok(s.to_string())
            );
        }
        for s in ["1.2.3/1", "0.0.0/42"] {
            assert_eq!(
                BuildVersion::parse(s).map(|b| b.to_string()),
                Ok(s.to_string())
            );
        }
        for version in [v(0, 0, 0), v(7, 8, 9), v(SemVer::MAX_NODE, 1, 2)] {
            assert_eq!(SemVer::parse(&version.to_string()), Ok(version));
            let filter = VersionFilter::from(version);
            assert_eq!(VersionFilter::parse(&filter.to_string()), Ok(filter));
            assert_eq!(filter.concrete(), Some(version));
            let build = BuildVersion::new(version, 5);
            assert_eq!(BuildVersion::parse(&build.to_string()), Ok(build));
        }
    }

    #[test]
    fn serde_round_trip() {
        let version = v(1, 2, 3);
        let json = serde_json::to_string(&version).unwrap();
        assert_eq!(json, r#"{"major":1,"minor":2,"patch":3}"#);
        assert_eq!(serde_json::from_str::<SemVer>(&json).unwrap(), version);

        let build = BuildVersion::new(version, 4);
        let json = serde_json::to_string(&build).unwrap();
        assert_eq!(serde_json::from_str::<BuildVersion>(&json).unwrap(), build);
    }

    #[test]
    fn error_messages_quote_input_safely() {
        let long = format!("{}.0.0", "1".repeat(10_000));
        let message = SemVer::parse(&long).unwrap_err().message;
        assert!(message.contains("exceeds the maximum"), "{message}");
        assert!(
            message.len() < 300,
            "message should be bounded: {} bytes",
            message.len()
        );
        assert!(message.contains('…'));

        let message = SemVer::parse("1.0\n.0").unwrap_err().message;
        assert!(!message.contains('\n'), "{message:?}");
        assert!(message.contains("\\n"), "{message:?}");

        let message = VersionFilter::parse("x.\u{7}.x").unwrap_err().message;
        assert!(message.contains("\\u{7}"), "{message:?}");
    }

    /// Every parser must return (not panic) on arbitrary input, and anything
    /// accepted must survive a Display round trip.
    #[test]
    fn no_panic_on_garbage() {
        let mut inputs: Vec<String> = [
            "",
            ".",
            "..",
            "...",
            "....",
            "/",
            "//",
            "x",
            "x.",
            "x..",
            ".x.",
            "..x",
            "1/2/3",
            "1.2.3/",
            "/1.2.3",
            "1.2.3//4",
            "-0.0.0",
            "0.-0.0",
            "1.2.3/-1",
            "1.2.3/+1",
            "\u{0}.\u{0}.\u{0}",
            "é.é.é",
            "🦀.🦀.🦀",
            "1.2.3\u{301}",
            "x.x.x/1",
            "1.2.x/1",
            "18446744073709551616.0.0",
            "1.2.3/18446744073709551616",
            "340282366920938463463374607431768211456.x.x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();

        // Exhaustive short strings over an alphabet that exercises every
        // branch: digits, wildcard, separators, signs, space and multibyte.
        let alphabet = ['0', '1', '9', 'x', 'X', '.', '/', '-', ' ', 'é'];
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for prefix in &frontier {
                for c in alphabet {
                    let mut s = prefix.clone();
                    s.push(c);
                    next.push(s);
                }
            }
            inputs.extend(next.iter().cloned());
            frontier = next;
        }

        // Longer pseudo-random strings from a fixed-seed LCG, so failures are
        // reproducible without a dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = (state >> 58) as usize;
            let mut s = String::new();
            for _ in 0..len {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let idx = (state >> 33) as usize % alphabet.len();
                s.push(alphabet[idx]);
                if (state >> 40).is_multiple_of(3) {
                    s.push_str("1073741823");
                }
            }
            inputs.push(s);
        }

        let existing = [
            v(1, 0, 0),
            v(1, 0, SemVer::MAX_NODE),
            v(u32::MAX, u32::MAX, u32::MAX),
        ];
        for input in &inputs {
            match SemVer::parse(input) {
                Ok(version) => {
                    assert!(version.is_in_range(), "{input:?}");
                    assert_eq!(
                        SemVer::parse(&version.to_string()),
                        Ok(version),
                        "{input:?}"
                    );
                }
                Err(e) => assert!(!e.message.is_empty(), "{input:?}"),
            }
            match VersionFilter::parse(input) {
                Ok(filter) => {
                    assert_eq!(
                        VersionFilter::parse(&filter.to_string()),
                        Ok(filter),
                        "{input:?}"
                    );
                    if let Some(version) = filter.concrete() {
                        assert!(filter.matches(&version));
                    }
                    let _ = filter.newest(existing.iter().map(|v| (*v, 1)));
                }
                Err(e) => assert!(!e.message.is_empty(), "{input:?}"),
            }
            match BuildVersion::parse(input) {
                Ok(build) => {
                    assert!(build.build >= 1, "{input:?}");
                    assert_eq!(
                        BuildVersion::parse(&build.to_string()),
                        Ok(build),
                        "{input:?}"
                    );
                }
                Err(e) => assert!(!e.message.is_empty(), "{input:?}"),
            }
            if let Ok(version) = assign_recipe_version(input, &existing) {
                assert!(version.is_in_range(), "{input:?} -> {version}");
            }
        }
    }
}
