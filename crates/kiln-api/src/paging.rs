//! Pagination: `maxResults` (1-100, default 25) and an opaque `nextToken`.
//!
//! A token is the last key of the page, bound to the operation, account and region, and signed
//! with HMAC-SHA256 under a key kept in the database. Tokens therefore stay valid across
//! restarts, and a token that was altered, or minted for another list, is refused with
//! `InvalidPaginationTokenException`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use kiln_wire::{ApiError, ErrorKind, RequestContext};
use sha2::Sha256;

pub const DEFAULT_PAGE: usize = 25;
pub const SIGNING_KEY_SETTING: &str = "pagination-signing-key";

#[derive(Clone)]
pub struct Pager {
    key: Vec<u8>,
}

fn invalid(why: &str) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidPaginationTokenException,
        format!("nextToken is not valid: {why}"),
    )
}

/// One page of a list.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

impl Pager {
    pub fn new(key: Vec<u8>) -> Pager {
        Pager { key }
    }

    /// A fresh random signing key, hex encoded for storage.
    pub fn generate_key() -> String {
        let bytes: [u8; 32] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Pager> {
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        let key: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        key.map(Pager::new)
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(payload);
        mac.finalize().into_bytes()[..16].to_vec()
    }

    fn scope(op: &str, ctx: &RequestContext) -> String {
        format!("{op}\n{}\n{}\n", ctx.account_id, ctx.region)
    }

    pub fn encode(&self, op: &str, ctx: &RequestContext, after: &str) -> String {
        let payload = format!("{}{after}", Self::scope(op, ctx));
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()))
        )
    }

    /// The key after which the next page starts; `None` when no token was given.
    pub fn decode(
        &self,
        op: &str,
        ctx: &RequestContext,
        token: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let Some(token) = token else {
            return Ok(None);
        };
        let (payload, sig) = token.split_once('.').ok_or_else(|| invalid("malformed"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid("malformed"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| invalid("malformed"))?;
        if self.mac(&payload) != sig {
            return Err(invalid(
                "it was not issued by this server or has been altered",
            ));
        }
        let payload = String::from_utf8(payload).map_err(|_| invalid("malformed"))?;
        let after = payload
            .strip_prefix(&Self::scope(op, ctx))
            .ok_or_else(|| invalid("it belongs to another list operation, account or region"))?;
        Ok(Some(after.to_string()))
    }

    /// Cuts `items` (already in key order, starting after the cursor) to one page.
    pub fn page<T>(
        &self,
        op: &str,
        ctx: &RequestContext,
        items: impl IntoIterator<Item = T>,
        max_results: Option<i32>,
        key: impl Fn(&T) -> String,
    ) -> Page<T> {
        let limit = max_results
            .map(|m| m.clamp(1, 100) as usize)
            .unwrap_or(DEFAULT_PAGE);
        let mut items = items.into_iter();
        let page: Vec<T> = items.by_ref().take(limit).collect();
        let next_token = match (page.last(), items.next()) {
            (Some(last), Some(_)) => Some(self.encode(op, ctx, &key(last))),
            _ => None,
        };
        Page {
            items: page,
            next_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            now_millis: 0,
            valid_until: Default::default(),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_and_tampering() {
        let pager = Pager::from_hex(&Pager::generate_key()).unwrap();
        let t = pager.encode("ListX", &ctx(), "arn:1");
        assert_eq!(
            pager.decode("ListX", &ctx(), Some(&t)).unwrap().as_deref(),
            Some("arn:1")
        );
        assert!(pager.decode("ListY", &ctx(), Some(&t)).is_err());
        let mut other = ctx();
        other.account_id = "999999999999".into();
        assert!(pager.decode("ListX", &other, Some(&t)).is_err());
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("ListX\n123456789012\nus-east-1\narn:0"),
            t.split_once('.').unwrap().1
        );
        assert!(pager.decode("ListX", &ctx(), Some(&forged)).is_err());
        assert!(pager.decode("ListX", &ctx(), Some("garbage")).is_err());
        let other_key = Pager::from_hex(&Pager::generate_key()).unwrap();
        assert!(other_key.decode("ListX", &ctx(), Some(&t)).is_err());
    }

    #[test]
    fn pages() {
        let pager = Pager::new(vec![1; 32]);
        let p = pager.page("L", &ctx(), 0..5, Some(2), |i| i.to_string());
        assert_eq!(p.items, vec![0, 1]);
        assert!(p.next_token.is_some());
        let p = pager.page("L", &ctx(), 0..2, Some(2), |i| i.to_string());
        assert!(p.next_token.is_none());
        let p = pager.page("L", &ctx(), 0..30, None, |i| i.to_string());
        assert_eq!(p.items.len(), DEFAULT_PAGE);
    }
}
