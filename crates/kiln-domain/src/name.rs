//! Resource names and the ARN segment they become.

/// The ARN name segment of a resource name: lower case, with spaces and underscores turned
/// into hyphens. Two names that normalise alike are the same name ("My Image" and "my_image").
pub fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ' ' | '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalises_case_spaces_and_underscores() {
        assert_eq!(super::normalize("My Pipeline_v2"), "my-pipeline-v2");
        assert_eq!(super::normalize("my-pipeline-v2"), "my-pipeline-v2");
    }
}
