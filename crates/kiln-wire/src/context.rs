//! Who is calling, and where: the part of a request that is not its input.

/// The caller's account and region and this request's id. The region comes from the SigV4
/// credential scope; the account from the access key (see `kiln_api::accounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub account_id: String,
    pub region: String,
    /// The current time, in milliseconds since the Unix epoch, fixed for the whole request.
    pub now_millis: i64,
    /// A handler whose answer depends on the time sets the instant (milliseconds) at which the
    /// answer may change, so that a cached copy is not served past it.
    pub valid_until: std::cell::Cell<Option<i64>>,
}

impl RequestContext {
    /// Notes that the answer being built may change at `millis`.
    pub fn valid_until(&self, millis: i64) {
        let earliest = self.valid_until.get().map_or(millis, |t| t.min(millis));
        self.valid_until.set(Some(earliest));
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/imagebuilder/aws4_request, ...`
/// that select the account and region. Signatures are not verified (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    pub access_key_id: String,
    pub region: String,
}

/// Parses the credential scope of a SigV4 `Authorization` header. Returns `None` for anything else.
pub fn parse_credential_scope(authorization: &str) -> Option<CredentialScope> {
    let rest = authorization.trim().strip_prefix("AWS4-HMAC-SHA256")?;
    let credential = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    let mut parts = credential.split('/');
    let access_key_id = parts.next()?.to_string();
    let _date = parts.next()?;
    let region = parts.next()?.to_string();
    if access_key_id.is_empty() || region.is_empty() {
        return None;
    }
    Some(CredentialScope {
        access_key_id,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scope_boto3_sends() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/eu-west-2/imagebuilder/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=918e";
        assert_eq!(
            parse_credential_scope(h),
            Some(CredentialScope {
                access_key_id: "AKIDEXAMPLE".into(),
                region: "eu-west-2".into()
            })
        );
    }

    #[test]
    fn rejects_other_schemes() {
        for h in [
            "",
            "Basic abc",
            "AWS4-HMAC-SHA256 SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=/x/y",
        ] {
            assert_eq!(parse_credential_scope(h), None, "{h}");
        }
    }
}
