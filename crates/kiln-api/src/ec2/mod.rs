//! The EC2 Query API for Kiln's AMIs, beside the Image Builder API on the same endpoint.
//!
//! Users find the AMIs Kiln's builds distribute the way they find any AMI: `aws ec2
//! describe-images`, boto3's `ec2` client, Terraform's `data "aws_ami"`, Packer's
//! `source_ami_filter`. Those speak EC2's Query protocol: `POST /` with a form body
//! (`Action=DescribeImages&Version=2016-11-15&Owner.1=self&Filter.1.Name=name&...`), or the same
//! parameters in a `GET /` query string, signed with SigV4 for the service `ec2`. Image Builder
//! never uses `/`, so the server sends those requests here ([`is_ec2_request`]) before
//! Image Builder's routing, and verifies their signatures for `ec2` instead of `imagebuilder`
//! (`crate::auth::Api`).
//!
//! - [`form`]: the parameters (indexed lists, nested members; nothing left unread),
//! - [`xml`]: the answers (`<{Action}Response xmlns=...>`), [`error`]: EC2's error answers,
//! - [`filters`]: `Filter.N` with EC2's `*` and `?` wildcards,
//! - `images` (DescribeImages, DeregisterImage, image deprecation), `attributes`
//!   (Describe/Modify/ResetImageAttribute), `tags` (CreateTags, DeleteTags), `exports`
//!   (DescribeExportImageTasks): the actions, over `kiln_core::amis`.
//!
//! Every action acts in the caller's Region only (the credential scope's): AMIs of other
//! Regions do not exist for it. A caller sees the AMIs it owns, those shared with its account
//! and public ones (`Ami::launchable_by`); another account's private AMI does not exist for it,
//! and only an AMI's owner may change it. Describe actions read in one read transaction;
//! every other action is one write transaction.

pub mod error;
pub mod filters;
pub mod form;
pub mod xml;

mod attributes;
mod exports;
mod images;
mod tags;

use crate::auth::Api;
use crate::paging::Pager;
use crate::server::Body;
use crate::service::Service;
use crate::throttle::{Calls, Throttle};
use error::Ec2Error;
use form::Params;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use kiln_domain::resources::ami::Ami;
use kiln_store::Txn;
use kiln_wire::RequestContext;
use std::sync::Arc;
use xml::Xml;

/// The EC2 actions Kiln answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    DescribeImages,
    DescribeImageAttribute,
    DescribeExportImageTasks,
    CreateTags,
    DeleteTags,
    ModifyImageAttribute,
    ResetImageAttribute,
    DeregisterImage,
    EnableImageDeprecation,
    DisableImageDeprecation,
}

/// Every action of the EC2 API, so that one Kiln does not serve is told from one that does not
/// exist.
const EC2_ACTIONS: &str = include_str!("actions.txt");

impl Action {
    pub const ALL: [Action; 10] = [
        Action::DescribeImages,
        Action::DescribeImageAttribute,
        Action::DescribeExportImageTasks,
        Action::CreateTags,
        Action::DeleteTags,
        Action::ModifyImageAttribute,
        Action::ResetImageAttribute,
        Action::DeregisterImage,
        Action::EnableImageDeprecation,
        Action::DisableImageDeprecation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::DescribeImages => "DescribeImages",
            Action::DescribeImageAttribute => "DescribeImageAttribute",
            Action::DescribeExportImageTasks => "DescribeExportImageTasks",
            Action::CreateTags => "CreateTags",
            Action::DeleteTags => "DeleteTags",
            Action::ModifyImageAttribute => "ModifyImageAttribute",
            Action::ResetImageAttribute => "ResetImageAttribute",
            Action::DeregisterImage => "DeregisterImage",
            Action::EnableImageDeprecation => "EnableImageDeprecation",
            Action::DisableImageDeprecation => "DisableImageDeprecation",
        }
    }

    /// The action `name` names: `InvalidAction` for a name EC2 does not have,
    /// `UnsupportedOperation` (listing what Kiln serves) for an EC2 action Kiln does not serve.
    pub fn parse(name: &str) -> Result<Action, Ec2Error> {
        if let Some(a) = Action::ALL.into_iter().find(|a| a.name() == name) {
            return Ok(a);
        }
        let served = Action::ALL.map(Action::name).join(", ");
        if EC2_ACTIONS
            .lines()
            .any(|l| !l.starts_with('#') && l == name)
        {
            return Err(Ec2Error::new(
                "UnsupportedOperation",
                400,
                format!(
                    "Kiln serves only the EC2 calls for its AMIs ({served}); {name} is not one of them"
                ),
            ));
        }
        Err(Ec2Error::new(
            "InvalidAction",
            400,
            format!("The action {name} is not valid for this web service. Kiln serves the EC2 calls {served}."),
        ))
    }

    /// Describe actions read; the others write. It picks the transaction and the throttling
    /// bucket.
    pub fn is_read_only(self) -> bool {
        self.name().starts_with("Describe")
    }
}

/// Whether a request is an EC2 Query call: `POST /`, or a `GET /` with an `Action` parameter.
/// Image Builder's operations all have paths of their own, so nothing of theirs is taken.
pub fn is_ec2_request(method: &str, path: &str, query: Option<&str>) -> bool {
    if path != "/" {
        return false;
    }
    match method {
        "POST" => true,
        "GET" => query.is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.split('=').next() == Some("Action"))
        }),
        _ => false,
    }
}

/// What every action gets: the caller, the pager, and whether this is a dry run.
pub(crate) struct Call<'a> {
    pub ctx: &'a RequestContext,
    pub pager: &'a Pager,
    pub action: Action,
    pub dry_run: bool,
}

impl Call<'_> {
    pub fn account(&self) -> &str {
        &self.ctx.account_id
    }

    pub fn region(&self) -> &str {
        &self.ctx.region
    }

    pub fn now(&self) -> i64 {
        self.ctx.now_millis
    }

    /// The point where an action, its checks passed, would act: a dry run ends here with
    /// `DryRunOperation` (and its transaction rolls back).
    pub fn proceed(&self) -> Result<(), Ec2Error> {
        if self.dry_run {
            Err(Ec2Error::dry_run_succeeded())
        } else {
            Ok(())
        }
    }

    /// The answer, with the request id.
    pub fn response(&self) -> Xml {
        Xml::response(self.action.name(), &self.ctx.request_id)
    }

    /// `<return>true</return>`: what the write actions answer.
    pub fn returned_true(&self) -> String {
        let mut x = self.response();
        x.boolean("return", true);
        x.finish()
    }

    /// Where a page starts: after the key `NextToken` carries (tokens are signed and bound to
    /// the action, account and Region, as Image Builder's are).
    pub fn page_start(&self, token: Option<&str>) -> Result<Option<String>, Ec2Error> {
        let list = format!("ec2:{}", self.action.name());
        self.pager
            .decode(&list, self.ctx, token)
            .map_err(|e| Ec2Error::invalid_value(format!("NextToken: {}", e.message)))
    }

    /// Cuts `items` (in key order, after the page start) to `max` entries, with the token of the
    /// next page when there is more.
    pub fn page<T>(
        &self,
        mut items: Vec<T>,
        max: Option<usize>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        let Some(max) = max.filter(|m| *m < items.len()) else {
            return (items, None);
        };
        items.truncate(max);
        let list = format!("ec2:{}", self.action.name());
        let token = items
            .last()
            .map(|last| self.pager.encode(&list, self.ctx, &key(last)));
        (items, token)
    }
}

/// An AMI id as EC2 writes them: `ami-` and 8 or 17 hexadecimal digits.
pub(crate) fn check_image_id(id: &str) -> Result<(), Ec2Error> {
    let hex = id.strip_prefix("ami-").unwrap_or_default();
    if matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Ec2Error::ami_malformed(id))
    }
}

/// The AMI `id` as the caller sees it: `InvalidAMIID.NotFound` when it does not exist in the
/// caller's Region or is another account's and neither shared with the caller nor public.
pub(crate) fn visible_ami(call: &Call, tx: &mut dyn Txn, id: &str) -> Result<Ami, Ec2Error> {
    check_image_id(id)?;
    kiln_core::amis::find_launchable(tx, call.account(), call.region(), id)?
        .ok_or_else(|| Ec2Error::ami_not_found(&[id.to_string()]))
}

/// The AMI `id`, which the caller must own to `what` it (EC2's `AuthFailure` otherwise, for an
/// AMI it may see; one it may not see does not exist for it).
pub(crate) fn owned_ami(
    call: &Call,
    tx: &mut dyn Txn,
    id: &str,
    what: &str,
) -> Result<Ami, Ec2Error> {
    let ami = visible_ami(call, tx, id)?;
    if ami.owner() != call.account() {
        return Err(Ec2Error::not_owner(id, ami.owner(), what));
    }
    Ok(ami)
}

/// One EC2 action's parameters, read before its transaction, and what it does in it.
trait Operation: Sized {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error>;
    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error>;
}

/// Answers one call from its parameters (`Action` and `Version` included): the XML answer, or
/// the EC2 error. Runs on the caller's thread (writes wait for their commit).
pub fn call(
    service: &Service,
    ctx: &RequestContext,
    mut params: Params,
) -> Result<String, Ec2Error> {
    let action = Action::parse(&params.action()?)?;
    params.version()?;
    call_action(service, ctx, action, params)
}

fn call_action(
    service: &Service,
    ctx: &RequestContext,
    action: Action,
    params: Params,
) -> Result<String, Ec2Error> {
    match action {
        Action::DescribeImages => run::<images::DescribeImages>(service, ctx, action, params),
        Action::DeregisterImage => run::<images::DeregisterImage>(service, ctx, action, params),
        Action::EnableImageDeprecation => {
            run::<images::EnableImageDeprecation>(service, ctx, action, params)
        }
        Action::DisableImageDeprecation => {
            run::<images::DisableImageDeprecation>(service, ctx, action, params)
        }
        Action::DescribeImageAttribute => {
            run::<attributes::DescribeImageAttribute>(service, ctx, action, params)
        }
        Action::ModifyImageAttribute => {
            run::<attributes::ModifyImageAttribute>(service, ctx, action, params)
        }
        Action::ResetImageAttribute => {
            run::<attributes::ResetImageAttribute>(service, ctx, action, params)
        }
        Action::CreateTags => run::<tags::CreateTags>(service, ctx, action, params),
        Action::DeleteTags => run::<tags::DeleteTags>(service, ctx, action, params),
        Action::DescribeExportImageTasks => {
            run::<exports::DescribeExportImageTasks>(service, ctx, action, params)
        }
    }
}

fn run<O: Operation>(
    service: &Service,
    ctx: &RequestContext,
    action: Action,
    mut params: Params,
) -> Result<String, Ec2Error> {
    let dry_run = params.boolean("DryRun")?.unwrap_or(false);
    let operation = O::parse(&mut params)?;
    params.finish(action.name())?;
    let call = Call {
        ctx,
        pager: &service.pager,
        action,
        dry_run,
    };
    let answer = if action.is_read_only() {
        service.store.read(|tx| operation.run(&call, tx))?
    } else {
        service.store.write(|tx| operation.run(&call, tx))?
    };
    match answer {
        // A dry run asks whether the caller may: EC2 answers UnauthorizedOperation when not.
        Err(e) if dry_run && e.code == "AuthFailure" => Err(Ec2Error::unauthorized(e.message)),
        other => other,
    }
}

// --- HTTP -------------------------------------------------------------------------------------

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(bytes::Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

/// The HTTP answer of an EC2 error.
pub(crate) fn error_response(e: &Ec2Error, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    xml_response(status, e.to_xml(request_id), request_id)
}

/// The form body of a `POST /`: `application/x-www-form-urlencoded` text (any other type of
/// body is refused, so that a JSON body is not read as no parameters).
fn form_body<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<&'a str, Ec2Error> {
    if body.is_empty() {
        return Ok("");
    }
    let media = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(Ec2Error::invalid_value(format!(
            "Content-Type: EC2 calls send their parameters as application/x-www-form-urlencoded, not '{media}'"
        )));
    }
    std::str::from_utf8(body)
        .map_err(|_| Ec2Error::invalid_value("the form body is not UTF-8 text"))
}

/// Answers an EC2 Query request whose signature was verified for `ec2` (see
/// `crate::server::handle`): parameters, throttling (the caller's read or write bucket, as for
/// Image Builder calls), the action, the XML answer.
pub(crate) async fn handle(
    service: Arc<Service>,
    throttle: &Throttle,
    ctx: RequestContext,
    method: &str,
    content_type: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> Response<Body> {
    let request_id = ctx.request_id.clone();
    let prepared = (|| {
        let form = if method == "POST" {
            Some(form_body(content_type, body)?)
        } else {
            None
        };
        let mut params = Params::from_request(query, form)?;
        let action = Action::parse(&params.action()?)?;
        params.version()?;
        Ok::<_, Ec2Error>((action, params))
    })();
    let (action, params) = match prepared {
        Ok(p) => p,
        Err(e) => return error_response(&e, &request_id),
    };
    let calls = if action.is_read_only() {
        Calls::Reads
    } else {
        Calls::Writes
    };
    if let Err(t) = throttle.admit(&ctx.account_id, calls) {
        let e = Ec2Error::new(
            "RequestLimitExceeded",
            503,
            format!(
                "Request limit exceeded: account {} is over its request rate for {}; retry after {} s",
                ctx.account_id,
                action.name(),
                t.retry_after_seconds
            ),
        );
        let mut response = error_response(&e, &request_id);
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            HeaderValue::from(t.retry_after_seconds),
        );
        return response;
    }
    // As for Image Builder calls: local reads on the runtime's thread, writes (and reads of a
    // shared database, whose client blocks) on a blocking thread.
    let result = if action.is_read_only() && !service.store.is_shared() {
        Ok(call_action(&service, &ctx, action, params))
    } else {
        tokio::task::spawn_blocking(move || call_action(&service, &ctx, action, params)).await
    };
    match result {
        Ok(Ok(body)) => xml_response(StatusCode::OK, body, &request_id),
        Ok(Err(e)) => {
            tracing::debug!(action = action.name(), code = e.code, message = %e.message, "EC2 call refused");
            error_response(&e, &request_id)
        }
        Err(join_error) => {
            tracing::error!(action = action.name(), error = %join_error, "EC2 handler panicked");
            error_response(
                &Ec2Error::internal("internal error while handling the request"),
                &request_id,
            )
        }
    }
}

/// The API a request is for, from its method, path and query.
pub(crate) fn api_of(method: &str, path: &str, query: Option<&str>) -> Api {
    if is_ec2_request(method, path, query) {
        Api::Ec2
    } else {
        Api::ImageBuilder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_requests_are_told_from_image_builder_ones() {
        assert!(is_ec2_request("POST", "/", None));
        assert!(is_ec2_request(
            "GET",
            "/",
            Some("Action=DescribeImages&Version=2016-11-15")
        ));
        assert!(is_ec2_request("GET", "/", Some("Version=1&Action=X")));
        assert!(!is_ec2_request("GET", "/", None));
        assert!(!is_ec2_request("GET", "/", Some("NoAction=1")));
        assert!(!is_ec2_request("POST", "/CreateImage", None));
        assert!(!is_ec2_request(
            "GET",
            "/ListImages",
            Some("Action=DescribeImages")
        ));
        assert!(!is_ec2_request("PUT", "/", None));
    }

    #[test]
    fn actions_unknown_to_ec2_and_unserved_ones_differ() {
        assert_eq!(
            Action::parse("DescribeImages").unwrap(),
            Action::DescribeImages
        );
        let unserved = Action::parse("RunInstances").unwrap_err();
        assert_eq!(unserved.code, "UnsupportedOperation");
        assert!(
            unserved
                .message
                .contains("DescribeImages, DescribeImageAttribute"),
            "{unserved}"
        );
        let unknown = Action::parse("DescribeUnicorns").unwrap_err();
        assert_eq!(unknown.code, "InvalidAction");
        assert!(unknown.message.contains("DescribeUnicorns"));
        // The list's comment lines are not actions.
        assert_eq!(
            Action::parse("# Every action").unwrap_err().code,
            "InvalidAction"
        );
        for a in Action::ALL {
            assert!(
                EC2_ACTIONS.lines().any(|l| l == a.name()),
                "{a:?} is an EC2 action"
            );
        }
        assert!(Action::DescribeExportImageTasks.is_read_only());
        assert!(!Action::CreateTags.is_read_only());
    }

    #[test]
    fn image_ids_are_checked() {
        assert!(check_image_id("ami-0123456789abcdef0").is_ok());
        assert!(check_image_id("ami-12345678").is_ok());
        for bad in [
            "ami-123",
            "ami-0123456789abcdefg",
            "i-0123456789abcdef0",
            "",
            "ami-",
        ] {
            assert_eq!(
                check_image_id(bad).unwrap_err().code,
                "InvalidAMIID.Malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn form_bodies_must_be_forms() {
        assert_eq!(form_body(None, b"").unwrap(), "");
        assert_eq!(
            form_body(
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                b"Action=X"
            )
            .unwrap(),
            "Action=X"
        );
        let json = form_body(Some("application/json"), b"{}").unwrap_err();
        assert!(json.message.contains("application/json"), "{json}");
        assert!(form_body(Some("application/x-www-form-urlencoded"), b"\xff").is_err());
    }
}
