//! Parent resolution (`kiln_core::parents`) over images made through the API: each account
//! resolves only its own images, and CreateImageRecipe refuses another account's as a parent.

use kiln_api::Service;
use kiln_core::parents::{by_ami, newest_available, resolved_parent};
use kiln_domain::arn::Arn;
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_store::TxnExt;
use kiln_wire::{Operation, RequestContext};
use serde_json::{json, Value};

#[test]
fn resolution_finds_only_the_callers_images() {
    const A: &str = "123456789012";
    const B: &str = "111122223333";
    const REGION: &str = "us-east-1";
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(dir.path(), kiln_store::sqlite::Sync::Normal).unwrap();
    let call = |account: &str, op: Operation, input: Value| {
        let ctx = RequestContext {
            request_id: "r".into(),
            account_id: account.into(),
            region: REGION.into(),
            now_millis: 1_795_694_400_000,
            valid_until: Default::default(),
            ..Default::default()
        };
        svc.call(op, &ctx, input)
            .map(|out| serde_json::from_str::<Value>(&out).unwrap())
    };
    call(A, Operation::CreateComponent, json!({"name": "comp", "semanticVersion": "1.0.0",
        "platform": "Linux", "clientToken": "c",
        "data": "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: S, action: ExecuteBash, inputs: {commands: ['true']}}\n"}))
    .unwrap();
    let recipe = call(A, Operation::CreateImageRecipe, json!({"name": "rcpa", "semanticVersion": "1.0.0",
        "clientToken": "r", "parentImage": "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
        "components": [{"componentArn": format!("arn:aws:imagebuilder:{REGION}:{A}:component/comp/x.x.x")}]}))
    .unwrap()["imageRecipeArn"].clone();
    let infra = call(
        A,
        Operation::CreateInfrastructureConfiguration,
        json!({"name": "infra", "instanceProfileName": "p", "clientToken": "i"}),
    )
    .unwrap()["infrastructureConfigurationArn"]
        .clone();
    let image_arn = call(
        A,
        Operation::CreateImage,
        json!({"imageRecipeArn": recipe,
        "infrastructureConfigurationArn": infra, "clientToken": "b"}),
    )
    .unwrap()["imageBuildVersionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let ami = "ami-0123456789abcdef0";
    svc.store
        .write(|tx| -> Result<(), kiln_store::StoreError> {
            let mut image: Image = tx.get(&image_arn)?.unwrap();
            image.status = ImageStatus::Available;
            image.output_resources = vec![ami.to_string()];
            tx.put(&image)
        })
        .unwrap()
        .unwrap();

    let filter = Arn::parse(&format!(
        "arn:aws:imagebuilder:{REGION}:{A}:image/rcpa/x.x.x"
    ))
    .unwrap();
    let exact = Arn::parse(&image_arn).unwrap();
    svc.store
        .read(|tx| {
            assert!(newest_available(tx, A, REGION, &filter).is_ok());
            assert!(by_ami(tx, A, REGION, ami).is_ok());
            for arn in [&filter, &exact] {
                let err = newest_available(tx, B, REGION, arn).unwrap_err();
                assert!(err.contains("another account"), "{err}");
                assert_eq!(
                    resolved_parent(tx, B, REGION, &arn.to_string()).unwrap(),
                    None
                );
            }
            let err = by_ami(tx, B, REGION, ami).unwrap_err();
            assert!(
                err.contains(&format!("that account {B} owns or may launch")),
                "{err}"
            );
            assert_eq!(resolved_parent(tx, B, REGION, ami).unwrap(), None);
            assert_eq!(
                resolved_parent(tx, A, REGION, ami).unwrap(),
                Some(image_arn.clone())
            );
            Ok::<(), kiln_store::StoreError>(())
        })
        .unwrap()
        .unwrap();

    // B cannot even record A's image as a parent.
    for parent in [filter.to_string(), image_arn.clone()] {
        let err = call(B, Operation::CreateImageRecipe, json!({"name": "rcpb", "clientToken": "rb", "semanticVersion": "1.0.0",
            "parentImage": parent,
            "components": [{"componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/none/1.0.0/1"}]}))
        .unwrap_err();
        assert_eq!(
            err.kind.code(),
            "InvalidParameterValueException",
            "{}",
            err.message
        );
        assert!(err.message.starts_with("parentImage:"), "{}", err.message);
    }
}
