//! The suite's package index (`main/binary-amd64/Packages.xz`, `.gz` or plain), checked against
//! the size and SHA256 the verified release gives it, parsed into stanzas; and the resolution
//! of what to install: roots and their `Depends`/`Pre-Depends` closure, the first alternative
//! that exists taken (a virtual package by its first provider in name order), a group one
//! chosen package already satisfies left alone. Versions are not compared: a mirror's suite
//! holds one version of each package, the one the release signs.

use super::release::Release;
use super::{get, DebianMirror, ARCH};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Read;

/// The most a compressed or plain index may weigh (bookworm's `Packages` is about 45 MB).
const MAX_INDEX: u64 = 512 << 20;

/// One binary package of the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Path of the `.deb` under the mirror root.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub essential: bool,
    pub priority: String,
    /// Groups of alternatives (`a | b`), names only.
    pub depends: Vec<Vec<String>>,
    pub pre_depends: Vec<Vec<String>>,
    pub provides: Vec<String>,
}

/// The names of a dependency field: `a (>= 1) | b:any, c` → `[[a, b], [c]]`.
pub(crate) fn parse_relations(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.split(['(', '[', '<']).next().unwrap_or("").trim();
                    let name = name.split(':').next().unwrap_or("").trim();
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// Parses the stanzas of a `Packages` file (fields we do not use are skipped).
pub(crate) fn parse(text: &str, url: &str) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: HashMap<&str, String> = HashMap::new();
        let mut last: Option<&str> = None;
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(k) = last {
                    if let Some(v) = fields.get_mut(k) {
                        v.push('\n');
                        v.push_str(line.trim());
                    }
                }
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            fields.insert(k, v.trim().to_string());
            last = Some(k);
        }
        let Some(name) = fields.get("Package") else {
            continue;
        };
        let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
        let size = field("Size");
        let pkg = Package {
            name: name.clone(),
            version: field("Version"),
            architecture: field("Architecture"),
            filename: field("Filename"),
            size: size.parse().map_err(|_| {
                Error::Invalid(format!("{url}: package {name} has a bad Size `{size}`"))
            })?,
            sha256: field("SHA256").to_ascii_lowercase(),
            essential: field("Essential") == "yes",
            priority: field("Priority"),
            depends: parse_relations(&field("Depends")),
            pre_depends: parse_relations(&field("Pre-Depends")),
            provides: parse_relations(&field("Provides"))
                .into_iter()
                .flatten()
                .collect(),
        };
        if pkg.filename.is_empty()
            || pkg.filename.contains("..")
            || pkg.sha256.len() != 64
            || !pkg.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Error::Invalid(format!(
                "{url}: package {name} has no usable Filename or SHA256"
            )));
        }
        out.push(pkg);
    }
    Ok(out)
}

/// Fetches the suite's `main` index for [`ARCH`], checks it against `release` and parses it.
pub(crate) fn fetch(mirror: &DebianMirror, suite: &str, release: &Release) -> Result<Vec<Package>> {
    let base = format!("main/binary-{ARCH}/Packages");
    let (path, (size, sha256)) = ["xz", "gz", ""]
        .iter()
        .map(|ext| {
            if ext.is_empty() {
                base.clone()
            } else {
                format!("{base}.{ext}")
            }
        })
        .find_map(|p| release.sha256.get(&p).map(|h| (p.clone(), h.clone())))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{} lists no {base}(.xz|.gz) with a SHA256",
                release.url
            ))
        })?;
    let url = mirror.url_of(&format!("dists/{suite}/{path}"));
    let data = get::bytes(&url, MAX_INDEX.min(size))?;
    get::check("the package index", &url, &data, size, &sha256)?;
    let mut text = String::new();
    let read = if path.ends_with(".xz") {
        lzma_rust2::XzReader::new(data.as_slice(), true).read_to_string(&mut text)
    } else if path.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(data.as_slice()).read_to_string(&mut text)
    } else {
        data.as_slice().read_to_string(&mut text)
    };
    read.map_err(|e| Error::Invalid(format!("decompressing {url}: {e}")))?;
    parse(&text, &url)
}

/// The index by package name (the first stanza of a name wins) and who provides what.
pub(crate) struct Index<'a> {
    by_name: BTreeMap<&'a str, &'a Package>,
    providers: BTreeMap<&'a str, BTreeSet<&'a str>>,
}

impl<'a> Index<'a> {
    pub(crate) fn new(packages: &'a [Package]) -> Index<'a> {
        let mut by_name = BTreeMap::new();
        let mut providers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for p in packages {
            if p.architecture != ARCH && p.architecture != "all" {
                continue;
            }
            by_name.entry(p.name.as_str()).or_insert(p);
            for v in &p.provides {
                providers
                    .entry(v.as_str())
                    .or_default()
                    .insert(p.name.as_str());
            }
        }
        Index { by_name, providers }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a Package> {
        self.by_name.get(name).copied()
    }

    /// What a minbase system starts from: `Essential: yes`, `Priority: required`, and apt.
    pub(crate) fn minbase_roots(&self) -> Vec<&'a str> {
        self.by_name
            .values()
            .filter(|p| p.essential || p.priority == "required" || p.name == "apt")
            .map(|p| p.name.as_str())
            .collect()
    }

    /// The `Essential: yes` packages (dpkg must find them working before anything else).
    pub(crate) fn essential_roots(&self) -> Vec<&'a str> {
        self.by_name
            .values()
            .filter(|p| p.essential)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// `roots` and everything they depend on, sorted by name. A root that is not in the index
    /// is an error; so is a dependency no alternative of which exists.
    pub(crate) fn closure(&self, roots: &[&str]) -> Result<Vec<&'a Package>> {
        let mut chosen: BTreeMap<&str, &Package> = BTreeMap::new();
        let mut provided: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<&Package> = VecDeque::new();
        for r in roots {
            let p = self
                .get(r)
                .ok_or_else(|| Error::Invalid(format!("the package index has no package `{r}`")))?;
            if chosen.insert(p.name.as_str(), p).is_none() {
                provided.extend(p.provides.iter().map(String::as_str));
                queue.push_back(p);
            }
        }
        while let Some(p) = queue.pop_front() {
            for group in p.pre_depends.iter().chain(&p.depends) {
                let satisfied = group.iter().any(|alt| {
                    chosen.contains_key(alt.as_str()) || provided.contains(alt.as_str())
                });
                if satisfied {
                    continue;
                }
                let pick = group.iter().find_map(|alt| {
                    self.get(alt).or_else(|| {
                        self.providers
                            .get(alt.as_str())
                            .and_then(|ps| ps.iter().next())
                            .and_then(|n| self.get(n))
                    })
                });
                match pick {
                    Some(dep) => {
                        if chosen.insert(dep.name.as_str(), dep).is_none() {
                            provided.extend(dep.provides.iter().map(String::as_str));
                            queue.push_back(dep);
                        }
                    }
                    None => {
                        return Err(Error::Invalid(format!(
                            "package {} depends on {}, which the package index does not have",
                            p.name,
                            group.join(" | ")
                        )))
                    }
                }
            }
        }
        Ok(chosen.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: a\nVersion: 1\nArchitecture: amd64\nEssential: yes\nPriority: required\n\
Pre-Depends: libc (>= 2.3)\nDepends: awk | mawk, b:any\nDescription: x\n long text\n .\n more\n\
Filename: pool/main/a/a_1_amd64.deb\nSize: 10\n\
SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n\n\
Package: libc\nVersion: 2\nArchitecture: amd64\nPriority: optional\nFilename: pool/l.deb\nSize: 3\n\
SHA256: 1111111111111111111111111111111111111111111111111111111111111111\n\n\
Package: mawk\nVersion: 2\nArchitecture: amd64\nProvides: awk\nFilename: pool/m.deb\nSize: 3\n\
SHA256: 2222222222222222222222222222222222222222222222222222222222222222\n\n\
Package: b\nVersion: 2\nArchitecture: all\nDepends: c [amd64] | libc\nFilename: pool/b.deb\nSize: 3\n\
SHA256: 3333333333333333333333333333333333333333333333333333333333333333\n\n\
Package: unused\nVersion: 2\nArchitecture: all\nFilename: pool/u.deb\nSize: 3\n\
SHA256: 4444444444444444444444444444444444444444444444444444444444444444\n\n\
Package: other-arch\nVersion: 2\nArchitecture: arm64\nEssential: yes\nFilename: pool/o.deb\nSize: 3\n\
SHA256: 5555555555555555555555555555555555555555555555555555555555555555\n";

    #[test]
    fn relations_keep_names_and_alternatives() {
        assert_eq!(
            parse_relations("libc6 (>= 2.34), a | b:any (<< 3) , c [amd64] <!nocheck>"),
            vec![
                vec!["libc6".to_string()],
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string()]
            ]
        );
        assert!(parse_relations("").is_empty());
    }

    #[test]
    fn stanzas_are_parsed() {
        let pkgs = parse(INDEX, "u").unwrap();
        assert_eq!(pkgs.len(), 6);
        let a = &pkgs[0];
        assert!(a.essential);
        assert_eq!(a.size, 10);
        assert_eq!(a.filename, "pool/main/a/a_1_amd64.deb");
        assert_eq!(a.pre_depends, vec![vec!["libc".to_string()]]);
        assert_eq!(pkgs[2].provides, vec!["awk".to_string()]);
    }

    #[test]
    fn the_closure_follows_alternatives_and_provides() {
        let pkgs = parse(INDEX, "u").unwrap();
        let index = Index::new(&pkgs);
        let roots = index.minbase_roots();
        assert_eq!(roots, vec!["a"]);
        let names: Vec<&str> = index
            .closure(&roots)
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        // awk is virtual: mawk provides it; b's `c | libc` is satisfied by libc.
        assert_eq!(names, vec!["a", "b", "libc", "mawk"]);
    }

    #[test]
    fn a_missing_dependency_is_named() {
        let text = INDEX.replace("Depends: awk | mawk, b:any", "Depends: nowhere");
        let pkgs = parse(&text, "u").unwrap();
        let err = Index::new(&pkgs).closure(&["a"]).unwrap_err().to_string();
        assert!(err.contains("package a depends on nowhere"), "{err}");
        let err = Index::new(&pkgs).closure(&["zz"]).unwrap_err().to_string();
        assert!(err.contains("no package `zz`"), "{err}");
    }

    #[test]
    fn a_stanza_without_a_hash_is_refused() {
        let text = "Package: x\nFilename: pool/x.deb\nSize: 1\n";
        assert!(parse(text, "u").is_err());
        let text = "Package: x\nFilename: pool/x.deb\nSize: q\nSHA256: 00\n";
        assert!(parse(text, "u").is_err());
    }
}
