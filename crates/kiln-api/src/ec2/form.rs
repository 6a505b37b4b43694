//! The parameters of an EC2 Query call: `application/x-www-form-urlencoded` pairs from the body
//! of a `POST /` (what the SDKs send) or the query string of a `GET /`.
//!
//! Lists are flattened with 1-based indices (`ImageId.1`, `ImageId.2`), structures with dotted
//! member names (`Filter.1.Name`, `Filter.1.Value.1`, `LaunchPermission.Add.1.UserId`), as the
//! `ec2` protocol serializes them. Each operation takes the parameters it knows out of
//! [`Params`]; whatever is left at the end is refused ([`Params::finish`]), so nothing a caller
//! sends is silently ignored.

use super::error::Ec2Error;
use std::collections::BTreeMap;

/// The API version Kiln answers (botocore's and every current SDK's).
pub const VERSION: &str = "2016-11-15";

/// Query parameters that carry a presigned request's signature, not the call's input.
const SIGNATURE_PARAMETERS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// Decodes `a=1&b=x+y%2Bz&c` into pairs: `+` is a space, then percent-decoding. Text that does
/// not decode to UTF-8 is refused, naming the parameter.
pub fn decode(text: &str) -> Result<Vec<(String, String)>, Ec2Error> {
    let decode_one = |s: &str| -> Result<String, String> {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| spaced)
    };
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_one(k).map_err(|raw| {
            Ec2Error::invalid_value(format!(
                "the parameter name '{raw}' is not UTF-8 once percent-decoded"
            ))
        })?;
        let value = decode_one(v).map_err(|_| {
            Ec2Error::invalid_value(format!(
                "{key}: the value is not UTF-8 once percent-decoded"
            ))
        })?;
        out.push((key, value));
    }
    Ok(out)
}

/// The parameters not yet taken by the operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// The parameters of a request: its query string (less a presigned URL's signature) and its
    /// form body. A name given twice is refused rather than one of its values picked.
    pub fn from_request(query: Option<&str>, form: Option<&str>) -> Result<Params, Ec2Error> {
        let mut values = BTreeMap::new();
        let from_query = decode(query.unwrap_or_default())?
            .into_iter()
            .filter(|(k, _)| !SIGNATURE_PARAMETERS.contains(&k.as_str()));
        let from_body = decode(form.unwrap_or_default())?;
        for (key, value) in from_query.chain(from_body) {
            if values.contains_key(&key) {
                return Err(Ec2Error::invalid_value(format!(
                    "the parameter {key} is given more than once"
                )));
            }
            values.insert(key, value);
        }
        Ok(Params { values })
    }

    /// For tests: parameters from pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
        Params {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// `Action`, which every call names.
    pub fn action(&mut self) -> Result<String, Ec2Error> {
        match self.values.remove("Action") {
            Some(a) if !a.is_empty() => Ok(a),
            _ => Err(Ec2Error::new(
                "MissingAction",
                400,
                "The request must contain the parameter Action (EC2 Query calls are POST / with Action=DescribeImages&Version=2016-11-15&...)",
            )),
        }
    }

    /// `Version`: absent, or the one version Kiln answers (its XML namespace is that version's).
    pub fn version(&mut self) -> Result<(), Ec2Error> {
        match self.values.remove("Version") {
            None => Ok(()),
            Some(v) if v == VERSION => Ok(()),
            Some(v) => Err(Ec2Error::invalid_value(format!(
                "Version: Kiln answers the EC2 API version {VERSION} only, not '{v}'"
            ))),
        }
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    pub fn required(&mut self, key: &str) -> Result<String, Ec2Error> {
        self.string(key).ok_or_else(|| Ec2Error::missing(key))
    }

    /// `true` or `false` (any case).
    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, Ec2Error> {
        let Some(v) = self.string(key) else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(Ec2Error::invalid_value(format!(
                "{key}: '{v}' is not a Boolean (true or false)"
            ))),
        }
    }

    pub fn integer(&mut self, key: &str) -> Result<Option<i64>, Ec2Error> {
        let Some(v) = self.string(key) else {
            return Ok(None);
        };
        v.parse::<i64>()
            .map(Some)
            .map_err(|_| Ec2Error::invalid_value(format!("{key}: '{v}' is not an integer")))
    }

    /// The indices `N` of `prefix.N` and `prefix.N.<member>`, in order.
    pub fn indices(&self, prefix: &str) -> Result<Vec<u32>, Ec2Error> {
        let dotted = format!("{prefix}.");
        let mut out = std::collections::BTreeSet::new();
        for key in self.values.keys().filter(|k| k.starts_with(&dotted)) {
            let rest = &key[dotted.len()..];
            let index = rest.split('.').next().unwrap_or_default();
            out.insert(parse_index(key, prefix, index)?);
        }
        Ok(out.into_iter().collect())
    }

    /// The list `prefix.1`, `prefix.2`, ... in index order (gaps allowed, as EC2 allows them).
    pub fn list(&mut self, prefix: &str) -> Result<Vec<String>, Ec2Error> {
        let dotted = format!("{prefix}.");
        let keys: Vec<String> = self
            .values
            .keys()
            .filter(|k| k.starts_with(&dotted) && !k[dotted.len()..].contains('.'))
            .cloned()
            .collect();
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let index = parse_index(&key, prefix, &key[dotted.len()..])?;
            if let Some(value) = self.values.remove(&key) {
                entries.push((index, value));
            }
        }
        entries.sort_by_key(|(i, _)| *i);
        Ok(entries.into_iter().map(|(_, v)| v).collect())
    }

    /// Refuses whatever the operation did not take.
    pub fn finish(self, action: &str) -> Result<(), Ec2Error> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(key) => Err(Ec2Error::unknown_parameter(&key, action)),
        }
    }
}

/// A list index: 1, 2, 3... written without leading zeros (so that one entry has one name).
fn parse_index(key: &str, prefix: &str, text: &str) -> Result<u32, Ec2Error> {
    let valid = !text.is_empty()
        && !text.starts_with('0')
        && text.len() <= 9
        && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(n) if valid => Ok(n),
        _ => Err(Ec2Error::invalid_value(format!(
            "{key}: the members of {prefix} are numbered {prefix}.1, {prefix}.2, ..."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes_and_plus() {
        assert_eq!(
            decode("Action=DescribeImages&Filter.1.Value.1=web-%2A+x%2By&&Empty&Name=%C3%A9")
                .unwrap(),
            vec![
                ("Action".to_string(), "DescribeImages".to_string()),
                ("Filter.1.Value.1".to_string(), "web-* x+y".to_string()),
                ("Empty".to_string(), String::new()),
                ("Name".to_string(), "é".to_string()),
            ]
        );
        let bad = decode("Name=%FF").unwrap_err();
        assert_eq!(bad.code, "InvalidParameterValue");
        assert!(bad.message.starts_with("Name:"), "{}", bad.message);
    }

    #[test]
    fn lists_come_back_in_index_order_and_nested_members_stay() {
        let mut p = Params::from_request(
            None,
            Some("ImageId.10=ami-c&ImageId.2=ami-b&ImageId.1=ami-a&Filter.2.Name=name&Filter.2.Value.1=x&Filter.1.Name=tag-key&Filter.1.Value.2=k2&Filter.1.Value.1=k1"),
        )
        .unwrap();
        assert_eq!(p.list("ImageId").unwrap(), vec!["ami-a", "ami-b", "ami-c"]);
        assert_eq!(p.indices("Filter").unwrap(), vec![1, 2]);
        assert_eq!(p.list("Filter.1.Value").unwrap(), vec!["k1", "k2"]);
        assert_eq!(p.string("Filter.1.Name").as_deref(), Some("tag-key"));
        assert_eq!(p.list("Nothing").unwrap(), Vec::<String>::new());
        // Filter.2 is still there: finishing now refuses it, naming it.
        let e = p.finish("DescribeImages").unwrap_err();
        assert_eq!(e.code, "UnknownParameter");
        assert!(e.message.contains("Filter.2.Name"), "{}", e.message);
    }

    #[test]
    fn bad_indices_duplicates_and_values_are_refused() {
        for body in ["ImageId.0=a", "ImageId.01=a", "ImageId.x=a", "ImageId.=a"] {
            let mut p = Params::from_request(None, Some(body)).unwrap();
            let e = p.list("ImageId").unwrap_err();
            assert!(e.message.contains("ImageId.1, ImageId.2"), "{body}: {e}");
        }
        let twice = Params::from_request(Some("Owner.1=self"), Some("Owner.1=self")).unwrap_err();
        assert!(twice.message.contains("Owner.1"), "{twice}");
        let mut p = Params::from_pairs([("DryRun", "yes"), ("MaxResults", "ten")]);
        assert!(p
            .boolean("DryRun")
            .unwrap_err()
            .message
            .starts_with("DryRun:"));
        assert!(p
            .integer("MaxResults")
            .unwrap_err()
            .message
            .starts_with("MaxResults:"));
        let mut p = Params::from_pairs([("DryRun", "TRUE")]);
        assert_eq!(p.boolean("DryRun").unwrap(), Some(true));
    }

    #[test]
    fn a_presigned_urls_signature_is_not_input() {
        let mut p = Params::from_request(
            Some("Action=DescribeImages&Version=2016-11-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00&X-Amz-Credential=a%2Fb"),
            None,
        )
        .unwrap();
        assert_eq!(p.action().unwrap(), "DescribeImages");
        p.version().unwrap();
        p.finish("DescribeImages").unwrap();
    }

    #[test]
    fn action_and_version_are_checked() {
        assert_eq!(
            Params::default().action().unwrap_err().code,
            "MissingAction"
        );
        let mut old = Params::from_pairs([("Version", "2014-10-01")]);
        assert!(old.version().unwrap_err().message.contains("2016-11-15"));
    }
}
