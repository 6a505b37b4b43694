//! The part of IAM's Query API that carries an account's consent to cross-account distribution.
//!
//! AWS lets account A distribute AMIs into account B (`targetAccountIds`, an SSM parameter's
//! `amiAccountId`) only after B created the role `EC2ImageBuilderDistributionCrossAccountRole`
//! trusting A, with `Ec2ImageBuilderCrossAccountDistributionAccess` attached. Users do that with
//! `aws iam create-role` / `attach-role-policy` or Terraform's `aws_iam_role`; pointed at Kiln
//! (`--endpoint-url`), the same calls land here: CreateRole, GetRole, UpdateAssumeRolePolicy,
//! DeleteRole, AttachRolePolicy, DetachRolePolicy, ListAttachedRolePolicies, for that one role
//! and that one policy. Any other role or policy is refused: Kiln would store it and never act
//! on it. The records and the consent check live in `kiln_core::iam_roles`.
//!
//! Requests are `POST /` forms (`Action=CreateRole&Version=2010-05-08&...`) signed for the
//! service `iam`; the server tells them from EC2's by the signature's credential scope
//! ([`is_iam_request`]). IAM is global: a role is the account's in every Region.

use crate::auth::Api;
use crate::ec2::error::Ec2Error;
use crate::ec2::form::Params;
use crate::ec2::xml::escape;
use crate::server::Body;
use crate::service::Service;
use crate::throttle::{Calls, Throttle};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use kiln_core::iam_roles::{self, Role, DISTRIBUTION_POLICY, DISTRIBUTION_ROLE};
use kiln_domain::trust_policy::TrustPolicy;
use kiln_store::Txn;
use kiln_wire::RequestContext;
use std::sync::Arc;

const NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
const VERSION: &str = "2010-05-08";

/// IAM's actions Kiln answers.
const ACTIONS: [&str; 7] = [
    "CreateRole",
    "GetRole",
    "UpdateAssumeRolePolicy",
    "DeleteRole",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "ListAttachedRolePolicies",
];

/// Whether a `POST /` is an IAM call: signed for `iam` (the credential scope of its
/// Authorization header or presigned query), or, unsigned, a form of IAM's API version.
pub fn is_iam_request(
    method: &str,
    path: &str,
    authorization: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> bool {
    if path != "/" || !matches!(method, "POST" | "GET") {
        return false;
    }
    let scoped_to_iam = |credential: &str| credential.split('/').nth(3) == Some("iam");
    if let Some(auth) = authorization {
        return auth
            .split("Credential=")
            .nth(1)
            .is_some_and(|rest| scoped_to_iam(rest.split([',', ' ']).next().unwrap_or_default()));
    }
    let pairs = crate::server::decode_query(query.unwrap_or_default());
    if let Some((_, credential)) = pairs.iter().find(|(k, _)| k == "X-Amz-Credential") {
        return scoped_to_iam(credential);
    }
    let form = std::str::from_utf8(body).unwrap_or_default();
    pairs
        .into_iter()
        .chain(crate::server::decode_query(form))
        .any(|(k, v)| k == "Version" && v == VERSION)
}

/// The API a request at `/` is for.
pub(crate) fn api_of(
    method: &str,
    path: &str,
    authorization: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> Api {
    if is_iam_request(method, path, authorization, query, body) {
        Api::Iam
    } else {
        crate::ec2::api_of(method, path, query)
    }
}

/// An IAM error: IAM's codes, answered as `<ErrorResponse><Error>...`.
fn error(code: &'static str, status: u16, message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(code, status, message)
}

fn no_such_role(name: &str) -> Ec2Error {
    error(
        "NoSuchEntity",
        404,
        format!("The role with name {name} cannot be found."),
    )
}

fn error_xml(e: &Ec2Error, request_id: &str) -> String {
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape(e.code),
        escape(&e.message),
        escape(request_id)
    )
}

/// The IAM form of a refused signature.
pub(crate) fn signature_error(e: &kiln_auth::sigv4::SigV4Error) -> Ec2Error {
    let mut e = Ec2Error::from_signature(e);
    if e.code == "AuthFailure" {
        e.code = "InvalidClientTokenId";
    }
    e
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(bytes::Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

pub(crate) fn error_response(e: &Ec2Error, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    xml_response(status, error_xml(e, request_id), request_id)
}

/// `<{action}Response><{action}Result>{result}</{action}Result><ResponseMetadata>...`.
fn answer(action: &str, result: Option<String>, request_id: &str) -> String {
    let result = result
        .map(|r| format!("<{action}Result>{r}</{action}Result>"))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NAMESPACE}\">{result}<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    )
}

fn role_xml(role: &Role, account: &str) -> String {
    // IAM answers policy documents URL-encoded; botocore decodes them back to JSON.
    let policy = percent_encoding::utf8_percent_encode(
        &role.assume_role_policy,
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let mut x = String::from("<Role>");
    let mut text = |tag: &str, value: &str| {
        x.push_str(&format!("<{tag}>{}</{tag}>", escape(value)));
    };
    text("Path", &role.path);
    text("RoleName", &role.name);
    text("RoleId", &role.role_id);
    text("Arn", &role.arn(account));
    text(
        "CreateDate",
        &chrono::DateTime::from_timestamp_millis(role.created)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    text("AssumeRolePolicyDocument", &policy);
    if let Some(d) = &role.description {
        text("Description", d);
    }
    text("MaxSessionDuration", &role.max_session_duration.to_string());
    x.push_str("</Role>");
    x
}

/// `RoleName`: IAM's name rules, and the one role Kiln acts on.
fn role_name(params: &mut Params) -> Result<String, Ec2Error> {
    let name = params.required("RoleName")?;
    let valid = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if !valid {
        return Err(error(
            "ValidationError",
            400,
            format!("1 validation error detected: Value '{name}' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length 1 to 64"),
        ));
    }
    Ok(name)
}

fn trust_policy(params: &mut Params, member: &str) -> Result<String, Ec2Error> {
    let text = params.required(member)?;
    TrustPolicy::parse(&text)
        .map_err(|e| error("MalformedPolicyDocument", 400, format!("{member}: {}", e.0)))?;
    Ok(text)
}

fn policy_arn(params: &mut Params) -> Result<String, Ec2Error> {
    let arn = params.required("PolicyArn")?;
    if arn != DISTRIBUTION_POLICY {
        return Err(error(
            "InvalidInput",
            400,
            format!("PolicyArn: Kiln's role {DISTRIBUTION_ROLE} takes only the policy {DISTRIBUTION_POLICY}, which lets the accounts it trusts distribute to this one; '{arn}' would be stored and never used"),
        ));
    }
    Ok(arn)
}

fn existing(tx: &mut dyn Txn, account: &str, name: &str) -> Result<Role, Ec2Error> {
    iam_roles::get(tx, account, name)?.ok_or_else(|| no_such_role(name))
}

/// A role id in IAM's form (`AROA` and 17 upper-case letters and digits), random.
fn new_role_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = [
        *uuid::Uuid::new_v4().as_bytes(),
        *uuid::Uuid::new_v4().as_bytes(),
    ]
    .concat();
    let tail: String = bytes
        .iter()
        .take(17)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("AROA{tail}")
}

fn create_role(
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    mut params: Params,
) -> Result<String, Ec2Error> {
    let name = role_name(&mut params)?;
    let policy = trust_policy(&mut params, "AssumeRolePolicyDocument")?;
    let path = params.string("Path").unwrap_or_else(|| "/".to_string());
    if !(path.starts_with('/') && path.ends_with('/') && path.len() <= 512) {
        return Err(error(
            "ValidationError",
            400,
            format!("Path: '{path}' must begin and end with / (at most 512 characters)"),
        ));
    }
    let description = params.string("Description");
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(error(
            "ValidationError",
            400,
            "Description: at most 1000 characters",
        ));
    }
    let max_session_duration = match params.integer("MaxSessionDuration")? {
        None => 3600,
        Some(n @ 3600..=43200) => n as u32,
        Some(n) => {
            return Err(error(
                "ValidationError",
                400,
                format!("MaxSessionDuration: {n} is not between 3600 and 43200 seconds"),
            ))
        }
    };
    if params.string("PermissionsBoundary").is_some() {
        return Err(error("InvalidInput", 400, "PermissionsBoundary: Kiln does not evaluate permissions boundaries; create the role without one"));
    }
    if !params.indices("Tags.member")?.is_empty() {
        return Err(error(
            "InvalidInput",
            400,
            "Tags: Kiln keeps no tags on IAM roles; create the role without them",
        ));
    }
    params.finish("CreateRole")?;
    if name != DISTRIBUTION_ROLE {
        return Err(error(
            "InvalidInput",
            400,
            format!("RoleName: Kiln's IAM has one role, {DISTRIBUTION_ROLE} (an account's consent that the accounts it trusts distribute AMIs and SSM parameters to it); a role named '{name}' would be stored and never used"),
        ));
    }
    if iam_roles::get(tx, &ctx.account_id, &name)?.is_some() {
        return Err(error(
            "EntityAlreadyExists",
            409,
            format!("Role with name {name} already exists."),
        ));
    }
    let role = Role {
        name,
        path,
        role_id: new_role_id(),
        description,
        assume_role_policy: policy,
        max_session_duration,
        created: ctx.now_millis,
        attached_policies: Vec::new(),
    };
    iam_roles::put(tx, &ctx.account_id, &role)?;
    Ok(role_xml(&role, &ctx.account_id))
}

fn run(
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    action: &str,
    mut params: Params,
) -> Result<Option<String>, Ec2Error> {
    let account = ctx.account_id.as_str();
    match action {
        "CreateRole" => create_role(ctx, tx, params).map(Some),
        "GetRole" => {
            let name = role_name(&mut params)?;
            params.finish(action)?;
            Ok(Some(role_xml(&existing(tx, account, &name)?, account)))
        }
        "UpdateAssumeRolePolicy" => {
            let name = role_name(&mut params)?;
            let policy = trust_policy(&mut params, "PolicyDocument")?;
            params.finish(action)?;
            let mut role = existing(tx, account, &name)?;
            role.assume_role_policy = policy;
            iam_roles::put(tx, account, &role)?;
            Ok(None)
        }
        "DeleteRole" => {
            let name = role_name(&mut params)?;
            params.finish(action)?;
            let role = existing(tx, account, &name)?;
            if !role.attached_policies.is_empty() {
                return Err(error(
                    "DeleteConflict",
                    409,
                    "Cannot delete entity, must detach all policies first.",
                ));
            }
            iam_roles::delete(tx, account, &name)?;
            Ok(None)
        }
        "AttachRolePolicy" | "DetachRolePolicy" => {
            let name = role_name(&mut params)?;
            let arn = policy_arn(&mut params)?;
            params.finish(action)?;
            let mut role = existing(tx, account, &name)?;
            let attached = role.attached_policies.contains(&arn);
            if action == "AttachRolePolicy" {
                if !attached {
                    role.attached_policies.push(arn);
                }
            } else if attached {
                role.attached_policies.retain(|p| *p != arn);
            } else {
                return Err(error(
                    "NoSuchEntity",
                    404,
                    format!("Policy {arn} was not found."),
                ));
            }
            iam_roles::put(tx, account, &role)?;
            Ok(None)
        }
        "ListAttachedRolePolicies" => {
            let name = role_name(&mut params)?;
            // One policy at most: a page always holds it.
            params.string("Marker");
            params.integer("MaxItems")?;
            params.string("PathPrefix");
            params.finish(action)?;
            let role = existing(tx, account, &name)?;
            let members: String = role
                .attached_policies
                .iter()
                .map(|arn| {
                    let policy_name = arn.rsplit('/').next().unwrap_or(arn);
                    format!(
                        "<member><PolicyName>{}</PolicyName><PolicyArn>{}</PolicyArn></member>",
                        escape(policy_name),
                        escape(arn)
                    )
                })
                .collect();
            Ok(Some(format!(
                "<AttachedPolicies>{members}</AttachedPolicies><IsTruncated>false</IsTruncated>"
            )))
        }
        _ => Err(error(
            "InternalFailure",
            500,
            format!("unrouted IAM action {action}"),
        )),
    }
}

fn call(service: &Service, ctx: &RequestContext, mut params: Params) -> Result<String, Ec2Error> {
    let action = match params.string("Action") {
        Some(a) if !a.is_empty() => a,
        _ => {
            return Err(error(
                "MissingAction",
                400,
                "The request must contain the parameter Action",
            ))
        }
    };
    match params.string("Version") {
        None => {}
        Some(v) if v == VERSION => {}
        Some(v) => {
            return Err(error(
                "InvalidParameterValue",
                400,
                format!("Version: Kiln answers the IAM API version {VERSION} only, not '{v}'"),
            ))
        }
    }
    let Some(action) = ACTIONS.iter().find(|a| **a == action) else {
        return Err(error(
            "InvalidAction",
            400,
            format!(
                "Kiln's IAM serves only the calls of the cross-account distribution role ({}); {action} is not one of them",
                ACTIONS.join(", ")
            ),
        ));
    };
    let result = if matches!(*action, "GetRole" | "ListAttachedRolePolicies") {
        service.store.read(|tx| run(ctx, tx, action, params))?
    } else {
        service.store.write(|tx| run(ctx, tx, action, params))?
    }?;
    Ok(answer(action, result, &ctx.request_id))
}

/// Answers an IAM request whose signature was verified for `iam`.
pub(crate) async fn handle(
    service: Arc<Service>,
    throttle: &Throttle,
    ctx: RequestContext,
    query: Option<&str>,
    body: &[u8],
) -> Response<Body> {
    let request_id = ctx.request_id.clone();
    let form = std::str::from_utf8(body).ok();
    let params = match form
        .ok_or_else(|| Ec2Error::invalid_value("the form body is not UTF-8 text"))
        .and_then(|form| Params::from_request(query, Some(form)))
    {
        Ok(p) => p,
        Err(e) => return error_response(&e, &request_id),
    };
    if let Err(t) = throttle.admit(&ctx.account_id, Calls::Writes) {
        let e = error(
            "Throttling",
            400,
            format!("Rate exceeded: retry after {} s", t.retry_after_seconds),
        );
        return error_response(&e, &request_id);
    }
    let answered = tokio::task::spawn_blocking(move || call(&service, &ctx, params)).await;
    match answered {
        Ok(Ok(body)) => xml_response(StatusCode::OK, body, &request_id),
        Ok(Err(e)) => error_response(&e, &request_id),
        Err(_) => error_response(
            &error(
                "ServiceFailure",
                500,
                "internal error while handling the request",
            ),
            &request_id,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_calls_are_told_by_their_credential_scope() {
        let iam = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x";
        let ec2 = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x";
        assert!(is_iam_request(
            "POST",
            "/",
            Some(iam),
            None,
            b"Action=GetRole"
        ));
        assert!(!is_iam_request(
            "POST",
            "/",
            Some(ec2),
            None,
            b"Version=2010-05-08"
        ));
        assert!(!is_iam_request(
            "POST",
            "/CreateImage",
            Some(iam),
            None,
            b""
        ));
        assert!(is_iam_request(
            "POST",
            "/",
            None,
            None,
            b"Action=GetRole&Version=2010-05-08"
        ));
        assert!(!is_iam_request(
            "POST",
            "/",
            None,
            None,
            b"Action=DescribeImages&Version=2016-11-15"
        ));
        assert!(is_iam_request(
            "GET",
            "/",
            None,
            Some(
                "Action=GetRole&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fiam%2Faws4_request"
            ),
            b""
        ));
    }

    #[test]
    fn errors_are_iam_xml() {
        let xml = error_xml(&no_such_role("r<1"), "req");
        assert!(xml.contains("<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The role with name r&lt;1 cannot be found.</Message></Error><RequestId>req</RequestId></ErrorResponse>"), "{xml}");
    }

    #[test]
    fn role_ids_have_iams_shape() {
        let id = new_role_id();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("AROA"));
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    }
}
