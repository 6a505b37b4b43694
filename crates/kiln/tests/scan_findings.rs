//! ListImageScanFindings and ListImageScanFindingAggregations through the real server: findings
//! rows are written straight into the server's store (its SQLite file, while it is stopped) for
//! images of two pipelines, a one-off image, another account and another Region, and read back
//! through the SDK and raw HTTP (every member, timestamps as numbers, each filter, pages,
//! aggregations, the validation errors). The server's debug build checks every response
//! against the model.

mod common;

use aws_sdk_imagebuilder::types::{Filter, ImageScanFindingsFilter};
use aws_sdk_imagebuilder::Client;
use common::{error_code, error_message, Server, DEFAULT_ACCOUNT};
use kiln_domain::resources::scan::{Cvss, FixAvailable, ScanFinding, Severity, VulnerablePackage};
use kiln_store::{Database, FindingRow, Store, Sync};

const OTHER_KEY: &str = "AKIDOTHERACCOUNT00";
const OTHER_ACCOUNT: &str = "210987654321";
const OBSERVED: i64 = 1_764_151_200_123;
const UPDATED: i64 = 1_764_237_600_000;

fn image(account: &str, region: &str, name: &str) -> String {
    format!("arn:aws:imagebuilder:{region}:{account}:image/{name}/1.0.0/1")
}

fn pipeline(name: &str) -> String {
    format!("arn:aws:imagebuilder:us-east-1:{DEFAULT_ACCOUNT}:image-pipeline/{name}")
}

fn finding(id: &str, severity: Severity) -> ScanFinding {
    let cvss = Cvss {
        base_score: 7.5,
        scoring_vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H".into(),
        version: "3.1".into(),
        source: "NVD".into(),
    };
    ScanFinding {
        vulnerability_id: id.into(),
        title: format!("{id} - openssl"),
        description: "A crafted certificate makes the server stop.".into(),
        severity,
        inspector_score: Some(7.5),
        adjusted_cvss: Some(cvss.clone()),
        fix_available: FixAvailable::Yes,
        remediation_text: Some("Upgrade openssl to 3.0.15-1~deb12u1".into()),
        remediation_url: Some(format!("https://security-tracker.debian.org/tracker/{id}")),
        source: "DEBIAN_CVE".into(),
        source_url: Some(format!("https://security-tracker.debian.org/tracker/{id}")),
        vendor_severity: Some("high".into()),
        vendor_created_at: Some(1_720_000_000_000),
        vendor_updated_at: Some(1_730_000_000_500),
        reference_urls: vec!["https://www.openssl.org/news/secadv/20240903.txt".into()],
        related_vulnerabilities: vec!["DSA-5764-1".into()],
        cvss: vec![cvss],
        vulnerable_packages: vec![VulnerablePackage {
            name: "libssl3".into(),
            version: "3.0.14".into(),
            release: Some("1~deb12u2".into()),
            epoch: Some(0),
            arch: Some("X86_64".into()),
            package_manager: "OS".into(),
            fixed_in_version: Some("3.0.15-1~deb12u1".into()),
            remediation: Some("apt-get install --only-upgrade libssl3".into()),
        }],
        first_observed_at: OBSERVED,
        updated_at: UPDATED,
    }
}

fn row(image_arn: &str, pipeline_arn: Option<String>, id: &str, severity: Severity) -> FindingRow {
    let parts: Vec<&str> = image_arn.split(':').collect();
    FindingRow {
        image_arn: image_arn.into(),
        account: parts[4].into(),
        region: parts[3].into(),
        pipeline_arn,
        vulnerability_id: id.into(),
        severity: severity.as_str().into(),
        body: serde_json::to_string(&finding(id, severity)).expect("a finding encodes"),
    }
}

/// Writes findings into the stopped server's database, then starts it again.
fn seed(server: &mut Server, images: &[(String, Vec<FindingRow>)]) {
    server.kill();
    {
        // A build's processes may hold the database a moment longer than the server.
        let database = Database::Sqlite(server.data_dir().join("kiln.db"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let store = loop {
            match Store::open(&database, Sync::Normal) {
                Ok(store) => break store,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("opening the server's store: {e}"),
            }
        };
        store
            .write(|tx| {
                for (arn, rows) in images {
                    tx.replace_findings(arn, rows)?;
                }
                Ok::<_, kiln_store::StoreError>(())
            })
            .expect("the write commits")
            .expect("findings stored");
    }
    server.restart();
}

/// A in us-east-1: image a (pipeline p1) with three findings, image b (pipeline p2) with two,
/// image c (CreateImage, no pipeline) with one; the other account and us-west-2 one each.
fn seed_all(server: &mut Server) {
    let a = image(DEFAULT_ACCOUNT, "us-east-1", "a");
    let b = image(DEFAULT_ACCOUNT, "us-east-1", "b");
    let c = image(DEFAULT_ACCOUNT, "us-east-1", "c");
    let d = image(OTHER_ACCOUNT, "us-east-1", "d");
    let w = image(DEFAULT_ACCOUNT, "us-west-2", "w");
    seed(
        server,
        &[
            (
                a.clone(),
                vec![
                    row(
                        &a,
                        Some(pipeline("p1")),
                        "CVE-2024-0001",
                        Severity::Critical,
                    ),
                    row(&a, Some(pipeline("p1")), "CVE-2024-0002", Severity::High),
                    row(&a, Some(pipeline("p1")), "CVE-2024-0003", Severity::Low),
                ],
            ),
            (
                b.clone(),
                vec![
                    row(
                        &b,
                        Some(pipeline("p2")),
                        "CVE-2024-0001",
                        Severity::Critical,
                    ),
                    row(&b, Some(pipeline("p2")), "CVE-2024-0004", Severity::Medium),
                ],
            ),
            (
                c.clone(),
                vec![row(&c, None, "GHSA-abcd-efgh-ijkl", Severity::Untriaged)],
            ),
            (
                d.clone(),
                vec![row(&d, None, "CVE-2024-0001", Severity::High)],
            ),
            (
                w.clone(),
                vec![row(&w, None, "CVE-2024-0009", Severity::Medium)],
            ),
        ],
    );
}

fn filter(name: &str, value: &str) -> ImageScanFindingsFilter {
    ImageScanFindingsFilter::builder()
        .name(name)
        .values(value)
        .build()
}

/// `image-name:vulnerability id` of each finding of one call.
async fn keys(client: &Client, f: Option<ImageScanFindingsFilter>) -> Vec<String> {
    let out = client
        .list_image_scan_findings()
        .set_filters(f.map(|f| vec![f]))
        .send()
        .await
        .expect("ListImageScanFindings");
    assert!(out.next_token().is_none());
    out.findings()
        .iter()
        .map(|f| {
            let arn = f.image_build_version_arn().unwrap_or_default();
            let name = arn.split('/').nth(1).unwrap_or_default();
            format!(
                "{name}:{}",
                f.package_vulnerability_details()
                    .map(|d| d.vulnerability_id())
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_are_listed_by_each_filter_in_the_caller_s_scope() {
    let mut server = Server::start_with_accounts(&format!("{OTHER_KEY}={OTHER_ACCOUNT}"));
    seed_all(&mut server);
    let client = server.client();
    assert_eq!(
        keys(&client, None).await,
        [
            "a:CVE-2024-0001",
            "a:CVE-2024-0002",
            "a:CVE-2024-0003",
            "b:CVE-2024-0001",
            "b:CVE-2024-0004",
            "c:GHSA-abcd-efgh-ijkl"
        ]
    );
    let b = image(DEFAULT_ACCOUNT, "us-east-1", "b");
    assert_eq!(
        keys(&client, Some(filter("imageBuildVersionArn", &b))).await,
        ["b:CVE-2024-0001", "b:CVE-2024-0004"]
    );
    assert_eq!(
        keys(&client, Some(filter("imagePipelineArn", &pipeline("p1")))).await,
        ["a:CVE-2024-0001", "a:CVE-2024-0002", "a:CVE-2024-0003"]
    );
    assert_eq!(
        keys(&client, Some(filter("vulnerabilityId", "CVE-2024-0001"))).await,
        ["a:CVE-2024-0001", "b:CVE-2024-0001"]
    );
    assert_eq!(
        keys(&client, Some(filter("severity", "CRITICAL"))).await,
        ["a:CVE-2024-0001", "b:CVE-2024-0001"]
    );
    assert_eq!(
        keys(&client, Some(filter("severity", "UNTRIAGED"))).await,
        ["c:GHSA-abcd-efgh-ijkl"]
    );
    // Another account's image is not in the caller's findings; that account sees its own.
    let d = image(OTHER_ACCOUNT, "us-east-1", "d");
    assert!(keys(&client, Some(filter("imageBuildVersionArn", &d)))
        .await
        .is_empty());
    let other = server.client_as(OTHER_KEY, "us-east-1");
    assert_eq!(keys(&other, None).await, ["d:CVE-2024-0001"]);
    // Another Region has its own.
    let west = server.client_as(common::DEFAULT_KEY, "us-west-2");
    assert_eq!(keys(&west, None).await, ["w:CVE-2024-0009"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_member_of_a_finding_is_answered() {
    let mut server = Server::start();
    seed_all(&mut server);
    let client = server.client();
    let a = image(DEFAULT_ACCOUNT, "us-east-1", "a");
    let out = client
        .list_image_scan_findings()
        .filters(filter("imageBuildVersionArn", &a))
        .send()
        .await
        .expect("ListImageScanFindings");
    let f = &out.findings()[1];
    assert_eq!(f.aws_account_id(), Some(DEFAULT_ACCOUNT));
    assert_eq!(f.image_build_version_arn(), Some(a.as_str()));
    assert_eq!(f.image_pipeline_arn(), Some(pipeline("p1").as_str()));
    assert_eq!(f.r#type(), Some("PACKAGE_VULNERABILITY"));
    assert_eq!(f.title(), Some("CVE-2024-0002 - openssl"));
    assert_eq!(
        f.description(),
        Some("A crafted certificate makes the server stop.")
    );
    assert_eq!(f.severity(), Some("HIGH"));
    assert_eq!(f.fix_available(), Some("YES"));
    assert_eq!(f.inspector_score(), Some(7.5));
    // The SDK reads the seconds as a double: a millisecond may round away.
    let observed = f
        .first_observed_at()
        .map(|t| t.to_millis().unwrap())
        .unwrap_or(0);
    assert!((observed - OBSERVED).abs() <= 1, "{observed}");
    assert_eq!(
        f.updated_at().map(|t| t.to_millis().unwrap()),
        Some(UPDATED)
    );
    let recommendation = f
        .remediation()
        .and_then(|r| r.recommendation())
        .expect("a recommendation");
    assert_eq!(
        recommendation.text(),
        Some("Upgrade openssl to 3.0.15-1~deb12u1")
    );
    assert_eq!(
        recommendation.url(),
        Some("https://security-tracker.debian.org/tracker/CVE-2024-0002")
    );
    let adjusted = f
        .inspector_score_details()
        .and_then(|d| d.adjusted_cvss())
        .expect("adjustedCvss");
    assert_eq!(adjusted.score_source(), Some("NVD"));
    assert_eq!(adjusted.cvss_source(), Some("NVD"));
    assert_eq!(adjusted.version(), Some("3.1"));
    assert_eq!(adjusted.score(), Some(7.5));
    assert_eq!(
        adjusted.scoring_vector(),
        Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H")
    );
    assert!(adjusted.adjustments().is_empty());
    let details = f.package_vulnerability_details().expect("details");
    assert_eq!(details.vulnerability_id(), "CVE-2024-0002");
    assert_eq!(details.source(), Some("DEBIAN_CVE"));
    assert_eq!(
        details.source_url(),
        Some("https://security-tracker.debian.org/tracker/CVE-2024-0002")
    );
    assert_eq!(details.vendor_severity(), Some("high"));
    assert_eq!(
        details.vendor_created_at().map(|t| t.to_millis().unwrap()),
        Some(1_720_000_000_000)
    );
    assert_eq!(
        details.vendor_updated_at().map(|t| t.to_millis().unwrap()),
        Some(1_730_000_000_500)
    );
    assert_eq!(details.related_vulnerabilities(), ["DSA-5764-1"]);
    assert_eq!(
        details.reference_urls(),
        ["https://www.openssl.org/news/secadv/20240903.txt"]
    );
    let cvss = &details.cvss()[0];
    assert_eq!(
        (cvss.base_score(), cvss.version(), cvss.source()),
        (Some(7.5), Some("3.1"), Some("NVD"))
    );
    assert!(cvss.scoring_vector().is_some());
    let p = &details.vulnerable_packages()[0];
    assert_eq!(p.name(), Some("libssl3"));
    assert_eq!(p.version(), Some("3.0.14"));
    assert_eq!(p.epoch(), Some(0));
    assert_eq!(p.release(), Some("1~deb12u2"));
    assert_eq!(p.arch(), Some("X86_64"));
    assert_eq!(p.package_manager(), Some("OS"));
    assert_eq!(p.fixed_in_version(), Some("3.0.15-1~deb12u1"));
    assert_eq!(
        p.remediation(),
        Some("apt-get install --only-upgrade libssl3")
    );

    // On the wire the timestamps are epoch seconds, as numbers; a CreateImage image's finding
    // has no imagePipelineArn.
    let response = server.raw(
        "POST",
        "/ListImageScanFindings",
        br#"{"filters":[{"name":"severity","values":["UNTRIAGED"]}]}"#,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let body: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
    let finding = &body["findings"][0];
    assert_eq!(
        finding["firstObservedAt"],
        serde_json::json!(1_764_151_200.123)
    );
    assert_eq!(finding["updatedAt"], serde_json::json!(1_764_237_600.0));
    assert!(finding["packageVulnerabilityDetails"]["vendorCreatedAt"].is_number());
    assert!(finding.get("imagePipelineArn").is_none(), "{finding}");
    assert_eq!(finding["severity"], "UNTRIAGED");
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_come_in_pages() {
    let mut server = Server::start();
    seed_all(&mut server);
    let client = server.client();
    let page = |max: i32, token: Option<String>| {
        let client = client.clone();
        async move {
            let out = client
                .list_image_scan_findings()
                .max_results(max)
                .set_next_token(token)
                .send()
                .await
                .expect("a page");
            let ids: Vec<String> = out
                .findings()
                .iter()
                .map(|f| {
                    f.package_vulnerability_details()
                        .unwrap()
                        .vulnerability_id()
                        .to_string()
                })
                .collect();
            (ids, out.next_token)
        }
    };
    let (first, token) = page(4, None).await;
    assert_eq!(first.len(), 4);
    let (second, token) = page(4, Some(token.expect("a token after a full page"))).await;
    assert_eq!(second, ["CVE-2024-0004", "GHSA-abcd-efgh-ijkl"]);
    assert!(token.is_none());
    // One at a time: every finding once.
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let (ids, next) = page(1, token).await;
        all.extend(ids);
        token = next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(all.len(), 6, "{all:?}");
    // A filtered list pages too, and a token of another list is refused.
    let out = client
        .list_image_scan_findings()
        .filters(filter("vulnerabilityId", "CVE-2024-0001"))
        .max_results(1)
        .send()
        .await
        .expect("a filtered page");
    assert_eq!(out.findings().len(), 1);
    let token = out.next_token.expect("a token");
    let next = client
        .list_image_scan_findings()
        .filters(filter("vulnerabilityId", "CVE-2024-0001"))
        .max_results(1)
        .next_token(&token)
        .send()
        .await
        .expect("the next page");
    assert_eq!(
        next.findings()[0].image_build_version_arn(),
        Some(image(DEFAULT_ACCOUNT, "us-east-1", "b").as_str())
    );
    let foreign = client
        .list_image_scan_finding_aggregations()
        .next_token(&token)
        .send()
        .await;
    assert_eq!(error_code(&foreign), "InvalidPaginationTokenException");
    let forged = client
        .list_image_scan_findings()
        .next_token("bm90LWEtdG9rZW4.AAAA")
        .send()
        .await;
    assert_eq!(error_code(&forged), "InvalidPaginationTokenException");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_filters_and_page_sizes_are_refused() {
    let server = Server::start();
    let client = server.client();
    let two_values = client
        .list_image_scan_findings()
        .filters(
            ImageScanFindingsFilter::builder()
                .name("severity")
                .values("HIGH")
                .values("LOW")
                .build(),
        )
        .send()
        .await;
    assert_eq!(
        error_code(&two_values),
        "InvalidRequestException",
        "{two_values:?}"
    );
    let two_filters = client
        .list_image_scan_findings()
        .filters(filter("severity", "HIGH"))
        .filters(filter("vulnerabilityId", "CVE-1"))
        .send()
        .await;
    assert_eq!(
        error_code(&two_filters),
        "InvalidRequestException",
        "{two_filters:?}"
    );
    let bad_severity = client
        .list_image_scan_findings()
        .filters(filter("severity", "high"))
        .send()
        .await;
    assert_eq!(error_code(&bad_severity), "InvalidParameterValueException");
    assert!(
        error_message(&bad_severity).contains("filters[0].values"),
        "{}",
        error_message(&bad_severity)
    );
    let bad_name = client
        .list_image_scan_findings()
        .filters(filter("accountId", DEFAULT_ACCOUNT))
        .send()
        .await;
    assert_eq!(error_code(&bad_name), "InvalidRequestException");
    assert!(error_message(&bad_name).contains("filters[0].name"));
    let bad_arn = client
        .list_image_scan_findings()
        .filters(filter("imageBuildVersionArn", "not-an-arn"))
        .send()
        .await;
    assert_eq!(error_code(&bad_arn), "InvalidParameterValueException");
    for max in [0, 101] {
        let out = client
            .list_image_scan_findings()
            .max_results(max)
            .send()
            .await;
        assert_eq!(
            error_code(&out),
            "InvalidRequestException",
            "maxResults {max}: {out:?}"
        );
    }
    let agg_values = client
        .list_image_scan_finding_aggregations()
        .filter(
            Filter::builder()
                .name("vulnerabilityId")
                .values("A")
                .values("B")
                .build(),
        )
        .send()
        .await;
    assert_eq!(error_code(&agg_values), "InvalidRequestException");
    let agg_severity = client
        .list_image_scan_finding_aggregations()
        .filter(Filter::builder().name("severity").values("HIGH").build())
        .send()
        .await;
    assert_eq!(error_code(&agg_severity), "InvalidRequestException");
    let agg_account = client
        .list_image_scan_finding_aggregations()
        .filter(Filter::builder().name("accountId").values("12").build())
        .send()
        .await;
    assert_eq!(error_code(&agg_account), "InvalidParameterValueException");
}

/// (aggregation type, the key the one aggregation names, all, critical, high, medium).
async fn aggregation(client: &Client, f: Option<(&str, &str)>) -> (String, String, [i64; 4]) {
    let out = client
        .list_image_scan_finding_aggregations()
        .set_filter(f.map(|(name, value)| Filter::builder().name(name).values(value).build()))
        .send()
        .await
        .expect("ListImageScanFindingAggregations");
    assert!(out.next_token().is_none());
    assert_eq!(out.responses().len(), 1);
    let r = &out.responses()[0];
    let (key, counts) = if let Some(a) = r.account_aggregation() {
        (a.account_id(), a.severity_counts())
    } else if let Some(a) = r.image_aggregation() {
        (a.image_build_version_arn(), a.severity_counts())
    } else if let Some(a) = r.image_pipeline_aggregation() {
        (a.image_pipeline_arn(), a.severity_counts())
    } else if let Some(a) = r.vulnerability_id_aggregation() {
        (a.vulnerability_id(), a.severity_counts())
    } else {
        panic!("an aggregation: {r:?}");
    };
    let c = counts.expect("severity counts");
    (
        out.aggregation_type().unwrap_or_default().to_string(),
        key.unwrap_or_default().to_string(),
        [
            c.all().unwrap_or(-1),
            c.critical().unwrap_or(-1),
            c.high().unwrap_or(-1),
            c.medium().unwrap_or(-1),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregations_count_by_severity_for_each_filter() {
    let mut server = Server::start_with_accounts(&format!("{OTHER_KEY}={OTHER_ACCOUNT}"));
    seed_all(&mut server);
    let client = server.client();
    let own = |kind: &str, key: &str, counts: [i64; 4]| (kind.to_string(), key.to_string(), counts);
    assert_eq!(
        aggregation(&client, None).await,
        own("accountId", DEFAULT_ACCOUNT, [6, 2, 1, 1])
    );
    assert_eq!(
        aggregation(&client, Some(("accountId", DEFAULT_ACCOUNT))).await,
        own("accountId", DEFAULT_ACCOUNT, [6, 2, 1, 1])
    );
    // Another account's findings are not the caller's to count.
    assert_eq!(
        aggregation(&client, Some(("accountId", OTHER_ACCOUNT))).await,
        own("accountId", OTHER_ACCOUNT, [0, 0, 0, 0])
    );
    let p1 = pipeline("p1");
    assert_eq!(
        aggregation(&client, Some(("imagePipelineArn", &p1))).await,
        own("imagePipelineArn", &p1, [3, 1, 1, 0])
    );
    let b = image(DEFAULT_ACCOUNT, "us-east-1", "b");
    assert_eq!(
        aggregation(&client, Some(("imageBuildVersionArn", &b))).await,
        own("imageBuildVersionArn", &b, [2, 1, 0, 1])
    );
    assert_eq!(
        aggregation(&client, Some(("vulnerabilityId", "CVE-2024-0001"))).await,
        own("vulnerabilityId", "CVE-2024-0001", [2, 2, 0, 0])
    );
    let other = server.client_as(OTHER_KEY, "us-east-1");
    assert_eq!(
        aggregation(&other, None).await,
        own("accountId", OTHER_ACCOUNT, [1, 0, 1, 0])
    );
    let west = server.client_as(common::DEFAULT_KEY, "us-west-2");
    assert_eq!(
        aggregation(&west, None).await,
        own("accountId", DEFAULT_ACCOUNT, [1, 0, 0, 1])
    );
}

/// GetImage answers the image's scanning configuration and scan state; DeleteImage takes the
/// image's findings with it.
#[tokio::test(flavor = "multi_thread")]
async fn get_image_shows_scanning_and_delete_image_forgets_findings() {
    use aws_sdk_imagebuilder::types::{ImageScanningConfiguration, ImageTestsConfiguration};
    let mut server = Server::start();
    let client = server.client();
    let infra = common::create_infra(&client, "scan-infra").await;
    let recipe = common::bash_recipe(&client, "scan-recipe", common::BUSYBOX, &["true"]).await;
    let arn = client
        .create_image()
        .image_recipe_arn(&recipe)
        .infrastructure_configuration_arn(&infra)
        .image_tests_configuration(
            ImageTestsConfiguration::builder()
                .image_tests_enabled(true)
                .build(),
        )
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .image_scanning_enabled(true)
                .build(),
        )
        .send()
        .await
        .expect("CreateImage")
        .image_build_version_arn
        .expect("an image ARN");
    let image = client
        .get_image()
        .image_build_version_arn(&arn)
        .send()
        .await
        .expect("GetImage")
        .image
        .expect("an image");
    let scanning = image
        .image_scanning_configuration()
        .expect("imageScanningConfiguration");
    assert_eq!(scanning.image_scanning_enabled(), Some(true));
    assert!(
        image.scan_state().and_then(|s| s.status()).is_some(),
        "{image:?}"
    );
    let _ = client
        .cancel_image_creation()
        .image_build_version_arn(&arn)
        .send()
        .await;
    common::wait_final(&client, &arn).await;

    seed(
        &mut server,
        &[(
            arn.clone(),
            vec![row(&arn, None, "CVE-2024-0001", Severity::High)],
        )],
    );
    let client = server.client();
    assert_eq!(keys(&client, None).await.len(), 1);
    client
        .delete_image()
        .image_build_version_arn(&arn)
        .send()
        .await
        .expect("DeleteImage");
    assert!(keys(&client, None).await.is_empty());
    assert_eq!(aggregation(&client, None).await.2, [0, 0, 0, 0]);
}

/// On a shared PostgreSQL database (when `KILN_TEST_DATABASE_URL` names a server), findings
/// another process writes are listed at once, through the answer cache, and paged.
#[tokio::test(flavor = "multi_thread")]
async fn findings_on_a_shared_database_are_listed_as_written() {
    let Some(db) = kiln_store::testing::TestDatabase::create() else {
        return;
    };
    let server = Server::start_on_database(&db.url);
    let client = server.client();
    assert!(keys(&client, None).await.is_empty());
    assert_eq!(aggregation(&client, None).await.2, [0, 0, 0, 0]);
    let a = image(DEFAULT_ACCOUNT, "us-east-1", "a");
    let rows = vec![
        row(
            &a,
            Some(pipeline("p1")),
            "CVE-2024-0001",
            Severity::Critical,
        ),
        row(&a, Some(pipeline("p1")), "CVE-2024-0002", Severity::Medium),
    ];
    // The blocking client refuses to run inside the test's runtime: a thread of its own.
    let url = db.url.clone();
    std::thread::spawn(move || {
        let store = Store::open(&Database::Postgres(url), Sync::Normal).expect("the store");
        store
            .write(|tx| tx.replace_findings(&a, &rows))
            .expect("the write commits")
            .expect("findings stored");
    })
    .join()
    .expect("writing findings");
    assert_eq!(
        keys(&client, None).await,
        ["a:CVE-2024-0001", "a:CVE-2024-0002"]
    );
    assert_eq!(aggregation(&client, None).await.2, [2, 1, 0, 1]);
    let page = client
        .list_image_scan_findings()
        .filters(filter("imagePipelineArn", &pipeline("p1")))
        .max_results(1)
        .send()
        .await
        .expect("a page");
    assert_eq!(page.findings().len(), 1);
    assert!(page.next_token().is_some());
}
