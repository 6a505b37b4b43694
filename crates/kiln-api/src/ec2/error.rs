//! EC2's errors: a code, a message and an HTTP status, answered as EC2's XML
//! (`<Response><Errors><Error><Code>...`), which botocore turns into a `ClientError` with that
//! code.

use kiln_auth::sigv4::SigV4Error;

/// One EC2 error. Codes are EC2's own (its "common client error codes" and the per-resource
/// `InvalidAMIID.*` family), so that SDK and Terraform code that matches on them works.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

impl Ec2Error {
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> Ec2Error {
        Ec2Error {
            code,
            message: message.into(),
            status,
        }
    }

    fn client(code: &'static str, message: impl Into<String>) -> Ec2Error {
        Ec2Error::new(code, 400, message)
    }

    /// A value EC2 would refuse (the message names the parameter).
    pub fn invalid_value(message: impl Into<String>) -> Ec2Error {
        Ec2Error::client("InvalidParameterValue", message)
    }

    /// Parameters that may not be given together.
    pub fn combination(message: impl Into<String>) -> Ec2Error {
        Ec2Error::client("InvalidParameterCombination", message)
    }

    pub fn missing(parameter: &str) -> Ec2Error {
        Ec2Error::client(
            "MissingParameter",
            format!("The request must contain the parameter {parameter}"),
        )
    }

    pub fn unknown_parameter(parameter: &str, action: &str) -> Ec2Error {
        Ec2Error::client(
            "UnknownParameter",
            format!("The parameter {parameter} is not recognized by {action}"),
        )
    }

    pub fn ami_malformed(id: &str) -> Ec2Error {
        Ec2Error::client(
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"ami-...\")"),
        )
    }

    /// AMIs that do not exist for the caller: never made, deregistered, in another Region, or
    /// another account's and not shared with it (EC2 answers all of these alike).
    pub fn ami_not_found(ids: &[String]) -> Ec2Error {
        Ec2Error::client(
            "InvalidAMIID.NotFound",
            format!("The image id '[{}]' does not exist", ids.join(", ")),
        )
    }

    pub fn user_id_malformed(parameter: &str, value: &str) -> Ec2Error {
        Ec2Error::client(
            "InvalidUserID.Malformed",
            format!("{parameter}: invalid user id: \"{value}\" (expecting a 12-digit account id)"),
        )
    }

    /// The caller may see the AMI but is not its owner. EC2's common errors give AuthFailure
    /// for "trying to use an AMI for which you do not have permissions".
    pub fn not_owner(image_id: &str, owner: &str, what: &str) -> Ec2Error {
        Ec2Error::new(
            "AuthFailure",
            403,
            format!(
                "Not authorized for image:{image_id}: it belongs to account {owner}, and only its owner may {what}"
            ),
        )
    }

    /// A dry run whose checks all passed.
    pub fn dry_run_succeeded() -> Ec2Error {
        Ec2Error::new(
            "DryRunOperation",
            412,
            "Request would have succeeded, but DryRun flag is set.",
        )
    }

    /// What a dry run answers when the caller lacks the permission the call needs.
    pub fn unauthorized(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new(
            "UnauthorizedOperation",
            403,
            format!(
                "You are not authorized to perform this operation. {}",
                message.into()
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new("InternalError", 500, message)
    }

    /// The EC2 form of a refused signature (see `crate::auth`).
    pub fn from_signature(e: &SigV4Error) -> Ec2Error {
        let code = match e {
            SigV4Error::Missing => "MissingAuthenticationToken",
            SigV4Error::Incomplete(_) => "IncompleteSignature",
            SigV4Error::UnknownKey | SigV4Error::InvalidToken => "AuthFailure",
            SigV4Error::ExpiredToken => "RequestExpired",
            SigV4Error::Invalid(m)
                if m.starts_with("Signature expired") || m.starts_with("Signature not yet") =>
            {
                "RequestExpired"
            }
            SigV4Error::Invalid(_) => "SignatureDoesNotMatch",
        };
        Ec2Error::new(code, e.status(), e.to_string())
    }

    /// The body of the error answer.
    pub fn to_xml(&self, request_id: &str) -> String {
        use super::xml::escape;
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
            escape(self.code),
            escape(&self.message),
            escape(request_id)
        )
    }
}

impl From<kiln_store::StoreError> for Ec2Error {
    fn from(e: kiln_store::StoreError) -> Ec2Error {
        tracing::error!(error = %e, "storage failure");
        Ec2Error::internal(format!("internal storage error: {e}"))
    }
}

impl From<kiln_core::CoreError> for Ec2Error {
    fn from(e: kiln_core::CoreError) -> Ec2Error {
        tracing::error!(error = %e, "EC2 call failed below the API");
        Ec2Error::internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_ec2_xml_with_escaped_text() {
        let e = Ec2Error::invalid_value("Filter.1.Name: the filter 'a<b' is invalid & unknown");
        let xml = e.to_xml("req-1");
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidParameterValue</Code>"));
        assert!(
            xml.contains(
                "<Message>Filter.1.Name: the filter 'a&lt;b' is invalid &amp; unknown</Message>"
            ),
            "{xml}"
        );
        assert!(xml.ends_with("<RequestID>req-1</RequestID></Response>"));
    }

    #[test]
    fn signature_errors_take_ec2_codes() {
        assert_eq!(
            Ec2Error::from_signature(&SigV4Error::UnknownKey).code,
            "AuthFailure"
        );
        assert_eq!(
            Ec2Error::from_signature(&SigV4Error::Invalid("Signature expired: x".into())).code,
            "RequestExpired"
        );
        let mismatch = Ec2Error::from_signature(&SigV4Error::Invalid("mismatch".into()));
        assert_eq!(
            (mismatch.code, mismatch.status),
            ("SignatureDoesNotMatch", 403)
        );
        assert_eq!(
            Ec2Error::from_signature(&SigV4Error::Incomplete("x".into())).status,
            400
        );
    }
}
