//! CreateTags and DeleteTags on AMIs.
//!
//! Kiln keeps an AMI's tags in its record, one set for everybody, so only the AMI's owner may
//! change them (EC2 would keep another account's tags on a shared AMI apart; Kiln refuses
//! instead, with EC2's `AuthFailure` for an AMI the caller may use but not change). Kiln's EC2
//! endpoint has AMIs only: another kind of resource id is refused as such. Every AMI a call
//! names is checked before any is changed, so a call changes all of them or none.

use super::error::Ec2Error;
use super::form::Params;
use super::{check_image_id, owned_ami, Call, Operation};
use kiln_core::amis;
use kiln_store::Txn;

/// EC2's limits.
const MAX_TAGS: usize = 50;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;
const MAX_RESOURCES: usize = 1000;

/// `ResourceId.N`: AMI ids, at least one.
fn resources(params: &mut Params) -> Result<Vec<String>, Ec2Error> {
    let ids = params.list("ResourceId")?;
    if ids.is_empty() {
        return Err(Ec2Error::missing("ResourceId.1"));
    }
    if ids.len() > MAX_RESOURCES {
        return Err(Ec2Error::invalid_value(format!(
            "ResourceId: at most {MAX_RESOURCES} resource ids a call, not {}",
            ids.len()
        )));
    }
    for (i, id) in ids.iter().enumerate() {
        if !id.starts_with("ami-") {
            return Err(Ec2Error::new(
                "InvalidID",
                400,
                format!(
                    "ResourceId.{}: '{id}' is not an AMI id: Kiln's EC2 endpoint holds only AMIs (ami-...), so only they can be tagged",
                    i + 1
                ),
            ));
        }
        check_image_id(id)?;
    }
    Ok(ids)
}

fn check_key(parameter: &str, key: &str) -> Result<(), Ec2Error> {
    if key.is_empty() || key.chars().count() > MAX_KEY {
        return Err(Ec2Error::invalid_value(format!(
            "{parameter}: a tag key is 1 to {MAX_KEY} characters long"
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(Ec2Error::invalid_value(format!(
            "{parameter}: tag keys starting with 'aws:' are reserved for AWS use"
        )));
    }
    Ok(())
}

/// `Tag.N.Key` and `Tag.N.Value` (`None` when the value is not given at all).
fn tag_list(params: &mut Params) -> Result<Vec<(String, Option<String>)>, Ec2Error> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for i in params.indices("Tag")? {
        let key_parameter = format!("Tag.{i}.Key");
        let key = params.required(&key_parameter)?;
        check_key(&key_parameter, &key)?;
        let value = params.string(&format!("Tag.{i}.Value"));
        if let Some(v) = &value {
            if v.chars().count() > MAX_VALUE {
                return Err(Ec2Error::invalid_value(format!(
                    "Tag.{i}.Value: a tag value is at most {MAX_VALUE} characters long"
                )));
            }
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(Ec2Error::invalid_value(format!(
                "{key_parameter}: the tag key '{key}' is given more than once"
            )));
        }
        out.push((key, value));
    }
    Ok(out)
}

pub(crate) struct CreateTags {
    resources: Vec<String>,
    tags: Vec<(String, String)>,
}

impl Operation for CreateTags {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let resources = resources(params)?;
        let tags = tag_list(params)?;
        if tags.is_empty() {
            return Err(Ec2Error::missing("Tag.1.Key"));
        }
        Ok(CreateTags {
            resources,
            // A tag without a value gets the empty value, as EC2 documents.
            tags: tags
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let mut changed = Vec::new();
        for id in &self.resources {
            let mut ami = owned_ami(call, tx, id, "tag it")?;
            for (k, v) in &self.tags {
                ami.tags.insert(k.clone(), v.clone());
            }
            if ami.tags.len() > MAX_TAGS {
                return Err(Ec2Error::new(
                    "TagLimitExceeded",
                    400,
                    format!(
                        "{id} would have {} tags; a resource has at most {MAX_TAGS}",
                        ami.tags.len()
                    ),
                ));
            }
            changed.push(ami);
        }
        call.proceed()?;
        for ami in &changed {
            amis::put(tx, ami)?;
        }
        Ok(call.returned_true())
    }
}

pub(crate) struct DeleteTags {
    resources: Vec<String>,
    /// `None`: every tag (but `aws:` ones, which Kiln's AMIs cannot have anyway).
    tags: Option<Vec<(String, Option<String>)>>,
}

impl Operation for DeleteTags {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let resources = resources(params)?;
        let tags = tag_list(params)?;
        Ok(DeleteTags {
            resources,
            tags: (!tags.is_empty()).then_some(tags),
        })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let mut changed = Vec::new();
        for id in &self.resources {
            let mut ami = owned_ami(call, tx, id, "untag it")?;
            match &self.tags {
                None => ami
                    .tags
                    .retain(|k, _| k.to_ascii_lowercase().starts_with("aws:")),
                Some(tags) => {
                    for (key, value) in tags {
                        // With a value (even an empty one), only a tag with that value goes.
                        if value.is_none() || ami.tags.get(key) == value.as_ref() {
                            ami.tags.remove(key);
                        }
                    }
                }
            }
            changed.push(ami);
        }
        call.proceed()?;
        for ami in &changed {
            amis::put(tx, ami)?;
        }
        Ok(call.returned_true())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_parameters_are_checked() {
        let create = |pairs: &[(&str, &str)]| {
            CreateTags::parse(&mut Params::from_pairs(pairs.iter().copied()))
        };
        let ok = create(&[
            ("ResourceId.1", "ami-0123456789abcdef0"),
            ("Tag.1.Key", "team"),
            ("Tag.2.Key", "empty"),
            ("Tag.2.Value", "x"),
            ("Tag.3.Key", "novalue"),
        ])
        .unwrap();
        assert_eq!(
            ok.tags,
            vec![
                ("team".to_string(), String::new()),
                ("empty".to_string(), "x".to_string()),
                ("novalue".to_string(), String::new()),
            ]
        );
        let code = |pairs: &[(&str, &str)]| create(pairs).err().unwrap().code;
        assert_eq!(code(&[("Tag.1.Key", "k")]), "MissingParameter");
        assert_eq!(
            code(&[("ResourceId.1", "ami-0123456789abcdef0")]),
            "MissingParameter"
        );
        let other = create(&[("ResourceId.1", "i-0123456789abcdef0"), ("Tag.1.Key", "k")])
            .err()
            .unwrap();
        assert_eq!(other.code, "InvalidID");
        assert!(other.message.contains("only AMIs"), "{other}");
        assert_eq!(
            code(&[("ResourceId.1", "ami-1"), ("Tag.1.Key", "k")]),
            "InvalidAMIID.Malformed"
        );
        for bad_key in ["", "aws:x", "AWS:x"] {
            assert_eq!(
                code(&[
                    ("ResourceId.1", "ami-0123456789abcdef0"),
                    ("Tag.1.Key", bad_key)
                ]),
                "InvalidParameterValue",
                "{bad_key:?}"
            );
        }
        let long = "v".repeat(257);
        assert_eq!(
            code(&[
                ("ResourceId.1", "ami-0123456789abcdef0"),
                ("Tag.1.Key", "k"),
                ("Tag.1.Value", &long)
            ]),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(&[
                ("ResourceId.1", "ami-0123456789abcdef0"),
                ("Tag.1.Key", "k"),
                ("Tag.2.Key", "k")
            ]),
            "InvalidParameterValue"
        );
        let delete = DeleteTags::parse(&mut Params::from_pairs([
            ("ResourceId.1", "ami-0123456789abcdef0"),
            ("Tag.1.Key", "a"),
            ("Tag.2.Key", "b"),
            ("Tag.2.Value", ""),
        ]))
        .unwrap();
        assert_eq!(
            delete.tags,
            Some(vec![
                ("a".to_string(), None),
                ("b".to_string(), Some(String::new()))
            ])
        );
    }
}
