//! `USER name[:group]` as a container runtime resolves it: names through the stage's own
//! `/etc/passwd` and `/etc/group` (read inside its root), numbers as they are.

use kiln_toe::target::Target;

/// Who a command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

impl User {
    fn root() -> User {
        User {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: "/root".to_string(),
        }
    }
}

/// A line of `/etc/passwd`: name, uid, gid, home.
fn passwd_entries(text: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 6 {
            return None;
        }
        Some((
            fields[0],
            fields[2].parse().ok()?,
            fields[3].parse().ok()?,
            fields[5],
        ))
    })
}

/// A line of `/etc/group`: name, gid, members.
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 3 {
            return None;
        }
        let members = fields
            .get(3)
            .map(|m| m.split(',').filter(|m| !m.is_empty()).collect())
            .unwrap_or_default();
        Some((fields[0], fields[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (`""` is root) against the files `passwd` and `group` hold.
pub fn resolve_with(spec: &str, passwd: &str, group: &str) -> Result<User, String> {
    if spec.is_empty() {
        return Ok(User::root());
    }
    let (name, group_spec) = match spec.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (spec, None),
    };
    let entry = passwd_entries(passwd)
        .find(|(n, uid, _, _)| *n == name || name.parse::<u32>().ok() == Some(*uid));
    let (user_name, uid, mut gid, home) = match (entry, name.parse::<u32>()) {
        (Some((n, uid, gid, home)), _) => (Some(n), uid, gid, home.to_string()),
        (None, Ok(uid)) => (None, uid, 0, "/".to_string()),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {name}: no matching entries in passwd file"
            ))
        }
    };
    let mut groups = Vec::new();
    match group_spec {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|(n, _, _)| *n == g)
                    .map(|(_, gid, _)| gid)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?,
            };
        }
        None => {
            if let Some(user_name) = user_name {
                groups = group_entries(group)
                    .filter(|(_, gid2, members)| *gid2 != gid && members.contains(&user_name))
                    .map(|(_, gid, _)| gid)
                    .collect();
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home,
    })
}

/// Resolves `spec` inside `instance`'s root file system.
pub fn resolve(instance: &dyn Target, spec: &str) -> Result<User, String> {
    if spec.is_empty() {
        return Ok(User::root());
    }
    let read = |path: &str| {
        instance
            .resolve(path)
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    resolve_with(spec, &read("/etc/passwd"), &read("/etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nweb:x:33:app,other\n";

    #[test]
    fn names_numbers_and_groups_resolve_as_a_runtime_resolves_them() {
        let app = resolve_with("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.groups.clone()),
            (1000, 1000, vec![33])
        );
        assert_eq!(app.home, "/home/app");
        let numeric = resolve_with("1000:33", PASSWD, GROUP).unwrap();
        assert_eq!((numeric.uid, numeric.gid), (1000, 33));
        let unknown_number = resolve_with("4242", PASSWD, GROUP).unwrap();
        assert_eq!((unknown_number.uid, unknown_number.gid), (4242, 0));
        assert_eq!(resolve_with("app:web", PASSWD, GROUP).unwrap().gid, 33);
        assert!(resolve_with("nobody", PASSWD, GROUP)
            .unwrap_err()
            .contains("unable to find user nobody"));
        assert!(resolve_with("app:nogroup", PASSWD, GROUP)
            .unwrap_err()
            .contains("unable to find group nogroup"));
        assert_eq!(resolve_with("", PASSWD, GROUP).unwrap().uid, 0);
    }
}
