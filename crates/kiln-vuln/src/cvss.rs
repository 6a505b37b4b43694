//! CVSS scores and the severity a finding gets (contract §2.3).
//!
//! - A CVSS v3.0/v3.1 vector's base score comes from the `cvss` crate (RustSec); v4.0 vectors
//!   are scored too (listed in `cvss[]`), but Inspector's rating and `inspectorScore` use v3.
//! - The severity: Inspector's rating of the highest v3 base score; else the vendor's own word
//!   (Debian urgency `low`/`medium`/`high` → LOW/MEDIUM/HIGH, `unimportant` → INFORMATIONAL
//!   (Debian's "no security impact", which vunnel calls Negligible); Ubuntu priorities
//!   `negligible`/`low`/`medium`/`high`/`critical` the same way; `not yet assigned`,
//!   `end-of-life` and anything else → no rating); else UNTRIAGED.

use kiln_domain::resources::scan::Severity;

/// A scored vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub base_score: f64,
    /// "3.0", "3.1", "4.0".
    pub version: &'static str,
}

/// The base score of a CVSS v3.x or v4.0 vector; `None` for anything else (v2, malformed).
pub fn base_score(vector: &str) -> Option<Score> {
    let parsed: cvss::Cvss = vector.trim().parse().ok()?;
    let version = match parsed {
        cvss::Cvss::CvssV30(_) => "3.0",
        cvss::Cvss::CvssV31(_) => "3.1",
        cvss::Cvss::CvssV40(_) => "4.0",
        _ => return None,
    };
    Some(Score {
        base_score: parsed.score(),
        version,
    })
}

/// The severity a vendor's own word gives, without its Debian `*` marks; `None`: no rating.
pub fn vendor_severity(word: &str) -> Option<Severity> {
    match word
        .trim()
        .trim_end_matches('*')
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "unimportant" | "negligible" => Some(Severity::Informational),
        "low" => Some(Severity::Low),
        "medium" | "moderate" => Some(Severity::Medium),
        "high" | "important" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

/// A finding's severity: the highest v3 base score's rating, else the vendor's highest, else
/// UNTRIAGED.
pub fn severity(best_v3_score: Option<f64>, vendor_words: &[&str]) -> Severity {
    if let Some(score) = best_v3_score {
        return Severity::from_cvss_score(score);
    }
    vendor_words
        .iter()
        .filter_map(|w| vendor_severity(w))
        .max()
        .unwrap_or(Severity::Untriaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_vectors() {
        let s = base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!((s.base_score, s.version), (9.8, "3.1"));
        let s = base_score("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N").unwrap();
        assert_eq!((s.base_score, s.version), (5.5, "3.0"));
        let s = base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N");
        assert_eq!(s.unwrap().version, "4.0");
        assert_eq!(base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P"), None);
        assert_eq!(base_score("CVSS:3.1/AV:X"), None);
        assert_eq!(base_score(""), None);
    }

    #[test]
    fn severities() {
        assert_eq!(severity(Some(9.8), &["low"]), Severity::Critical);
        assert_eq!(severity(None, &["high*"]), Severity::High);
        assert_eq!(severity(None, &["low**", "medium"]), Severity::Medium);
        assert_eq!(severity(None, &["unimportant"]), Severity::Informational);
        assert_eq!(severity(None, &["not yet assigned"]), Severity::Untriaged);
        assert_eq!(severity(None, &["end-of-life"]), Severity::Untriaged);
        assert_eq!(severity(None, &[]), Severity::Untriaged);
    }
}
