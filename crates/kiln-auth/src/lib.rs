//! Who is calling Kiln, and whether to believe them.
//!
//! Every Image Builder request, and every request to Kiln's own `/kiln/v1/` endpoints, carries
//! an AWS Signature Version 4. This crate holds what is needed to check one, without any HTTP
//! framework in it:
//!
//! - [`sigv4`] parses the signature (the `Authorization` header, or the `X-Amz-*` query
//!   parameters of a presigned URL), rebuilds the canonical request from what arrived, and
//!   verifies the signature with the caller's secret, the request date and the credential scope;
//! - [`credentials`] reads and writes the key pairs, in the AWS shared credentials file format
//!   (`aws_access_key_id`, `aws_secret_access_key`, plus `aws_account_id` for the account a key
//!   acts as), so that the aws CLI and the SDKs read the same file;
//! - [`regions`] says which region names a credential scope may carry: a region becomes part of
//!   every ARN, so a scope that names anything else is refused, never pasted into an ARN.
//!
//! The HTTP layer (`kiln-api`) turns [`sigv4::SigV4Error`]s into AWS error answers with the code
//! each carries ([`sigv4::SigV4Error::code`]).

pub mod credentials;
pub mod regions;
pub mod sigv4;
