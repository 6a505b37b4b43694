//! The one place that names the YAML crate. Every other module and crate reads and writes YAML
//! through these re-exports, so replacing the implementation is a change to this file and to
//! the workspace's Cargo.toml.
//!
//! The implementation is `yaml_serde`, the YAML organisation's maintained continuation of
//! `serde_yaml` 0.9: the same libyaml-derived parser and the same resolution of plain scalars
//! (booleans, numbers, null), tags and error messages with line and column, which documents'
//! validation messages and their tests rely on.

pub use yaml_serde::{from_str, to_string, Error, Mapping, Number, Value};

#[cfg(test)]
mod tests {
    //! What documents rely on from the YAML crate; a replacement must answer the same.

    use super::*;

    fn value(text: &str) -> Value {
        from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn plain_scalars_resolve_as_before() {
        let v = value("a: true\nb: yes\nc: 0755\nd: 1.0\ne: ~\nf: '1'\ng: off\n");
        assert_eq!(v["a"], Value::Bool(true));
        // Only true/false are booleans: `yes` and `off` stay strings (AWSTOE documents rely on
        // the string, e.g. in `if` comparisons).
        assert_eq!(v["b"], Value::String("yes".into()));
        assert_eq!(v["g"], Value::String("off".into()));
        // A number with a leading zero stays text (so `permissions: 0755` reads as written).
        assert_eq!(v["c"], Value::String("0755".into()));
        assert_eq!(v["d"], Value::Number(Number::from(1.0)));
        assert_eq!(v["e"], Value::Null);
        assert_eq!(v["f"], Value::String("1".into()));
    }

    #[test]
    fn tags_are_kept() {
        let v = value("a: !Ref x\n");
        let Value::Tagged(t) = &v["a"] else {
            panic!("not tagged: {v:?}");
        };
        assert_eq!(t.tag.to_string(), "!Ref");
        assert_eq!(t.value, Value::String("x".into()));
    }

    #[test]
    fn errors_say_where() {
        let e = from_str::<Value>("a: 1\nb: [1, 2\n").unwrap_err();
        let at = e.location().expect("a location");
        assert_eq!((at.line(), at.column()), (3, 1));
        assert!(e.to_string().contains(" at line 3 column 1"), "{e}");
        let e = from_str::<Value>("a: 1\na: 2\n").unwrap_err();
        assert!(
            e.to_string().starts_with("duplicate entry with key \"a\""),
            "{e}"
        );
    }

    #[test]
    fn mappings_keep_their_order_when_written() {
        let v = value("z: 1\na: [x, y]\n");
        assert_eq!(to_string(&v).unwrap(), "z: 1\na:\n- x\n- y\n");
    }
}
