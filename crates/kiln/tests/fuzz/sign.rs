//! SigV4 signatures as the SDKs make them (AWS's own `aws-sigv4`), with the key the test
//! harness gives the server, so that valid requests pass signature verification and mutations
//! reach the handlers.

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use std::time::SystemTime;

pub const SERVICE: &str = "imagebuilder";

/// Who signs, for where, and when.
pub struct Signer<'a> {
    pub key: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub time: SystemTime,
}

/// The headers to add (`authorization`, `x-amz-date`) to a request to `host` that carries
/// `headers` (signed too); `None` when the request cannot be expressed as a URI to sign (a
/// mutated path).
pub fn sign_request(
    signer: &Signer,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Vec<(String, String)>> {
    let identity =
        aws_credential_types::Credentials::new(signer.key, signer.secret, None, None, "kiln-fuzz")
            .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(signer.region)
        .name(SERVICE)
        .time(signer.time)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let url = format!("http://{host}{path}");
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .ok()?;
    let (instructions, _) = sign(request, &params).ok()?.into_parts();
    Some(
        instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}
