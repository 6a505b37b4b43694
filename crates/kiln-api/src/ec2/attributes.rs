//! DescribeImageAttribute, ModifyImageAttribute and ResetImageAttribute: an AMI's description
//! and launch permissions, for its owner.

use super::error::Ec2Error;
use super::form::Params;
use super::xml::Xml;
use super::{check_image_id, owned_ami, Call, Operation};
use kiln_core::amis;
use kiln_domain::resources::ami::{Grantee, LaunchPermissions};
use kiln_store::Txn;

/// EC2's longest AMI description.
const MAX_DESCRIPTION: usize = 255;

/// The attributes DescribeImageAttribute names (the model's `ImageAttributeName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    Description,
    LaunchPermission,
    /// Attributes Kiln's AMIs have no value for (no kernel or RAM disk of their own, no
    /// product codes, no UEFI data, IMDS and boot mode left to the instance's defaults):
    /// answered empty, as EC2 answers an AMI without them.
    Empty(&'static str),
    /// When a build last launched an instance from the AMI (empty when none has).
    LastLaunchedTime,
    DeregistrationProtection,
    BlockDeviceMapping,
}

const EMPTY_ATTRIBUTES: [&str; 8] = [
    "kernel",
    "ramdisk",
    "productCodes",
    "sriovNetSupport",
    "bootMode",
    "tpmSupport",
    "uefiData",
    "imdsSupport",
];

impl Attribute {
    fn parse(text: &str) -> Result<Attribute, Ec2Error> {
        match text {
            "description" => Ok(Attribute::Description),
            "launchPermission" => Ok(Attribute::LaunchPermission),
            "deregistrationProtection" => Ok(Attribute::DeregistrationProtection),
            "blockDeviceMapping" => Ok(Attribute::BlockDeviceMapping),
            "lastLaunchedTime" => Ok(Attribute::LastLaunchedTime),
            t => EMPTY_ATTRIBUTES
                .into_iter()
                .find(|a| *a == t)
                .map(Attribute::Empty)
                .ok_or_else(|| {
                    Ec2Error::invalid_value(format!(
                        "Attribute: '{t}' is not an AMI attribute; use description, launchPermission, deregistrationProtection, lastLaunchedTime, {}",
                        EMPTY_ATTRIBUTES.join(", ")
                    ))
                }),
        }
    }
}

fn write_permissions(x: &mut Xml, permissions: &LaunchPermissions) {
    x.list(
        "launchPermission",
        &permissions.grantees(),
        |x, g| match g {
            Grantee::Public => x.text("group", "all"),
            Grantee::Account(a) => x.text("userId", a),
            Grantee::Organization(a) => x.text("organizationArn", a),
            Grantee::OrganizationalUnit(a) => x.text("organizationalUnitArn", a),
        },
    );
}

pub(crate) struct DescribeImageAttribute {
    image_id: String,
    attribute: Attribute,
}

impl Operation for DescribeImageAttribute {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let attribute = Attribute::parse(&params.required("Attribute")?)?;
        let image_id = params.required("ImageId")?;
        check_image_id(&image_id)?;
        Ok(DescribeImageAttribute {
            image_id,
            attribute,
        })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let ami = owned_ami(call, tx, &self.image_id, "describe its attributes")?;
        if self.attribute == Attribute::BlockDeviceMapping {
            // As EC2 documents: the attribute is deprecated, DescribeImages shows the mappings.
            return Err(Ec2Error::new(
                "AuthFailure",
                403,
                "The blockDeviceMapping attribute is deprecated: describe the image (DescribeImages) to see its block device mappings",
            ));
        }
        call.proceed()?;
        let mut x = call.response();
        x.text("imageId", &ami.image_id);
        match self.attribute {
            Attribute::Description => x.element("description", |x| {
                x.optional("value", ami.description.as_deref())
            }),
            Attribute::LaunchPermission => write_permissions(&mut x, &ami.launch_permission),
            Attribute::DeregistrationProtection => {
                x.element("deregistrationProtection", |x| x.text("value", "disabled"))
            }
            Attribute::Empty(name) => x.element(name, |_| {}),
            Attribute::LastLaunchedTime => x.element("lastLaunchedTime", |x| {
                x.optional(
                    "value",
                    ami.last_launched.map(crate::convert::date).as_deref(),
                )
            }),
            Attribute::BlockDeviceMapping => {}
        }
        Ok(x.finish())
    }
}

/// What a ModifyImageAttribute call changes (one attribute a call, as on EC2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Description(String),
    Permissions {
        add: Vec<Grantee>,
        remove: Vec<Grantee>,
    },
}

pub(crate) struct ModifyImageAttribute {
    image_id: String,
    change: Change,
}

/// An account id in a launch permission.
fn account(parameter: &str, value: String) -> Result<Grantee, Ec2Error> {
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Grantee::Account(value))
    } else {
        Err(invalid_item(parameter, &value, "a 12-digit account id"))
    }
}

fn group(parameter: &str, value: String) -> Result<Grantee, Ec2Error> {
    if value == "all" {
        Ok(Grantee::Public)
    } else {
        Err(invalid_item(parameter, &value, "the group all"))
    }
}

fn organization(parameter: &str, value: String) -> Result<Grantee, Ec2Error> {
    if value.starts_with("arn:aws:organizations::") && value.contains(":organization/o-") {
        Ok(Grantee::Organization(value))
    } else {
        Err(invalid_item(
            parameter,
            &value,
            "an organization ARN (arn:aws:organizations::<account>:organization/o-...)",
        ))
    }
}

fn organizational_unit(parameter: &str, value: String) -> Result<Grantee, Ec2Error> {
    if value.starts_with("arn:aws:organizations::") && value.contains(":ou/o-") {
        Ok(Grantee::OrganizationalUnit(value))
    } else {
        Err(invalid_item(
            parameter,
            &value,
            "an organizational unit ARN (arn:aws:organizations::<account>:ou/o-.../ou-...)",
        ))
    }
}

fn invalid_item(parameter: &str, value: &str, expected: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidAMIAttributeItemValue",
        400,
        format!("{parameter}: '{value}' is not a valid launch permission: expecting {expected}"),
    )
}

/// `LaunchPermission.Add.N.*` or `LaunchPermission.Remove.N.*`: each entry names exactly one
/// grantee.
fn permission_list(params: &mut Params, prefix: &str) -> Result<Vec<Grantee>, Ec2Error> {
    let mut out = Vec::new();
    for i in params.indices(prefix)? {
        let entry = format!("{prefix}.{i}");
        let mut named = Vec::new();
        for (member, make) in [
            (
                "UserId",
                account as fn(&str, String) -> Result<Grantee, Ec2Error>,
            ),
            ("Group", group),
            ("OrganizationArn", organization),
            ("OrganizationalUnitArn", organizational_unit),
        ] {
            let parameter = format!("{entry}.{member}");
            if let Some(v) = params.string(&parameter) {
                named.push(make(&parameter, v)?);
            }
        }
        match named.len() {
            1 => out.extend(named),
            0 => {
                return Err(Ec2Error::missing(&format!(
                    "{entry}.UserId (or {entry}.Group, {entry}.OrganizationArn, {entry}.OrganizationalUnitArn)"
                )))
            }
            _ => {
                return Err(Ec2Error::combination(format!(
                    "{entry}: a launch permission names one of UserId, Group, OrganizationArn or OrganizationalUnitArn"
                )))
            }
        }
    }
    Ok(out)
}

impl Operation for ModifyImageAttribute {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let image_id = params.required("ImageId")?;
        check_image_id(&image_id)?;
        if let Some(first) = params.list("ProductCode")?.first() {
            return Err(Ec2Error::new(
                "UnsupportedOperation",
                400,
                format!("ProductCode.1: Kiln's AMIs have no product codes (EC2 does not support adding '{first}' either)"),
            ));
        }
        if params.string("ImdsSupport.Value").is_some() {
            return Err(Ec2Error::new(
                "UnsupportedOperation",
                400,
                "ImdsSupport: Kiln does not record an AMI's IMDS support (its builds launch no EC2 instances)",
            ));
        }
        let attribute = params.string("Attribute");
        let operation = params.string("OperationType");
        let value = params.string("Value");
        let description = params.string("Description.Value");
        let mut old_form = Vec::new();
        for (list, make) in [
            (
                "UserId",
                account as fn(&str, String) -> Result<Grantee, Ec2Error>,
            ),
            ("UserGroup", group),
            ("OrganizationArn", organization),
            ("OrganizationalUnitArn", organizational_unit),
        ] {
            for (i, v) in params.list(list)?.into_iter().enumerate() {
                old_form.push(make(&format!("{list}.{}", i + 1), v)?);
            }
        }
        let add = permission_list(params, "LaunchPermission.Add")?;
        let remove = permission_list(params, "LaunchPermission.Remove")?;
        let structured = !add.is_empty() || !remove.is_empty();

        let wants_description =
            description.is_some() || attribute.as_deref() == Some("description");
        let wants_permissions = structured
            || attribute.as_deref() == Some("launchPermission")
            || operation.is_some()
            || !old_form.is_empty();
        if wants_description && wants_permissions {
            return Err(Ec2Error::combination(
                "You can modify only one attribute at a time: the description or the launch permissions",
            ));
        }
        if let Some(a) = attribute.as_deref() {
            if !matches!(a, "description" | "launchPermission") {
                return Err(Ec2Error::invalid_value(format!(
                    "Attribute: Kiln can modify an AMI's description or launchPermission, not '{a}'"
                )));
            }
        }
        if value.is_some() && attribute.as_deref() != Some("description") {
            return Err(Ec2Error::combination(
                "Value can be used only when the Attribute parameter is description",
            ));
        }
        let change = if wants_description {
            let text = match (description, value) {
                (Some(d), None) => d,
                (None, Some(v)) => v,
                (Some(_), Some(_)) => {
                    return Err(Ec2Error::combination(
                        "give the description once: Description.Value, or Attribute=description with Value",
                    ))
                }
                (None, None) => return Err(Ec2Error::missing("Value")),
            };
            if text.chars().count() > MAX_DESCRIPTION {
                return Err(Ec2Error::invalid_value(format!(
                    "Description: an AMI description is at most {MAX_DESCRIPTION} characters"
                )));
            }
            Change::Description(text)
        } else if structured {
            if attribute.is_some() || operation.is_some() || !old_form.is_empty() {
                return Err(Ec2Error::combination(
                    "LaunchPermission.Add/Remove cannot be combined with Attribute, OperationType, UserId, UserGroup, OrganizationArn or OrganizationalUnitArn",
                ));
            }
            Change::Permissions { add, remove }
        } else if wants_permissions {
            if attribute.as_deref() != Some("launchPermission") {
                return Err(Ec2Error::combination(
                    "OperationType, UserId, UserGroup, OrganizationArn and OrganizationalUnitArn can be used only when the Attribute parameter is launchPermission",
                ));
            }
            if old_form.is_empty() {
                return Err(Ec2Error::missing(
                    "UserId.1 (or UserGroup.1, OrganizationArn.1, OrganizationalUnitArn.1)",
                ));
            }
            match operation.as_deref() {
                Some("add") => Change::Permissions {
                    add: old_form,
                    remove: Vec::new(),
                },
                Some("remove") => Change::Permissions {
                    add: Vec::new(),
                    remove: old_form,
                },
                Some(o) => {
                    return Err(Ec2Error::invalid_value(format!(
                        "OperationType: '{o}' is not add or remove"
                    )))
                }
                None => return Err(Ec2Error::missing("OperationType")),
            }
        } else {
            return Err(Ec2Error::missing(
                "Attribute (or Description.Value, LaunchPermission.Add.1, LaunchPermission.Remove.1)",
            ));
        };
        Ok(ModifyImageAttribute { image_id, change })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let mut ami = owned_ami(call, tx, &self.image_id, "modify its attributes")?;
        call.proceed()?;
        match &self.change {
            Change::Description(d) => {
                ami.description = (!d.is_empty()).then(|| d.clone());
            }
            Change::Permissions { add, remove } => {
                for g in add {
                    if *g == Grantee::Public && !ami.launch_permission.public {
                        ami.make_public();
                    } else {
                        ami.launch_permission.add(g);
                    }
                }
                for g in remove {
                    ami.launch_permission.remove(g);
                }
            }
        }
        amis::put(tx, &ami)?;
        Ok(call.returned_true())
    }
}

pub(crate) struct ResetImageAttribute {
    image_id: String,
}

impl Operation for ResetImageAttribute {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let attribute = params.required("Attribute")?;
        if attribute != "launchPermission" {
            return Err(Ec2Error::invalid_value(format!(
                "Attribute: only launchPermission can be reset, not '{attribute}'"
            )));
        }
        let image_id = params.required("ImageId")?;
        check_image_id(&image_id)?;
        Ok(ResetImageAttribute { image_id })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let mut ami = owned_ami(call, tx, &self.image_id, "reset its attributes")?;
        call.proceed()?;
        ami.launch_permission = LaunchPermissions::default();
        amis::put(tx, &ami)?;
        Ok(call.returned_true())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Change, Ec2Error> {
        let mut p = Params::from_pairs(
            [("ImageId", "ami-0123456789abcdef0")]
                .into_iter()
                .chain(pairs.iter().copied()),
        );
        let m = ModifyImageAttribute::parse(&mut p)?;
        p.finish("ModifyImageAttribute")?;
        Ok(m.change)
    }

    const B: &str = "222222222222";

    #[test]
    fn both_permission_forms_parse() {
        let account = Grantee::Account(B.to_string());
        assert_eq!(
            parse(&[
                ("LaunchPermission.Add.1.UserId", B),
                ("LaunchPermission.Add.2.Group", "all"),
                (
                    "LaunchPermission.Remove.1.OrganizationArn",
                    "arn:aws:organizations::111111111111:organization/o-abc"
                ),
            ])
            .unwrap(),
            Change::Permissions {
                add: vec![account.clone(), Grantee::Public],
                remove: vec![Grantee::Organization(
                    "arn:aws:organizations::111111111111:organization/o-abc".into()
                )],
            }
        );
        assert_eq!(
            parse(&[
                ("Attribute", "launchPermission"),
                ("OperationType", "remove"),
                ("UserId.1", B),
                ("UserGroup.1", "all")
            ])
            .unwrap(),
            Change::Permissions {
                add: vec![],
                remove: vec![account, Grantee::Public]
            }
        );
        assert_eq!(
            parse(&[("Description.Value", "new")]).unwrap(),
            Change::Description("new".into())
        );
        assert_eq!(
            parse(&[("Attribute", "description"), ("Value", "v")]).unwrap(),
            Change::Description("v".into())
        );
    }

    #[test]
    fn mixed_or_invalid_modifications_are_refused() {
        let code = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err().code;
        assert_eq!(
            code(&[
                ("Description.Value", "d"),
                ("LaunchPermission.Add.1.UserId", B)
            ]),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(&[
                ("LaunchPermission.Add.1.UserId", B),
                ("LaunchPermission.Add.1.Group", "all")
            ]),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(&[("LaunchPermission.Add.1.UserId", "12")]),
            "InvalidAMIAttributeItemValue"
        );
        assert_eq!(
            code(&[("LaunchPermission.Add.1.Group", "everyone")]),
            "InvalidAMIAttributeItemValue"
        );
        assert_eq!(
            code(&[("LaunchPermission.Add.1.Colour", "red")]),
            "MissingParameter"
        );
        assert_eq!(
            code(&[
                ("LaunchPermission.Add.1.UserId", B),
                ("LaunchPermission.Add.1.Colour", "red")
            ]),
            "UnknownParameter"
        );
        assert_eq!(
            code(&[("Attribute", "launchPermission"), ("UserId.1", B)]),
            "MissingParameter"
        );
        assert_eq!(
            code(&[("Attribute", "launchPermission"), ("OperationType", "add")]),
            "MissingParameter"
        );
        assert_eq!(
            code(&[("UserId.1", B), ("OperationType", "add")]),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(&[("Attribute", "kernel"), ("Value", "x")]),
            "InvalidParameterValue"
        );
        assert_eq!(code(&[("ProductCode.1", "abc")]), "UnsupportedOperation");
        assert_eq!(
            code(&[("ImdsSupport.Value", "v2.0")]),
            "UnsupportedOperation"
        );
        assert_eq!(code(&[]), "MissingParameter");
        let long = "d".repeat(256);
        assert_eq!(
            code(&[("Description.Value", &long)]),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn attributes_are_named_as_the_model_names_them() {
        assert_eq!(
            Attribute::parse("kernel").unwrap(),
            Attribute::Empty("kernel")
        );
        assert!(Attribute::parse("colour")
            .unwrap_err()
            .message
            .contains("'colour'"));
    }
}
