//! A throwaway PostgreSQL for the benchmarks that need one and were given no `--database`:
//! `initdb` into a temporary directory, started on 127.0.0.1 at a free port with the server's
//! default durability (fsync and synchronous commit on: the figures must be honest), stopped
//! and removed when dropped. The server refuses to run as root, so as root it runs as the
//! `postgres` user.
//!
//! Also a fresh database on a server the operator named, so that runs never see each other's
//! rows.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<String>,
    pub url: String,
}

/// The newest `/usr/lib/postgresql/N/bin`, or `$PG_BIN`.
fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL in /usr/lib/postgresql (install postgresql, or set PG_BIN)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no initdb under /usr/lib/postgresql/*/bin (set PG_BIN)"),
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Cluster {
    pub fn start() -> Result<Cluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("kiln-bench-pg").tempdir()?;
        // SAFETY: geteuid has no preconditions.
        let user = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_string());
        if let Some(user) = &user {
            let status = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .status()
                .context("chown")?;
            anyhow::ensure!(status.success(), "chown {user} {}", dir.path().display());
        }
        let mut cluster = Cluster {
            dir,
            bin,
            user,
            url: String::new(),
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-instructions",
            ],
        )?;
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=300",
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        cluster.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let path = self.bin.join(program);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{} failed: {}{}",
                path.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }
}

/// A new, empty database on the server `url` names, dropped when this is dropped.
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn create(admin: &str) -> Result<Database> {
        let name = format!("kiln_bench_{}", std::process::id());
        let mut client = postgres::Client::connect(admin, postgres::NoTls)
            .with_context(|| format!("connecting to {}", kiln_store::postgres::redact(admin)))?;
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
        client.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let url = kiln_store::testing::with_database(admin, &name);
        Ok(Database {
            admin: admin.to_string(),
            name,
            url,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Where a PostgreSQL benchmark runs: the server given, or one of its own. Keeps the cluster
/// (if any) alive as long as the database.
pub struct Target {
    pub database: Database,
    _cluster: Option<Cluster>,
}

impl Target {
    pub fn new(url: Option<&str>) -> Result<Target> {
        let cluster = match url {
            Some(_) => None,
            None => Some(Cluster::start()?),
        };
        let admin = url.map_or_else(
            || cluster.as_ref().map(|c| c.url.clone()),
            |u| Some(u.to_string()),
        );
        let admin = admin.context("no PostgreSQL")?;
        // Dropped before the cluster: fields drop in order.
        let database = Database::create(&admin)?;
        Ok(Target {
            database,
            _cluster: cluster,
        })
    }

    /// Where it runs, for the report.
    pub fn describe(&self) -> String {
        let server = match &self._cluster {
            Some(c) => format!("a throwaway cluster ({})", c.url),
            None => "the server given".to_string(),
        };
        format!(
            "{} on {server}",
            kiln_store::postgres::redact(&self.database.url)
        )
    }
}
