//! The execution APIs and the policy operations that cancel executions, over records put
//! straight into the store (the engine that writes them runs elsewhere).

use crate::service::Service;
use kiln_core::lifecycle_records;
use kiln_domain::resources::lifecycle::{
    ExecutionResource, ExecutionStatus, LifecycleExecution, LifecyclePolicy, ResourceAction,
    ResourceStatus, SnapshotResource, DAY_MILLIS,
};
use kiln_store::TxnExt;
use kiln_wire::{ApiError, Operation, RequestContext};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const NOW: i64 = 1_795_694_400_000;
const IMAGE: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";

fn ctx(account: &str) -> RequestContext {
    RequestContext {
        request_id: "r".into(),
        account_id: account.into(),
        region: REGION.into(),
        now_millis: NOW,
        ..Default::default()
    }
}

fn try_call(svc: &Service, op: Operation, account: &str, input: Value) -> Result<Value, ApiError> {
    let out = svc.call(op, &ctx(account), input)?;
    Ok(serde_json::from_str(&out).expect("JSON"))
}

fn call(svc: &Service, op: Operation, input: Value) -> Value {
    try_call(svc, op, ACCOUNT, input).unwrap_or_else(|e| panic!("{op:?}: {}", e.message))
}

fn execution(
    id: &str,
    policy: Option<&str>,
    status: ExecutionStatus,
    start: i64,
) -> LifecycleExecution {
    LifecycleExecution {
        arn: LifecycleExecution::key(REGION, ACCOUNT, id),
        id: id.to_string(),
        policy_arn: policy.map(str::to_string),
        image_arn: None,
        status,
        reason: None,
        start_time: start,
        end_time: status.is_terminal().then_some(start + 1000),
        resources: Vec::new(),
        cancel_requested: None,
        plan: Vec::new(),
        done: 0,
        not_before: None,
    }
}

fn row(parent: Option<&str>, id: &str, status: ResourceStatus) -> ExecutionResource {
    ExecutionResource {
        parent: parent.map(str::to_string),
        account_id: ACCOUNT.into(),
        resource_id: id.into(),
        region: REGION.into(),
        status,
        reason: None,
        action: ResourceAction::Delete,
        action_reason: Some("older than 6 MONTHS".into()),
        snapshots: Vec::new(),
        image_uris: Vec::new(),
        start_time: Some(NOW),
        end_time: None,
    }
}

fn put(svc: &Service, e: &LifecycleExecution) {
    svc.store
        .write(|tx| lifecycle_records::put(tx, e))
        .unwrap()
        .unwrap();
}

fn stored(svc: &Service, id: &str) -> LifecycleExecution {
    svc.store
        .write(|tx| lifecycle_records::get(tx, ACCOUNT, REGION, id))
        .unwrap()
        .unwrap()
        .expect("stored")
}

fn stored_policy(svc: &Service, arn: &str) -> LifecyclePolicy {
    let arn = arn.to_string();
    svc.store
        .write(|tx| tx.get::<LifecyclePolicy>(&arn))
        .unwrap()
        .unwrap()
        .expect("stored")
}

fn policy_request(name: &str) -> Value {
    json!({
        "name": name, "executionRole": "ib-lifecycle", "resourceType": "AMI_IMAGE",
        "policyDetails": [{"action": {"type": "DELETE"}, "filter": {"type": "COUNT", "value": 5}}],
        "resourceSelection": {"tagMap": {"env": "test"}}, "clientToken": name
    })
}

fn create_policy(svc: &Service, name: &str) -> String {
    let created = call(svc, Operation::CreateLifecyclePolicy, policy_request(name));
    created["lifecyclePolicyArn"].as_str().unwrap().to_string()
}

fn service() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(dir.path(), kiln_store::sqlite::Sync::Normal).unwrap();
    (dir, svc)
}

fn ids(list: &Value) -> Vec<String> {
    list["lifecycleExecutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lifecycleExecutionId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn executions_list_newest_first_by_policy_or_image_and_page() {
    let (_dir, svc) = service();
    let policy = create_policy(&svc, "pol");
    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000001",
            Some(&policy),
            ExecutionStatus::Success,
            NOW - 2000,
        ),
    );
    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000002",
            Some(&policy),
            ExecutionStatus::InProgress,
            NOW,
        ),
    );
    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000003",
            Some("arn:aws:imagebuilder:us-east-1:123456789012:lifecycle-policy/qol"),
            ExecutionStatus::Success,
            NOW,
        ),
    );
    let mut manual = execution(
        "lce-00000000-0000-0000-0000-000000000004",
        None,
        ExecutionStatus::Pending,
        NOW,
    );
    manual.image_arn = Some(IMAGE.into());
    put(&svc, &manual);

    let all = call(
        &svc,
        Operation::ListLifecycleExecutions,
        json!({"resourceArn": policy}),
    );
    assert_eq!(
        ids(&all),
        [
            "lce-00000000-0000-0000-0000-000000000002",
            "lce-00000000-0000-0000-0000-000000000001"
        ]
    );
    let first = call(
        &svc,
        Operation::ListLifecycleExecutions,
        json!({"resourceArn": policy, "maxResults": 1}),
    );
    assert_eq!(ids(&first), ["lce-00000000-0000-0000-0000-000000000002"]);
    let second = call(
        &svc,
        Operation::ListLifecycleExecutions,
        json!({"resourceArn": policy, "maxResults": 1, "nextToken": first["nextToken"]}),
    );
    assert_eq!(ids(&second), ["lce-00000000-0000-0000-0000-000000000001"]);
    assert!(second.get("nextToken").is_none());

    let of_image = call(
        &svc,
        Operation::ListLifecycleExecutions,
        json!({"resourceArn": IMAGE}),
    );
    assert_eq!(ids(&of_image), ["lce-00000000-0000-0000-0000-000000000004"]);
    assert!(of_image["lifecycleExecutions"][0]
        .get("lifecyclePolicyArn")
        .is_none());

    // Another account sees none of them.
    let theirs = try_call(
        &svc,
        Operation::ListLifecycleExecutions,
        "210987654321",
        json!({"resourceArn": policy}),
    )
    .unwrap();
    assert_eq!(theirs["lifecycleExecutions"], json!([]));
}

#[test]
fn get_answers_state_summary_and_timestamps() {
    let (_dir, svc) = service();
    let mut e = execution(
        "lce-00000000-0000-0000-0000-000000000005",
        Some("arn:aws:imagebuilder:us-east-1:123456789012:lifecycle-policy/pol"),
        ExecutionStatus::Success,
        NOW,
    );
    e.resources.push(row(None, IMAGE, ResourceStatus::Success));
    put(&svc, &e);
    let got = call(
        &svc,
        Operation::GetLifecycleExecution,
        json!({"lifecycleExecutionId": "lce-00000000-0000-0000-0000-000000000005"}),
    );
    let got = &got["lifecycleExecution"];
    assert_eq!(got["state"], json!({"status": "SUCCESS"}));
    assert_eq!(
        got["resourcesImpactedSummary"],
        json!({"hasImpactedResources": true})
    );
    assert_eq!(got["startTime"], json!(NOW as f64 / 1000.0));
    assert_eq!(got["endTime"], json!((NOW + 1000) as f64 / 1000.0));
    let hidden = try_call(
        &svc,
        Operation::GetLifecycleExecution,
        "210987654321",
        json!({"lifecycleExecutionId": "lce-00000000-0000-0000-0000-000000000005"}),
    );
    assert_eq!(hidden.unwrap_err().code(), "ResourceNotFoundException");
}

#[test]
fn resources_list_images_or_one_images_outputs() {
    let (_dir, svc) = service();
    let mut e = execution(
        "lce-00000000-0000-0000-0000-000000000006",
        None,
        ExecutionStatus::InProgress,
        NOW,
    );
    e.resources.push(row(None, IMAGE, ResourceStatus::Success));
    let mut ami = row(
        Some(IMAGE),
        "ami-0123456789abcdef0",
        ResourceStatus::Success,
    );
    ami.snapshots.push(SnapshotResource {
        snapshot_id: "snap-0123456789abcdef0".into(),
        status: ResourceStatus::Success,
        reason: None,
    });
    e.resources.push(ami);
    e.resources.push(row(
        Some(IMAGE),
        "ami-0fedcba9876543210",
        ResourceStatus::Skipped,
    ));
    e.resources.push(row(
        None,
        "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/2",
        ResourceStatus::InProgress,
    ));
    put(&svc, &e);

    let list = |extra: Value| {
        let mut input = json!({"lifecycleExecutionId": "lce-00000000-0000-0000-0000-000000000006"});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        call(&svc, Operation::ListLifecycleExecutionResources, input)
    };
    let resource_ids = |v: &Value| -> Vec<String> {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["resourceId"].as_str().unwrap().to_string())
            .collect()
    };
    let images = list(json!({}));
    assert_eq!(
        images["lifecycleExecutionId"],
        "lce-00000000-0000-0000-0000-000000000006"
    );
    assert_eq!(
        images["lifecycleExecutionState"],
        json!({"status": "IN_PROGRESS"})
    );
    assert_eq!(
        resource_ids(&images),
        [
            IMAGE,
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/2"
        ]
    );
    let amis = list(json!({"parentResourceId": IMAGE}));
    assert_eq!(
        resource_ids(&amis),
        ["ami-0123456789abcdef0", "ami-0fedcba9876543210"]
    );
    assert_eq!(
        amis["resources"][0]["snapshots"][0]["state"],
        json!({"status": "SUCCESS"})
    );
    assert_eq!(amis["resources"][1]["state"], json!({"status": "SKIPPED"}));
    assert_eq!(
        amis["resources"][0]["action"],
        json!({"name": "DELETE", "reason": "older than 6 MONTHS"})
    );
    let page = list(json!({"parentResourceId": IMAGE, "maxResults": 1}));
    assert_eq!(resource_ids(&page), ["ami-0123456789abcdef0"]);
    let next =
        list(json!({"parentResourceId": IMAGE, "maxResults": 1, "nextToken": page["nextToken"]}));
    assert_eq!(resource_ids(&next), ["ami-0fedcba9876543210"]);
    let none = list(
        json!({"parentResourceId": "arn:aws:imagebuilder:us-east-1:123456789012:image/other/1.0.0/1"}),
    );
    assert_eq!(none["resources"], json!([]));
}

#[test]
fn cancel_marks_running_executions_cancelling_and_refuses_ended_ones() {
    let (_dir, svc) = service();
    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000007",
            None,
            ExecutionStatus::InProgress,
            NOW,
        ),
    );
    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000008",
            None,
            ExecutionStatus::Success,
            NOW,
        ),
    );
    let answer = call(
        &svc,
        Operation::CancelLifecycleExecution,
        json!({"lifecycleExecutionId": "lce-00000000-0000-0000-0000-000000000007", "clientToken": "c1"}),
    );
    assert_eq!(
        answer["lifecycleExecutionId"],
        "lce-00000000-0000-0000-0000-000000000007"
    );
    let e = stored(&svc, "lce-00000000-0000-0000-0000-000000000007");
    assert_eq!(e.status, ExecutionStatus::Cancelling);
    assert_eq!(e.cancel_requested, Some(NOW));
    assert!(e.reason.is_some());
    // Asking again (another token) is no error while it is still cancelling.
    call(
        &svc,
        Operation::CancelLifecycleExecution,
        json!({"lifecycleExecutionId": "lce-00000000-0000-0000-0000-000000000007", "clientToken": "c2"}),
    );
    let ended = try_call(
        &svc,
        Operation::CancelLifecycleExecution,
        ACCOUNT,
        json!({"lifecycleExecutionId": "lce-00000000-0000-0000-0000-000000000008", "clientToken": "c3"}),
    );
    let error = ended.unwrap_err();
    assert_eq!(error.code(), "InvalidRequestException");
    assert!(
        error.message.starts_with("lifecycleExecutionId: "),
        "{}",
        error.message
    );
    assert_eq!(
        stored(&svc, "lce-00000000-0000-0000-0000-000000000008").status,
        ExecutionStatus::Success
    );
}

#[test]
fn disabling_or_deleting_a_policy_cancels_its_running_executions() {
    let (_dir, svc) = service();
    let policy = create_policy(&svc, "pol");
    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000009",
            Some(&policy),
            ExecutionStatus::InProgress,
            NOW,
        ),
    );
    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000010",
            Some(&policy),
            ExecutionStatus::Failed,
            NOW - 5,
        ),
    );
    let mut update = policy_request("pol");
    let input = update.as_object_mut().unwrap();
    input.remove("name");
    input.insert("lifecyclePolicyArn".into(), json!(policy));
    input.insert("status".into(), json!("DISABLED"));
    input.insert("clientToken".into(), json!("u1"));
    call(&svc, Operation::UpdateLifecyclePolicy, update);
    let a = stored(&svc, "lce-00000000-0000-0000-0000-000000000009");
    assert_eq!(a.status, ExecutionStatus::Cancelling);
    assert_eq!(
        a.reason.as_deref(),
        Some("The lifecycle policy was disabled.")
    );
    assert_eq!(
        stored(&svc, "lce-00000000-0000-0000-0000-000000000010").status,
        ExecutionStatus::Failed
    );

    put(
        &svc,
        &execution(
            "lce-00000000-0000-0000-0000-000000000011",
            Some(&policy),
            ExecutionStatus::Pending,
            NOW + 1,
        ),
    );
    call(
        &svc,
        Operation::DeleteLifecyclePolicy,
        json!({"lifecyclePolicyArn": policy}),
    );
    let c = stored(&svc, "lce-00000000-0000-0000-0000-000000000011");
    assert_eq!(c.status, ExecutionStatus::Cancelling);
    assert_eq!(
        c.reason.as_deref(),
        Some("The lifecycle policy was deleted.")
    );
    // The records stay: ListLifecycleExecutions still answers them by the policy's ARN.
    let listed = call(
        &svc,
        Operation::ListLifecycleExecutions,
        json!({"resourceArn": policy}),
    );
    assert_eq!(
        ids(&listed),
        [
            "lce-00000000-0000-0000-0000-000000000011",
            "lce-00000000-0000-0000-0000-000000000009",
            "lce-00000000-0000-0000-0000-000000000010"
        ]
    );
}

#[test]
fn the_schedule_follows_the_status() {
    let (_dir, svc) = service();
    let policy = create_policy(&svc, "pol");
    assert_eq!(
        stored_policy(&svc, &policy).next_run,
        Some(NOW + DAY_MILLIS)
    );
    let update = |status: Option<&str>, token: &str, now: i64| {
        let mut input = policy_request("pol");
        let o = input.as_object_mut().unwrap();
        o.remove("name");
        o.insert("lifecyclePolicyArn".into(), json!(policy));
        o.insert("clientToken".into(), json!(token));
        if let Some(s) = status {
            o.insert("status".into(), json!(s));
        }
        let mut c = ctx(ACCOUNT);
        c.now_millis = now;
        svc.call(Operation::UpdateLifecyclePolicy, &c, input)
            .unwrap();
    };
    // Staying enabled keeps the run already due.
    update(None, "u1", NOW + 1000);
    assert_eq!(
        stored_policy(&svc, &policy).next_run,
        Some(NOW + DAY_MILLIS)
    );
    update(Some("DISABLED"), "u2", NOW + 2000);
    assert_eq!(stored_policy(&svc, &policy).next_run, None);
    // Re-enabled: a day after it was enabled again.
    update(None, "u3", NOW + 3000);
    let p = stored_policy(&svc, &policy);
    assert_eq!(p.next_run, Some(NOW + 3000 + DAY_MILLIS));
    assert_eq!(p.date_updated, Some(NOW + 3000));
}
