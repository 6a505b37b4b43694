//! The EC2 Query API (`kiln_api::ec2`) over AMI records of three accounts: who sees which AMI,
//! filters, pagination, and the owner-only writes (tags, attributes, deprecation,
//! deregistration), each answered in EC2's XML; then the same endpoint over HTTP, where EC2
//! calls must be signed for `ec2` and Image Builder calls still for `imagebuilder`.

use kiln_api::ec2::{self, form::Params};
use kiln_api::Service;
use kiln_domain::resources::ami::{Ami, LaunchPermissions, S3ExportRecord};
use kiln_wire::RequestContext;
use std::collections::BTreeMap;

const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";
const REGION: &str = "us-east-1";
/// 2026-01-31T00:00:00Z.
const NOW: i64 = 1_769_817_600_000;
const DAY: i64 = 86_400_000;

/// A parsed XML element: name, text, children.
#[derive(Debug, Clone, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

fn local_name(e: &quick_xml::events::BytesStart) -> String {
    let local = e.local_name();
    let name: &str = local.as_ref();
    name.to_string()
}

impl Node {
    fn parse(xml: &str) -> Node {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack = vec![Node::default()];
        let mut raw = String::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => {
                    stack.push(Node {
                        name: local_name(&e),
                        ..Node::default()
                    });
                    raw.clear();
                }
                Event::Empty(e) => stack.last_mut().unwrap().children.push(Node {
                    name: local_name(&e),
                    ..Node::default()
                }),
                Event::Text(t) => raw.push_str(&t.into_inner()),
                Event::GeneralRef(r) => {
                    raw.push('&');
                    raw.push_str(&r.into_inner());
                    raw.push(';');
                }
                Event::End(_) => {
                    let mut node = stack.pop().unwrap();
                    node.text = quick_xml::escape::unescape(&raw).unwrap().into_owned();
                    raw.clear();
                    stack.last_mut().unwrap().children.push(node);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        stack.pop().unwrap().children.remove(0)
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn get(&self, path: &str) -> &Node {
        path.split('/').fold(self, |n, p| {
            n.child(p)
                .unwrap_or_else(|| panic!("no {p} in {}: {n:?}", n.name))
        })
    }

    fn text_of(&self, path: &str) -> &str {
        &self.get(path).text
    }

    fn items(&self, path: &str) -> Vec<&Node> {
        self.get(path)
            .children
            .iter()
            .filter(|c| c.name == "item")
            .collect()
    }
}

struct Fixture {
    svc: std::sync::Arc<Service>,
    _dir: tempfile::TempDir,
}

fn ami(owner: &str, region: &str, id: &str, name: &str) -> Ami {
    Ami {
        arn: Ami::key(region, owner, id),
        image_id: id.to_string(),
        name: name.to_string(),
        description: None,
        source_image: format!("arn:aws:imagebuilder:{region}:{owner}:image/x/1.0.0/1"),
        build_id: "0123456789abcdef".into(),
        image_digest: None,
        os_version: None,
        platform: "Linux".into(),
        creation_date: NOW - 10 * DAY,
        tags: BTreeMap::new(),
        launch_permission: LaunchPermissions::default(),
        kms_key_id: None,
        deprecation_time: None,
        exports: Vec::new(),
        disabled: false,
        last_launched: None,
    }
}

const A_WEB1: &str = "ami-0a00000000000001a";
const A_WEB2: &str = "ami-0a00000000000002a";
const A_API: &str = "ami-0a00000000000003a";
const A_OLD: &str = "ami-0a00000000000004a";
const A_WEST: &str = "ami-0a00000000000005a";
const B_WEB: &str = "ami-0b00000000000001b";

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::open(dir.path(), kiln_store::sqlite::Sync::Normal).unwrap();
        let mut web1 = ami(A, REGION, A_WEB1, "web-1");
        web1.tags.insert("team".into(), "web".into());
        web1.exports.push(S3ExportRecord {
            task_id: "export-ami-0123456789abcdef0".into(),
            disk_image_format: "VMDK".into(),
            s3_bucket: "exports".into(),
            s3_key: "web/export-ami-0123456789abcdef0.vmdk".into(),
            role_name: "vmimport".into(),
            size: 1024,
            completed: NOW - DAY,
        });
        let mut web2 = ami(A, REGION, A_WEB2, "web-2");
        web2.description = Some("shared with B".into());
        web2.launch_permission.user_ids.insert(B.into());
        web2.kms_key_id = Some("arn:aws:kms:us-east-1:111111111111:key/k1".into());
        let mut api = ami(A, REGION, A_API, "api-1");
        api.launch_permission.public = true;
        let mut old = ami(A, REGION, A_OLD, "web-old");
        old.launch_permission.user_ids.insert(B.into());
        old.deprecation_time = Some(NOW - DAY);
        let west = ami(A, "us-west-2", A_WEST, "web-west");
        let b_web = ami(B, REGION, B_WEB, "web-b");
        svc.store
            .write(|tx| -> kiln_core::CoreResult<()> {
                for a in [&web1, &web2, &api, &old, &west, &b_web] {
                    kiln_core::amis::put(tx, a)?;
                }
                Ok(())
            })
            .unwrap()
            .unwrap();
        Fixture {
            svc: std::sync::Arc::new(svc),
            _dir: dir,
        }
    }

    fn call(&self, account: &str, form: &str) -> Result<Node, ec2::error::Ec2Error> {
        let ctx = RequestContext {
            request_id: "req-1".into(),
            account_id: account.into(),
            region: REGION.into(),
            now_millis: NOW,
            ..Default::default()
        };
        let params = Params::from_request(None, Some(&format!("Version=2016-11-15&{form}")))?;
        ec2::call(&self.svc, &ctx, params).map(|xml| Node::parse(&xml))
    }

    fn ok(&self, account: &str, form: &str) -> Node {
        self.call(account, form)
            .unwrap_or_else(|e| panic!("{form} as {account}: {e}"))
    }

    fn code(&self, account: &str, form: &str) -> (&'static str, String) {
        let e = self
            .call(account, form)
            .err()
            .unwrap_or_else(|| panic!("{form} as {account} succeeded"));
        (e.code, e.message)
    }

    /// The image ids DescribeImages answers `account` for `form`.
    fn ids(&self, account: &str, form: &str) -> Vec<String> {
        let doc = self.ok(account, &format!("Action=DescribeImages&{form}"));
        doc.items("imagesSet")
            .iter()
            .map(|i| i.text_of("imageId").to_string())
            .collect()
    }
}

#[test]
fn each_account_sees_its_own_shared_and_public_amis_only() {
    let f = Fixture::new();
    // The owner sees all its AMIs of the Region, deprecated ones too.
    assert_eq!(f.ids(A, "Owner.1=self"), [A_WEB1, A_WEB2, A_API, A_OLD]);
    // B: its own, the one shared with it, the public one; the deprecated one shared with it
    // only when asked for, or named.
    assert_eq!(f.ids(B, ""), [A_WEB2, A_API, B_WEB]);
    assert_eq!(
        f.ids(B, "IncludeDeprecated=true"),
        [A_WEB2, A_API, A_OLD, B_WEB]
    );
    assert_eq!(f.ids(B, &format!("ImageId.1={A_OLD}")), [A_OLD]);
    assert_eq!(f.ids(B, &format!("Owner.1={A}")), [A_WEB2, A_API]);
    // C sees only the public AMI of A; A's private ones do not exist for it.
    assert_eq!(f.ids(C, &format!("Owner.1={A}")), [A_API]);
    assert_eq!(f.ids(C, ""), [A_API]);
    let (code, message) = f.code(C, &format!("Action=DescribeImages&ImageId.1={A_WEB1}"));
    assert_eq!(code, "InvalidAMIID.NotFound");
    assert!(message.contains(A_WEB1), "{message}");
    // Another Region's AMIs do not exist here.
    assert_eq!(
        f.code(A, &format!("Action=DescribeImages&ImageId.1={A_WEST}"))
            .0,
        "InvalidAMIID.NotFound"
    );
    // Aliases own nothing in Kiln.
    assert!(f
        .ids(A, "Owner.1=amazon&Owner.2=aws-marketplace")
        .is_empty());
    assert_eq!(
        f.ids(
            B,
            &format!("Owner.1=self&Owner.2={A}&Filter.1.Name=name&Filter.1.Value.1=web-*")
        ),
        [A_WEB2, B_WEB]
    );
}

#[test]
fn executable_by_follows_ec2() {
    let f = Fixture::new();
    assert_eq!(f.ids(B, "ExecutableBy.1=self"), [A_WEB2, B_WEB]);
    assert_eq!(f.ids(B, &format!("ExecutableBy.1={B}")), [A_WEB2, B_WEB]);
    assert_eq!(f.ids(B, "ExecutableBy.1=all"), [A_API]);
    // A asks whom its AMIs are shared with; B cannot learn that of A's AMIs.
    assert_eq!(
        f.ids(A, &format!("ExecutableBy.1={B}&IncludeDeprecated=true")),
        [A_WEB2, A_OLD]
    );
    assert!(f.ids(C, &format!("ExecutableBy.1={B}")).is_empty());
}

#[test]
fn filters_and_the_item_members() {
    let f = Fixture::new();
    let q = |filters: &str| f.ids(A, &format!("Owner.1=self&{filters}"));
    assert_eq!(
        q("Filter.1.Name=name&Filter.1.Value.1=web-%3F"),
        [A_WEB1, A_WEB2]
    );
    assert_eq!(
        q("Filter.1.Name=name&Filter.1.Value.1=*-1"),
        [A_WEB1, A_API]
    );
    assert_eq!(q("Filter.1.Name=tag%3Ateam&Filter.1.Value.1=web"), [A_WEB1]);
    assert_eq!(q("Filter.1.Name=tag-key&Filter.1.Value.1=team"), [A_WEB1]);
    assert_eq!(q("Filter.1.Name=is-public&Filter.1.Value.1=true"), [A_API]);
    assert_eq!(
        q("Filter.1.Name=name&Filter.1.Value.1=web*&Filter.2.Name=block-device-mapping.encrypted&Filter.2.Value.1=true"),
        [A_WEB2]
    );
    assert_eq!(
        q(&format!(
            "Filter.1.Name=image-id&Filter.1.Value.1={A_API}&Filter.1.Value.2={A_OLD}"
        )),
        [A_API, A_OLD]
    );
    assert_eq!(q("Filter.1.Name=state&Filter.1.Value.1=available").len(), 4);
    assert!(q("Filter.1.Name=owner-alias&Filter.1.Value.1=amazon").is_empty());
    assert_eq!(
        q("Filter.1.Name=creation-date&Filter.1.Value.1=2026-01-21T*").len(),
        4
    );
    let (code, message) = f.code(
        A,
        "Action=DescribeImages&Filter.1.Name=colour&Filter.1.Value.1=red",
    );
    assert_eq!(code, "InvalidParameterValue");
    assert!(message.contains("'colour'"), "{message}");

    let doc = f.ok(B, &format!("Action=DescribeImages&ImageId.1={A_WEB2}"));
    assert_eq!(doc.name, "DescribeImagesResponse");
    assert_eq!(doc.text_of("requestId"), "req-1");
    let item = doc.items("imagesSet")[0];
    for (path, value) in [
        ("imageId", A_WEB2),
        ("imageLocation", "111111111111/web-2"),
        ("imageState", "available"),
        ("imageOwnerId", A),
        ("creationDate", "2026-01-21T00:00:00.000Z"),
        ("isPublic", "false"),
        ("architecture", "x86_64"),
        ("imageType", "machine"),
        ("name", "web-2"),
        ("description", "shared with B"),
        ("rootDeviceType", "ebs"),
        ("rootDeviceName", "/dev/xvda"),
        ("virtualizationType", "hvm"),
        ("hypervisor", "xen"),
        ("enaSupport", "true"),
        ("platformDetails", "Linux/UNIX"),
        ("usageOperation", "RunInstances"),
    ] {
        assert_eq!(item.text_of(path), value, "{path}");
    }
    let bdm = item.items("blockDeviceMapping")[0];
    assert_eq!(bdm.text_of("deviceName"), "/dev/xvda");
    assert_eq!(
        bdm.text_of("ebs/snapshotId"),
        kiln_core::amis::snapshot_id(A_WEB2)
    );
    assert_eq!(bdm.text_of("ebs/encrypted"), "true");
    assert_eq!(
        bdm.text_of("ebs/kmsKeyId"),
        "arn:aws:kms:us-east-1:111111111111:key/k1"
    );
    let old = f.ok(A, &format!("Action=DescribeImages&ImageId.1={A_OLD}"));
    assert_eq!(
        old.items("imagesSet")[0].text_of("deprecationTime"),
        "2026-01-30T00:00:00.000Z"
    );
}

#[test]
fn pages_follow_signed_tokens() {
    let f = Fixture::new();
    f.svc
        .store
        .write(|tx| -> kiln_core::CoreResult<()> {
            for i in 0..9 {
                let id = format!("ami-0c0000000000000{i:02}");
                kiln_core::amis::put(tx, &ami(A, REGION, &id, &format!("bulk-{i}")))?;
            }
            Ok(())
        })
        .unwrap()
        .unwrap();
    let all = f.ids(A, "Owner.1=self");
    assert_eq!(all.len(), 13);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut form = "Action=DescribeImages&Owner.1=self&MaxResults=5".to_string();
        if let Some(t) = &token {
            form.push_str(&format!("&NextToken={}", percent_encode(t)));
        }
        let doc = f.ok(A, &form);
        pages += 1;
        let items = doc.items("imagesSet");
        assert!(items.len() <= 5);
        seen.extend(items.iter().map(|i| i.text_of("imageId").to_string()));
        match doc.child("nextToken") {
            Some(t) => token = Some(t.text.clone()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all);
    // A token is A's: another account cannot use it, nor an altered one.
    let first = f.ok(A, "Action=DescribeImages&Owner.1=self&MaxResults=5");
    let t = first.text_of("nextToken").to_string();
    let (code, _) = f.code(
        B,
        &format!(
            "Action=DescribeImages&MaxResults=5&NextToken={}",
            percent_encode(&t)
        ),
    );
    assert_eq!(code, "InvalidParameterValue");
    assert_eq!(
        f.code(A, "Action=DescribeImages&NextToken=garbage").0,
        "InvalidParameterValue"
    );
    assert_eq!(
        f.code(A, "Action=DescribeImages&MaxResults=4").0,
        "InvalidParameterValue"
    );
    assert_eq!(
        f.code(
            A,
            &format!("Action=DescribeImages&MaxResults=5&ImageId.1={A_API}")
        )
        .0,
        "InvalidParameterCombination"
    );
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn only_the_owner_tags_and_tags_are_all_or_nothing() {
    let f = Fixture::new();
    let tag = |account: &str, ids: &[&str], extra: &str| {
        let ids: String = ids
            .iter()
            .enumerate()
            .map(|(i, id)| format!("&ResourceId.{}={id}", i + 1))
            .collect();
        f.call(
            account,
            &format!("Action=CreateTags{ids}&Tag.1.Key=env&Tag.1.Value=prod{extra}"),
        )
    };
    // B may launch A's shared AMI but not tag it; C does not even see A's private one.
    assert_eq!(tag(B, &[A_WEB2], "").unwrap_err().code, "AuthFailure");
    assert_eq!(
        tag(C, &[A_WEB1], "").unwrap_err().code,
        "InvalidAMIID.NotFound"
    );
    // One AMI A may not tag: none is tagged.
    assert_eq!(
        tag(A, &[A_WEB1, B_WEB], "").unwrap_err().code,
        "InvalidAMIID.NotFound"
    );
    assert!(f
        .ids(A, "Filter.1.Name=tag-key&Filter.1.Value.1=env")
        .is_empty());
    // A dry run says it would work, and changes nothing.
    assert_eq!(
        tag(A, &[A_WEB1], "&DryRun=true").unwrap_err().code,
        "DryRunOperation"
    );
    assert!(f
        .ids(A, "Filter.1.Name=tag-key&Filter.1.Value.1=env")
        .is_empty());
    assert_eq!(
        tag(B, &[A_WEB2], "&DryRun=true").unwrap_err().code,
        "UnauthorizedOperation"
    );
    let doc = tag(A, &[A_WEB1, A_WEB2], "").unwrap();
    assert_eq!(doc.name, "CreateTagsResponse");
    assert_eq!(doc.text_of("return"), "true");
    assert_eq!(
        f.ids(A, "Filter.1.Name=tag%3Aenv&Filter.1.Value.1=prod"),
        [A_WEB1, A_WEB2]
    );
    // B sees the owner's tags on the AMI shared with it.
    let seen = f.ok(B, &format!("Action=DescribeImages&ImageId.1={A_WEB2}"));
    let tags = seen.items("imagesSet")[0].items("tagSet");
    assert_eq!(
        (tags[0].text_of("key"), tags[0].text_of("value")),
        ("env", "prod")
    );

    // DeleteTags with a value deletes only a tag with that value; without one, any value.
    f.ok(
        A,
        &format!("Action=DeleteTags&ResourceId.1={A_WEB1}&Tag.1.Key=env&Tag.1.Value=dev"),
    );
    assert_eq!(
        f.ids(A, "Filter.1.Name=tag-key&Filter.1.Value.1=env"),
        [A_WEB1, A_WEB2]
    );
    f.ok(
        A,
        &format!("Action=DeleteTags&ResourceId.1={A_WEB1}&Tag.1.Key=env&Tag.1.Value=prod"),
    );
    assert_eq!(
        f.ids(A, "Filter.1.Name=tag-key&Filter.1.Value.1=env"),
        [A_WEB2]
    );
    f.ok(
        A,
        &format!("Action=DeleteTags&ResourceId.1={A_WEB2}&Tag.1.Key=env"),
    );
    assert!(f
        .ids(A, "Filter.1.Name=tag-key&Filter.1.Value.1=env")
        .is_empty());
    // Without tags: every tag goes.
    f.ok(A, &format!("Action=DeleteTags&ResourceId.1={A_WEB1}"));
    assert!(f
        .ids(A, "Filter.1.Name=tag-key&Filter.1.Value.1=team")
        .is_empty());
    let (code, message) = f.code(
        A,
        "Action=CreateTags&ResourceId.1=i-0123456789abcdef0&Tag.1.Key=k",
    );
    assert_eq!(code, "InvalidID");
    assert!(message.contains("only AMIs"), "{message}");
}

#[test]
fn launch_permissions_share_and_unshare() {
    let f = Fixture::new();
    assert_eq!(
        f.code(
            B,
            &format!(
                "Action=ModifyImageAttribute&ImageId={A_WEB2}&LaunchPermission.Add.1.UserId={C}"
            )
        )
        .0,
        "AuthFailure"
    );
    f.ok(
        A,
        &format!("Action=ModifyImageAttribute&ImageId={A_WEB1}&LaunchPermission.Add.1.UserId={C}"),
    );
    assert_eq!(f.ids(C, ""), [A_WEB1, A_API]);
    let doc = f.ok(
        A,
        &format!("Action=DescribeImageAttribute&ImageId={A_WEB1}&Attribute=launchPermission"),
    );
    assert_eq!(doc.text_of("imageId"), A_WEB1);
    let grants = doc.items("launchPermission");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].text_of("userId"), C);
    // Only the owner may read the attributes, even of an AMI shared with the caller.
    assert_eq!(
        f.code(
            C,
            &format!("Action=DescribeImageAttribute&ImageId={A_WEB1}&Attribute=launchPermission")
        )
        .0,
        "AuthFailure"
    );
    // The older form: Attribute, OperationType, UserId.N.
    f.ok(A, &format!("Action=ModifyImageAttribute&ImageId={A_WEB1}&Attribute=launchPermission&OperationType=remove&UserId.1={C}"));
    assert_eq!(f.ids(C, ""), [A_API]);

    // Making it public: everyone sees it, and EC2's two-year deprecation applies.
    f.ok(
        A,
        &format!("Action=ModifyImageAttribute&ImageId={A_WEB1}&LaunchPermission.Add.1.Group=all"),
    );
    let doc = f.ok(C, &format!("Action=DescribeImages&ImageId.1={A_WEB1}"));
    let item = doc.items("imagesSet")[0];
    assert_eq!(item.text_of("isPublic"), "true");
    assert_eq!(item.text_of("deprecationTime"), "2028-01-21T00:00:00.000Z");
    let (code, _) = f.code(
        A,
        &format!("Action=DisableImageDeprecation&ImageId={A_WEB1}"),
    );
    assert_eq!(code, "OperationNotPermitted");
    f.ok(
        A,
        &format!("Action=ResetImageAttribute&ImageId={A_WEB1}&Attribute=launchPermission"),
    );
    assert_eq!(f.ids(C, ""), [A_API]);

    // The description.
    f.ok(
        A,
        &format!(
            "Action=ModifyImageAttribute&ImageId={A_WEB1}&Description.Value=new+words+%26+more"
        ),
    );
    let doc = f.ok(
        A,
        &format!("Action=DescribeImageAttribute&ImageId={A_WEB1}&Attribute=description"),
    );
    assert_eq!(doc.text_of("description/value"), "new words & more");
    let doc = f.ok(
        A,
        &format!("Action=DescribeImageAttribute&ImageId={A_WEB1}&Attribute=kernel"),
    );
    assert!(doc.get("kernel").children.is_empty());
    assert_eq!(
        f.code(
            A,
            &format!("Action=DescribeImageAttribute&ImageId={A_WEB1}&Attribute=blockDeviceMapping")
        )
        .0,
        "AuthFailure"
    );
}

#[test]
fn deprecation_and_deregistration() {
    let f = Fixture::new();
    // Rounded to the nearest minute.
    f.ok(
        B,
        &format!(
            "Action=EnableImageDeprecation&ImageId={B_WEB}&DeprecateAt=2026-02-02T10%3A20%3A40Z"
        ),
    );
    let doc = f.ok(B, &format!("Action=DescribeImages&ImageId.1={B_WEB}"));
    assert_eq!(
        doc.items("imagesSet")[0].text_of("deprecationTime"),
        "2026-02-02T10:21:00.000Z"
    );
    let (code, message) = f.code(
        B,
        &format!(
            "Action=EnableImageDeprecation&ImageId={B_WEB}&DeprecateAt=2025-01-01T00%3A00%3A00Z"
        ),
    );
    assert_eq!(code, "InvalidParameterValue");
    assert!(message.contains("past"), "{message}");
    assert_eq!(
        f.code(B, &format!("Action=EnableImageDeprecation&ImageId={B_WEB}&DeprecateAt=2040-01-01T00%3A00%3A00Z")).0,
        "InvalidParameterValue"
    );
    f.ok(
        B,
        &format!("Action=DisableImageDeprecation&ImageId={B_WEB}"),
    );
    let doc = f.ok(B, &format!("Action=DescribeImages&ImageId.1={B_WEB}"));
    assert!(doc.items("imagesSet")[0].child("deprecationTime").is_none());

    assert_eq!(
        f.code(B, &format!("Action=DeregisterImage&ImageId={A_WEB2}"))
            .0,
        "AuthFailure"
    );
    let doc = f.ok(
        A,
        &format!("Action=DeregisterImage&ImageId={A_WEB2}&DeleteAssociatedSnapshots=true"),
    );
    assert_eq!(doc.text_of("return"), "true");
    assert_eq!(
        doc.items("deleteSnapshotResultSet")[0].text_of("snapshotId"),
        kiln_core::amis::snapshot_id(A_WEB2)
    );
    assert_eq!(f.ids(B, ""), [A_API, B_WEB]);
    assert_eq!(
        f.code(A, &format!("Action=DeregisterImage&ImageId={A_WEB2}"))
            .0,
        "InvalidAMIID.NotFound"
    );
}

#[test]
fn export_tasks_are_the_owners() {
    let f = Fixture::new();
    let doc = f.ok(A, "Action=DescribeExportImageTasks");
    let tasks = doc.items("exportImageTaskSet");
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].text_of("exportImageTaskId"),
        "export-ami-0123456789abcdef0"
    );
    assert_eq!(tasks[0].text_of("imageId"), A_WEB1);
    assert_eq!(tasks[0].text_of("s3ExportLocation/s3Bucket"), "exports");
    assert_eq!(tasks[0].text_of("s3ExportLocation/s3Prefix"), "web/");
    assert_eq!(tasks[0].text_of("status"), "completed");
    assert!(f
        .ok(B, "Action=DescribeExportImageTasks")
        .items("exportImageTaskSet")
        .is_empty());
    assert_eq!(
        f.code(
            B,
            "Action=DescribeExportImageTasks&ExportImageTaskId.1=export-ami-0123456789abcdef0"
        )
        .0,
        "InvalidExportImageTaskId.NotFound"
    );
}

#[test]
fn malformed_calls_get_ec2_errors() {
    let f = Fixture::new();
    for (form, code) in [
        ("Action=DescribeImages&Colour=red", "UnknownParameter"),
        (
            "Action=DescribeImages&ImageId.1=ami-nope",
            "InvalidAMIID.Malformed",
        ),
        (
            "Action=DescribeImages&Owner.1=bob",
            "InvalidUserID.Malformed",
        ),
        ("Action=DescribeImages&DryRun=true", "DryRunOperation"),
        (
            "Action=RunInstances&ImageId=ami-12345678",
            "UnsupportedOperation",
        ),
        ("Action=LaunchRockets", "InvalidAction"),
        ("Colour=red", "MissingAction"),
        (
            "Action=DescribeImageAttribute&ImageId=ami-12345678",
            "MissingParameter",
        ),
        (
            "Action=ModifyImageAttribute&ImageId=ami-12345678",
            "MissingParameter",
        ),
        (
            "Action=ResetImageAttribute&ImageId=ami-12345678&Attribute=description",
            "InvalidParameterValue",
        ),
    ] {
        let got = f
            .call(A, form)
            .err()
            .unwrap_or_else(|| panic!("{form} succeeded"));
        assert_eq!(got.code, code, "{form}: {}", got.message);
    }
}

// --- Over HTTP ---------------------------------------------------------------------------------

mod http {
    use super::*;
    use kiln_api::{serve, Authenticator, ServerConfig};
    use kiln_auth::credentials::{append, Key};
    use kiln_auth::sigv4::{self, Settings};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn send(
        addr: std::net::SocketAddr,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        (status, content_type, body.to_string())
    }

    /// Signs requests to the test server with one key.
    struct Signer<'a> {
        key: &'a Key,
        addr: std::net::SocketAddr,
    }

    impl Signer<'_> {
        /// The headers of a request signed for `settings`' service.
        fn sign(
            &self,
            settings: &Settings,
            method: &str,
            path: &str,
            query: &str,
            content_type: Option<&str>,
            body: &str,
        ) -> Vec<(String, String)> {
            let key = self.key;
            let mut headers = vec![("host".to_string(), self.addr.to_string())];
            if let Some(ct) = content_type {
                headers.push(("content-type".to_string(), ct.to_string()));
            }
            let request = sigv4::Request {
                method,
                raw_path: path,
                raw_query: query,
                headers: &headers,
                authority: None,
                body: body.as_bytes(),
                body_follows: false,
            };
            let added = sigv4::sign_request(
                &request,
                &sigv4::Credentials {
                    access_key_id: key.access_key_id.clone(),
                    secret_access_key: key.secret_access_key.clone(),
                    session_token: None,
                },
                REGION,
                chrono::Utc::now(),
                settings,
            );
            headers.extend(added);
            headers
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ec2_calls_are_signed_for_ec2_beside_image_builders() {
        let f = Fixture::new();
        let credentials = f._dir.path().join("credentials");
        let key = Key::generate("b", B, None);
        append(&credentials, &key).unwrap();
        let auth =
            Authenticator::verify(credentials, kiln_auth::regions::Regions::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let signer = Signer { key: &key, addr };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let svc = f.svc.clone();
        tokio::spawn(serve(
            listener,
            svc,
            ServerConfig {
                auth: Arc::new(auth),
                tls: None,
                extension: None,
                throttle: Default::default(),
                readiness: None,
            },
            async {
                let _ = stopped.await;
            },
        ));
        let form =
            "Action=DescribeImages&Version=2016-11-15&Filter.1.Name=name&Filter.1.Value.1=web-%2A";
        let ct = "application/x-www-form-urlencoded; charset=utf-8";
        let h = signer.sign(&Settings::ec2(), "POST", "/", "", Some(ct), form);
        let (status, content_type, body) = send(addr, "POST", "/", &h, form).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "text/xml;charset=utf-8");
        let doc = Node::parse(&body);
        let ids: Vec<&str> = doc
            .items("imagesSet")
            .iter()
            .map(|i| i.text_of("imageId"))
            .collect();
        assert_eq!(ids, [A_WEB2, B_WEB]);

        // The same parameters in a GET query string.
        let query = "Action=DescribeImages&Owner.1=self&Version=2016-11-15";
        let h = signer.sign(&Settings::ec2(), "GET", "/", query, None, "");
        let (status, _, body) = send(addr, "GET", &format!("/?{query}"), &h, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(Node::parse(&body).items("imagesSet").len(), 1);

        // A signature for imagebuilder does not pass for EC2, and the refusal is EC2's XML.
        let h = signer.sign(&Settings::imagebuilder(), "POST", "/", "", Some(ct), form);
        let (status, _, body) = send(addr, "POST", "/", &h, form).await;
        assert_eq!(status, 403);
        let doc = Node::parse(&body);
        assert_eq!(doc.text_of("Errors/Error/Code"), "SignatureDoesNotMatch");
        assert!(doc.text_of("Errors/Error/Message").contains("'ec2'"));

        // Errors of the call itself are EC2's XML too.
        let bad = "Action=DescribeImages&Version=2016-11-15&ImageId.1=ami-0000000000000000f";
        let h = signer.sign(&Settings::ec2(), "POST", "/", "", Some(ct), bad);
        let (status, _, body) = send(addr, "POST", "/", &h, bad).await;
        assert_eq!(status, 400);
        assert_eq!(
            Node::parse(&body).text_of("Errors/Error/Code"),
            "InvalidAMIID.NotFound"
        );

        // Image Builder calls are untouched: JSON, and only with an imagebuilder signature.
        let json = Some("application/json");
        let h = signer.sign(
            &Settings::imagebuilder(),
            "POST",
            "/ListComponents",
            "",
            json,
            "{}",
        );
        let (status, content_type, body) = send(addr, "POST", "/ListComponents", &h, "{}").await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/json"),
            "{body}"
        );
        let h = signer.sign(&Settings::ec2(), "POST", "/ListComponents", "", json, "{}");
        let (status, _, body) = send(addr, "POST", "/ListComponents", &h, "{}").await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("'imagebuilder'"), "{body}");
        let _ = stop.send(());
    }
}
