//! Matching, data-driven: tests/data/matching-cases.json holds one case per range rule and
//! ordering trap (OSV records in their real format, an inventory, the findings expected).

use kiln_domain::resources::scan::{InstalledPackage, Inventory};
use kiln_vuln::import::parse_osv_record;
use kiln_vuln::matching::scan;
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn matching_cases() {
    let path = format!(
        "{}/tests/data/matching-cases.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let inventory = Inventory {
            os_id: case["os"][0].as_str().unwrap().to_string(),
            os_version_id: case["os"][1].as_str().unwrap().to_string(),
            os_id_like: Vec::new(),
            packages: serde_json::from_value::<Vec<InstalledPackage>>(case["packages"].clone())
                .unwrap(),
        };
        let advisories: Vec<_> = case["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| parse_osv_record(r.to_string().as_bytes()).unwrap())
            .collect();
        let findings = scan(&inventory, &advisories, 1000);
        let expect = case["expect"].as_array().unwrap();
        let ids: Vec<&str> = findings
            .iter()
            .map(|f| f.vulnerability_id.as_str())
            .collect();
        let want: Vec<&str> = expect.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, want, "{name}");
        for (finding, expect) in findings.iter().zip(expect) {
            let packages: BTreeMap<String, Option<String>> = finding
                .vulnerable_packages
                .iter()
                .map(|p| (p.name.clone(), p.fixed_in_version.clone()))
                .collect();
            let want: BTreeMap<String, Option<String>> =
                serde_json::from_value(expect["packages"].clone()).unwrap();
            assert_eq!(packages, want, "{name}");
            assert_eq!(finding.fix_available.as_str(), expect["fix"], "{name}");
            if let Some(title) = expect.get("title") {
                assert_eq!(finding.title, *title, "{name}");
            }
            if let Some(related) = expect.get("related") {
                let related: Vec<String> = serde_json::from_value(related.clone()).unwrap();
                assert_eq!(finding.related_vulnerabilities, related, "{name}");
            }
            assert_eq!(
                (finding.first_observed_at, finding.updated_at),
                (1000, 1000)
            );
        }
    }
}
