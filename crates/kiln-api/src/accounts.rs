//! Which account and region a request belongs to.

use std::collections::HashMap;

pub const DEFAULT_ACCOUNT: &str = "123456789012";
pub const DEFAULT_REGION: &str = "us-east-1";

/// Maps access key ids to account ids. A key that is not listed belongs to the default account.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub default_account: String,
    pub default_region: String,
    by_key: HashMap<String, String>,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            default_account: DEFAULT_ACCOUNT.to_string(),
            default_region: DEFAULT_REGION.to_string(),
            by_key: HashMap::new(),
        }
    }
}

impl Accounts {
    /// Parses `KEY=ACCOUNT[,KEY=ACCOUNT...]`, where each account is 12 digits.
    pub fn parse_map(&mut self, spec: &str) -> Result<(), String> {
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (key, account) = entry.split_once('=').ok_or_else(|| {
                format!("account map entry '{entry}' must be ACCESS_KEY_ID=ACCOUNT_ID")
            })?;
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "account id '{account}' for access key '{key}' must be 12 digits"
                ));
            }
            self.by_key.insert(key.to_string(), account.to_string());
        }
        Ok(())
    }

    pub fn account_for(&self, access_key_id: Option<&str>) -> &str {
        access_key_id
            .and_then(|k| self.by_key.get(k))
            .map(String::as_str)
            .unwrap_or(&self.default_account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keys_and_falls_back_to_the_default() {
        let mut a = Accounts::default();
        a.parse_map("AKIDA=111111111111, AKIDB=222222222222")
            .unwrap();
        assert_eq!(a.account_for(Some("AKIDA")), "111111111111");
        assert_eq!(a.account_for(Some("other")), DEFAULT_ACCOUNT);
        assert_eq!(a.account_for(None), DEFAULT_ACCOUNT);
        assert!(a.parse_map("AKID=12").is_err());
        assert!(a.parse_map("nonsense").is_err());
    }
}
