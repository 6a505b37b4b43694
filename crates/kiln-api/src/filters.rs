//! The `filters` member of list operations: `[{name, values}]`.
//!
//! A resource passes when, for every filter, its value for that filter's name equals one of
//! the values. The `name` filter alone may use a wildcard at the end (`web*`) or at both ends
//! (`*web*`), as the API documents.

use kiln_wire::types::Filter;
use kiln_wire::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    filters: Vec<(String, Vec<String>)>,
}

impl Filters {
    /// Checks the names against those the operation supports.
    pub fn parse(filters: Option<&Vec<Filter>>, allowed: &[&str]) -> Result<Filters, ApiError> {
        let mut parsed = Vec::new();
        for (i, f) in filters.into_iter().flatten().enumerate() {
            let name = f.name.clone().unwrap_or_default();
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::invalid_request(format!(
                    "filters[{i}].name: '{name}' is not a filter of this operation; use one of: {}",
                    allowed.join(", ")
                )));
            }
            let values = f.values.clone().unwrap_or_default();
            if values.is_empty() {
                return Err(ApiError::invalid_request(format!(
                    "filters[{i}].values: give at least one value"
                )));
            }
            for (j, v) in values.iter().enumerate() {
                let stars = v.matches('*').count();
                let wildcard_ok = name == "name"
                    && (stars == 0
                        || (stars == 1 && v.ends_with('*'))
                        || (stars == 2 && v.len() >= 2 && v.starts_with('*') && v.ends_with('*')));
                if stars > 0 && !wildcard_ok {
                    return Err(ApiError::invalid_request(format!(
                        "filters[{i}].values[{j}]: '{v}': a wildcard is only supported at the end ('web*') or at both ends ('*web*') of a name filter"
                    )));
                }
            }
            parsed.push((name, values));
        }
        Ok(Filters { filters: parsed })
    }

    /// Whether a resource passes; `value_of` gives its value for a filter name. The `name`
    /// filter matches a resource's name as written or in its normalised ARN form ("My Image"
    /// answers to both `My*` and `my-image`).
    pub fn accept(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.filters.iter().all(|(name, values)| {
            let Some(actual) = value_of(name) else {
                return false;
            };
            let normalised = (name == "name").then(|| kiln_domain::name::normalize(&actual));
            values.iter().any(|v| {
                value_matches(v, &actual)
                    || normalised.as_deref().is_some_and(|n| value_matches(v, n))
            })
        })
    }
}

fn value_matches(pattern: &str, actual: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(inner), Some(_)) if pattern.len() >= 2 => actual.contains(&inner[..inner.len() - 1]),
        (None, Some(prefix)) => actual.starts_with(prefix),
        _ => pattern == actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, values: &[&str]) -> Filter {
        Filter {
            name: Some(name.into()),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn wildcards_and_exact_values() {
        let filters =
            Filters::parse(Some(&vec![f("name", &["web*", "*api*"])]), &["name"]).unwrap();
        assert!(filters.accept(|_| Some("web-1".into())));
        assert!(filters.accept(|_| Some("my-api-x".into())));
        assert!(!filters.accept(|_| Some("db".into())));
        let exact = Filters::parse(Some(&vec![f("status", &["ENABLED"])]), &["status"]).unwrap();
        assert!(exact.accept(|_| Some("ENABLED".into())));
        assert!(!exact.accept(|_| Some("DISABLED".into())));
        assert!(!exact.accept(|_| None));
    }

    #[test]
    fn name_filters_match_the_normalised_name_too() {
        let filters = Filters::parse(Some(&vec![f("name", &["my-image*"])]), &["name"]).unwrap();
        assert!(filters.accept(|_| Some("My Image_2".into())));
        assert!(!filters.accept(|_| Some("Other".into())));
    }

    #[test]
    fn refuses_unknown_names_and_misplaced_wildcards() {
        assert!(Filters::parse(Some(&vec![f("colour", &["x"])]), &["name"]).is_err());
        assert!(Filters::parse(Some(&vec![f("name", &["a*b"])]), &["name"]).is_err());
        assert!(Filters::parse(Some(&vec![f("status", &["E*"])]), &["status"]).is_err());
    }
}
