//! From an operation and its input object to an HTTP request, per the model's http traits:
//! body members as a JSON object, query members as (repeated) query parameters, the URI label
//! as one percent-encoded path segment (the tag operations' `/tags/{resourceArn}`).

use kiln_wire::schema::{Location, OperationDef, ShapeKind};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

/// What `encodeURIComponent` leaves alone; everything else is encoded, as the SDKs do.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One request as the fuzzer sends it. `path` includes the query string.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The operation and the mutations applied, for the report.
    pub label: String,
    /// Whether the request's auth headers are the ones signing produced.
    pub signed: bool,
}

pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A query or label value: strings as they are, anything else (after a type mutation) as JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn encode(def: &OperationDef, input: &Map<String, Value>) -> Request {
    let ShapeKind::Structure { members, .. } = &def.input.shape().kind else {
        unreachable!("every input shape of the model is a structure");
    };
    let mut path = def.uri.to_string();
    let mut query = Vec::new();
    let mut body = Map::new();
    let mut has_body_members = false;
    for (name, value) in input {
        let member = members.iter().find(|m| m.name == name);
        match member.map(|m| m.location) {
            Some(Location::Uri(label)) => {
                path = path.replace(&format!("{{{label}}}"), &encode_component(&scalar(value)));
            }
            Some(Location::Query(key)) => match value {
                Value::Array(items) => {
                    for item in items {
                        query.push(format!("{key}={}", encode_component(&scalar(item))));
                    }
                }
                other => query.push(format!("{key}={}", encode_component(&scalar(other)))),
            },
            // Unknown members (a mutation added them) travel in the body, like body members.
            Some(Location::Body) | None => {
                has_body_members = true;
                body.insert(name.clone(), value.clone());
            }
        }
    }
    // A label the input lacks stays empty: `/tags/` alone, which routing must refuse.
    if let Some(start) = path.find('{') {
        path.truncate(start);
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let body = if has_body_members || def.method != "GET" {
        Value::Object(body).to_string().into_bytes()
    } else {
        Vec::new()
    };
    Request {
        method: def.method.to_string(),
        path,
        headers: Vec::new(),
        body,
        label: def.name.to_string(),
        signed: false,
    }
}
