//! A stage's state between instructions: its variables (`ENV`, `ARG`), shell, user and working
//! directory, and the image configuration the stage will commit (`Cmd`, `Entrypoint`, `Labels`,
//! `ExposedPorts`, `Volumes`, `StopSignal`, `Healthcheck`, `OnBuild`, `Shell`), named and
//! shaped as `docker build` and `buildah bud` write them.

use kiln_dockerfile::{expand, ArgDecl, Command, Healthcheck, Kind};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The shell of shell-form instructions until a `SHELL` says otherwise.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The `PATH` a `RUN` gets when the image's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct StageState {
    escape: char,
    /// `ENV`, in the image's order.
    env: Vec<(String, String)>,
    /// The `ARG`s this stage declared, with their values (`None`: declared without one).
    args: Vec<(String, Option<String>)>,
    global: BTreeMap<String, String>,
    pub shell: Vec<String>,
    pub user: String,
    /// Absolute, or empty for `/`.
    pub workdir: String,
    /// Every other member of the execution configuration.
    other: Map<String, Value>,
    /// A `CMD` of this stage (an `ENTRYPOINT` then keeps it; otherwise it drops the base's).
    cmd_set: bool,
    pub author: Option<String>,
}

impl StageState {
    /// The state a stage starts in: its base's configuration (`config` of the base image's
    /// configuration, `{}` for `scratch`).
    pub fn new(base: &Value, global: &BTreeMap<String, String>, escape: char) -> StageState {
        let mut other = base.as_object().cloned().unwrap_or_default();
        let env = match other.remove("Env") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (item.to_string(), String::new()),
                })
                .collect(),
            _ => Vec::new(),
        };
        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_string));
        let user = text(other.remove("User")).unwrap_or_default();
        let workdir = text(other.remove("WorkingDir")).unwrap_or_default();
        let shell = match other.get("Shell") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        };
        // A base's ONBUILD triggers are not inherited by the image built on it.
        other.remove("OnBuild");
        let mut env = env;
        // As BuildKit and buildah do: an image whose base sets no PATH gets the default one.
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        StageState {
            escape,
            env,
            args: Vec::new(),
            global: global.clone(),
            shell,
            user,
            workdir,
            other,
            cmd_set: false,
            author: None,
        }
    }

    /// A variable as the builder sees it: `ENV` first, then this stage's `ARG`s.
    fn lookup(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                self.args
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.clone())
            })
    }

    /// Expands a word of an instruction (variables, quotes, escapes).
    pub fn expand(&self, word: &str) -> Result<String, String> {
        expand::expand(word, self.escape, &|name| self.lookup(name))
    }

    /// `WORKDIR dir`: the new working directory, absolute.
    pub fn set_workdir(&mut self, dir: &str) -> Result<String, String> {
        let dir = self.expand(dir)?;
        let joined = if dir.starts_with('/') {
            dir
        } else {
            format!("{}/{dir}", self.current_dir().trim_end_matches('/'))
        };
        self.workdir = normalize(&joined);
        Ok(self.workdir.clone())
    }

    /// The working directory of a command: the `WORKDIR`, or `/`.
    pub fn current_dir(&self) -> String {
        if self.workdir.is_empty() {
            "/".to_string()
        } else {
            self.workdir.clone()
        }
    }

    /// The environment of a `RUN`: the image's, then the stage's `ARG`s that `ENV` does not
    /// override; `PATH` and `HOME` defaulted as Docker does.
    pub fn run_env(&self, home: &str) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (name, value) in &self.args {
            if let Some(value) = value {
                if !env.iter().any(|(k, _)| k == name) {
                    env.push((name.clone(), value.clone()));
                }
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        if !env.iter().any(|(k, _)| k == "HOME") {
            env.push(("HOME".to_string(), home.to_string()));
        }
        env
    }

    /// A command as the configuration records it: the shell form through the stage's shell.
    fn command_vector(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Exec(argv) => argv.clone(),
            Command::Shell(text) => {
                let mut argv = self.shell.clone();
                argv.push(text.clone());
                argv
            }
        }
    }

    /// The argument vector of a `RUN`.
    pub fn run_vector(&self, command: &Command) -> Vec<String> {
        self.command_vector(command)
    }

    /// Applies an instruction that changes only the configuration or the variables.
    pub fn apply(&mut self, kind: &Kind) -> Result<(), String> {
        match kind {
            Kind::Env(pairs) => {
                // Every value is expanded with the variables as they were before the
                // instruction (`ENV a=1 b=$a` gives b the earlier a).
                let expanded = pairs
                    .iter()
                    .map(|(k, v)| Ok((self.expand(k)?, self.expand(v)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                for (k, v) in expanded {
                    match self.env.iter_mut().find(|(name, _)| *name == k) {
                        Some(slot) => slot.1 = v,
                        None => self.env.push((k, v)),
                    }
                }
            }
            Kind::Arg(decls) => {
                for ArgDecl { name, default } in decls {
                    let value = match default {
                        Some(default) => Some(self.expand(default)?),
                        None => self.global.get(name).cloned(),
                    };
                    self.args.push((name.clone(), value));
                }
            }
            Kind::User(user) => self.user = self.expand(user)?,
            Kind::Label(pairs) => {
                let expanded = pairs
                    .iter()
                    .map(|(k, v)| Ok((self.expand(k)?, self.expand(v)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                let labels = self.object("Labels");
                for (k, v) in expanded {
                    labels.insert(k, Value::String(v));
                }
            }
            Kind::Expose(ports) => {
                let mut expanded = Vec::new();
                for port in ports {
                    for word in expand::expand_words(port, self.escape, &|n| self.lookup(n))? {
                        expanded.extend(exposed_ports(&word)?);
                    }
                }
                let exposed = self.object("ExposedPorts");
                for port in expanded {
                    exposed.insert(port, json!({}));
                }
            }
            Kind::Volume(paths) => {
                let expanded = paths
                    .iter()
                    .map(|p| self.expand(p))
                    .collect::<Result<Vec<_>, String>>()?;
                let volumes = self.object("Volumes");
                for path in expanded {
                    if path.is_empty() {
                        return Err("VOLUME needs a path".to_string());
                    }
                    volumes.insert(path, json!({}));
                }
            }
            Kind::Cmd(command) => {
                let argv = self.command_vector(command);
                self.other.insert("Cmd".to_string(), json!(argv));
                self.cmd_set = true;
            }
            Kind::Entrypoint(command) => {
                let argv = self.command_vector(command);
                // `ENTRYPOINT []` or `ENTRYPOINT ""` clears it.
                if argv.is_empty() || matches!(command, Command::Shell(t) if t.trim().is_empty()) {
                    self.other.remove("Entrypoint");
                } else {
                    self.other.insert("Entrypoint".to_string(), json!(argv));
                }
                if !self.cmd_set {
                    self.other.remove("Cmd");
                }
            }
            Kind::Shell(shell) => {
                if shell.is_empty() {
                    return Err("SHELL needs at least the shell's path".to_string());
                }
                self.shell = shell.clone();
                self.other.insert("Shell".to_string(), json!(shell));
            }
            Kind::StopSignal(signal) => {
                let signal = self.expand(signal)?;
                self.other.insert("StopSignal".to_string(), json!(signal));
            }
            Kind::Healthcheck(check) => {
                self.other
                    .insert("Healthcheck".to_string(), healthcheck_json(check.as_ref()));
            }
            Kind::Onbuild(trigger) => {
                let list = self.other.entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(items) = list.as_array_mut() {
                    items.push(json!(trigger));
                }
            }
            Kind::Maintainer(name) => self.author = Some(name.clone()),
            other => {
                return Err(format!(
                    "{other:?} is not a configuration instruction (a bug in Kiln)"
                ))
            }
        }
        Ok(())
    }

    /// A member of the configuration that holds an object, made when missing.
    fn object(&mut self, name: &str) -> &mut Map<String, Value> {
        let slot = self
            .other
            .entry(name.to_string())
            .or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        match slot {
            Value::Object(map) => map,
            _ => unreachable!("made an object just above"),
        }
    }

    /// The execution configuration the stage commits.
    pub fn image_config(&self) -> Value {
        let mut config = self.other.clone();
        if !self.env.is_empty() {
            let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            config.insert("Env".to_string(), json!(env));
        }
        if !self.user.is_empty() {
            config.insert("User".to_string(), json!(self.user));
        }
        if !self.workdir.is_empty() {
            config.insert("WorkingDir".to_string(), json!(self.workdir));
        }
        config.retain(|_, v| !v.is_null());
        Value::Object(config)
    }
}

/// `/a/./b/../c/` as `/a/c`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `EXPOSE 80`, `80/udp`, `8000-8002/tcp` as Docker records them (`80/tcp`, ...).
fn exposed_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, protocol) = word.split_once('/').unwrap_or((word, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "EXPOSE {word}: the protocol must be tcp, udp or sctp"
        ));
    }
    let number = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("EXPOSE {word}: '{p}' is not a port number"))
    };
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let p = number(ports)?;
            (p, p)
        }
    };
    if last < first {
        return Err(format!("EXPOSE {word}: the range ends before it starts"));
    }
    Ok((first..=last).map(|p| format!("{p}/{protocol}")).collect())
}

/// `HEALTHCHECK` as Docker's configuration records it (durations in nanoseconds).
fn healthcheck_json(check: Option<&Healthcheck>) -> Value {
    let Some(check) = check else {
        return json!({ "Test": ["NONE"] });
    };
    let mut value = Map::new();
    value.insert("Test".to_string(), json!(check.test));
    for (name, v) in [
        ("Interval", check.interval),
        ("Timeout", check.timeout),
        ("StartPeriod", check.start_period),
        ("StartInterval", check.start_interval),
        ("Retries", check.retries),
    ] {
        if let Some(v) = v {
            value.insert(name.to_string(), json!(v));
        }
    }
    Value::Object(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> StageState {
        StageState::new(
            &json!({"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Labels": {"base": "yes"}}),
            &BTreeMap::from([("V".to_string(), "9".to_string())]),
            '\\',
        )
    }

    #[test]
    fn env_values_expand_with_the_variables_before_the_instruction() {
        let mut s = state();
        s.apply(&Kind::Env(vec![
            ("A".into(), "2".into()),
            ("B".into(), "$A".into()),
        ]))
        .unwrap();
        assert_eq!(s.image_config()["Env"], json!(["PATH=/bin", "A=2", "B=1"]));
    }

    #[test]
    fn args_take_global_defaults_and_env_wins() {
        let mut s = state();
        s.apply(&Kind::Arg(vec![
            ArgDecl {
                name: "V".into(),
                default: None,
            },
            ArgDecl {
                name: "A".into(),
                default: Some("from-arg".into()),
            },
        ]))
        .unwrap();
        assert_eq!(s.expand("$V-$A").unwrap(), "9-1");
        let env = s.run_env("/root");
        assert!(env.contains(&("V".to_string(), "9".to_string())));
        assert!(env.contains(&("A".to_string(), "1".to_string())));
        assert!(env.contains(&("HOME".to_string(), "/root".to_string())));
        // ARGs are not part of the image.
        assert_eq!(s.image_config()["Env"], json!(["PATH=/bin", "A=1"]));
    }

    #[test]
    fn entrypoint_drops_the_base_cmd_but_not_one_of_the_stage() {
        let mut s = state();
        s.apply(&Kind::Entrypoint(Command::Exec(vec!["/app".into()])))
            .unwrap();
        assert!(s.image_config().get("Cmd").is_none());
        s.apply(&Kind::Cmd(Command::Shell("run it".into())))
            .unwrap();
        s.apply(&Kind::Entrypoint(Command::Shell("exec /app".into())))
            .unwrap();
        let config = s.image_config();
        assert_eq!(config["Cmd"], json!(["/bin/sh", "-c", "run it"]));
        assert_eq!(config["Entrypoint"], json!(["/bin/sh", "-c", "exec /app"]));
    }

    #[test]
    fn workdir_is_joined_and_normalized() {
        let mut s = state();
        assert_eq!(s.set_workdir("/srv").unwrap(), "/srv");
        assert_eq!(s.set_workdir("app/../web/.").unwrap(), "/srv/web");
        assert_eq!(s.image_config()["WorkingDir"], json!("/srv/web"));
    }

    #[test]
    fn ports_labels_volumes_and_healthcheck_are_shaped_as_docker_writes_them() {
        let mut s = state();
        s.apply(&Kind::Expose(vec![
            "80".into(),
            "53/UDP".into(),
            "8000-8001".into(),
        ]))
        .unwrap();
        s.apply(&Kind::Label(vec![("team".into(), "\"web ops\"".into())]))
            .unwrap();
        s.apply(&Kind::Volume(vec!["/data".into()])).unwrap();
        s.apply(&Kind::Healthcheck(Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: Some(30_000_000_000),
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: Some(3),
        })))
        .unwrap();
        let config = s.image_config();
        assert_eq!(
            config["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert_eq!(config["Labels"], json!({"base": "yes", "team": "web ops"}));
        assert_eq!(config["Volumes"], json!({"/data": {}}));
        assert_eq!(
            config["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000u64, "Retries": 3})
        );
        assert!(s.apply(&Kind::Expose(vec!["http".into()])).is_err());
    }
}
