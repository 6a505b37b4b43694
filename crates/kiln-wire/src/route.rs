//! From an HTTP method, raw path and query to an operation and one JSON input object.
//!
//! Routing is by method and path only (rest-json has no target header). The tag operations
//! carry the resource ARN as one percent-encoded path segment, so routing looks at the raw path
//! and decodes the segment afterwards.

use crate::error::ApiError;
use crate::generated::operations::{Operation, OPERATIONS};
use crate::schema::{Location, OperationDef, ShapeKind};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

const TAGS_PREFIX: &str = "/tags/";

/// The operation a request names, and the decoded `{label}` of its URI if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub operation: Operation,
    pub uri_label: Option<String>,
}

fn by_path() -> &'static HashMap<&'static str, Vec<&'static OperationDef>> {
    static TABLE: OnceLock<HashMap<&'static str, Vec<&'static OperationDef>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: HashMap<&'static str, Vec<&'static OperationDef>> = HashMap::new();
        for def in OPERATIONS.iter() {
            let key = if def.uri.starts_with(TAGS_PREFIX) {
                TAGS_PREFIX
            } else {
                def.uri
            };
            table.entry(key).or_default().push(def);
        }
        table
    })
}

fn decode(segment: &str) -> Result<String, ApiError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::invalid_request(format!(
                "path segment '{segment}' is not valid percent-encoded UTF-8"
            ))
        })
}

/// Finds the operation for `method` and `raw_path` (without the query string).
pub fn route(method: &str, raw_path: &str) -> Result<Routed, ApiError> {
    let (key, label) = match raw_path.strip_prefix(TAGS_PREFIX) {
        Some(segment) if !segment.is_empty() && !segment.contains('/') => (TAGS_PREFIX, Some(decode(segment)?)),
        Some(_) => {
            return Err(ApiError::client(format!(
                "{method} {raw_path}: the resource ARN must be one percent-encoded path segment after /tags/"
            )))
        }
        None => (raw_path, None),
    };
    let candidates = by_path().get(key).ok_or_else(|| {
        ApiError::client(format!(
            "{method} {raw_path}: no Image Builder operation has this path"
        ))
    })?;
    let def = candidates
        .iter()
        .find(|d| d.method == method)
        .ok_or_else(|| {
            let allowed: Vec<String> = candidates
                .iter()
                .map(|d| format!("{} for {}", d.method, d.name))
                .collect();
            ApiError::client(format!(
                "{method} {raw_path}: wrong HTTP method; this path takes {}",
                allowed.join(", ")
            ))
        })?;
    Ok(Routed {
        operation: def.operation,
        uri_label: label,
    })
}

/// Merges body, query string and URI label into the operation's input object.
pub fn assemble_input(
    def: &OperationDef,
    query: Option<&str>,
    uri_label: Option<String>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut input = parse_body(body)?;
    let ShapeKind::Structure { members, .. } = &def.input.shape().kind else {
        return Err(ApiError::service(format!(
            "{}: input shape is not a structure",
            def.name
        )));
    };
    let pairs = query_pairs(query)?;
    for member in members.iter() {
        match member.location {
            Location::Body => {}
            Location::Uri(_) => {
                if let Some(label) = &uri_label {
                    input.insert(member.name.to_string(), Value::String(label.clone()));
                }
            }
            Location::Query(key) => {
                let values: Vec<&String> = pairs
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .collect();
                if values.is_empty() {
                    input.remove(member.name);
                    continue;
                }
                let value = match &member.shape.shape().kind {
                    ShapeKind::List { .. } => {
                        Value::Array(values.iter().map(|v| Value::String((*v).clone())).collect())
                    }
                    ShapeKind::Integer { .. } | ShapeKind::Long { .. } => {
                        let raw = values[values.len() - 1];
                        raw.parse::<i64>()
                            .map(Value::from)
                            .unwrap_or_else(|_| Value::String(raw.clone()))
                    }
                    ShapeKind::Boolean => {
                        let raw = values[values.len() - 1];
                        match raw.as_str() {
                            "true" => Value::Bool(true),
                            "false" => Value::Bool(false),
                            _ => Value::String(raw.clone()),
                        }
                    }
                    _ => Value::String(values[values.len() - 1].clone()),
                };
                input.insert(member.name.to_string(), value);
            }
        }
    }
    Ok(Value::Object(input))
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn every_operation_routes_to_itself() {
        for def in OPERATIONS.iter() {
            let path = if def.uri.starts_with(TAGS_PREFIX) {
                "/tags/arn%3Aaws%3Aimagebuilder%3Aus-east-1%3A123456789012%3Aimage-pipeline%2Fp"
                    .to_string()
            } else {
                def.uri.to_string()
            };
            let routed = route(def.method, &path).unwrap_or_else(|e| panic!("{}: {e}", def.name));
            assert_eq!(routed.operation, def.operation, "{}", def.name);
        }
        assert_eq!(OPERATIONS.len(), 77);
    }

    #[test]
    fn tag_arn_is_decoded_from_one_segment() {
        let r = route(
            "GET",
            "/tags/arn%3Aaws%3Aimagebuilder%3Aus-east-1%3A123456789012%3Aimage-pipeline%2Fp",
        )
        .unwrap();
        assert_eq!(r.operation, Operation::ListTagsForResource);
        assert_eq!(
            r.uri_label.as_deref(),
            Some("arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p")
        );
    }

    #[test]
    fn unknown_paths_and_wrong_methods_are_client_errors() {
        let e = route("GET", "/Nope").unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientException);
        let e = route("GET", "/CreateImagePipeline").unwrap_err();
        assert!(
            e.message.contains("PUT for CreateImagePipeline"),
            "{}",
            e.message
        );
        assert!(route("GET", "/tags/a/b").is_err());
    }

    #[test]
    fn query_members_and_repeated_keys() {
        let def = Operation::UntagResource.def();
        let v = assemble_input(
            def,
            Some("tagKeys=k1&tagKeys=k%202"),
            Some("arn".into()),
            b"",
        )
        .unwrap();
        assert_eq!(v["tagKeys"], serde_json::json!(["k1", "k 2"]));
        assert_eq!(v["resourceArn"], "arn");
    }

    #[test]
    fn bodies_must_be_json_objects() {
        let def = Operation::CreateImagePipeline.def();
        assert!(assemble_input(def, None, None, b"[1]").is_err());
        assert!(assemble_input(def, None, None, b"{\"a\":").is_err());
        assert!(assemble_input(def, None, None, b"").is_ok());
    }
}
