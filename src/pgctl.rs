//! A private PostgreSQL cluster for `sessionsync demo` on a machine with the PostgreSQL binaries
//! but no running server: `initdb` once under the project's data directory
//! (`.sessionsync/demo-postgres`), then `pg_ctl start` on a free loopback port with trust auth,
//! and `pg_ctl stop` when the demo ends. `initdb` refuses to run as root, so as root the
//! cluster belongs to the `postgres` system user (created if missing).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum PgCtlError {
    #[error(
        "no PostgreSQL server is reachable and no PostgreSQL binaries (initdb, pg_ctl) were found; install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) or set DATABASE_URL"
    )]
    NoBinaries,
    #[error("{step} failed for the private PostgreSQL in {dir}: {detail}")]
    Step {
        step: &'static str,
        dir: PathBuf,
        detail: String,
    },
}

/// A running private cluster; stopped when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    owner: Option<String>,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Initializes (first time) and starts the cluster under `dir`.
    pub fn start(dir: &Path) -> Result<Self, PgCtlError> {
        let bin = find_binaries().ok_or(PgCtlError::NoBinaries)?;
        let root = is_root();
        let owner = root.then(|| "postgres".to_string());
        let fail = |step: &'static str, detail: String| PgCtlError::Step {
            step,
            dir: dir.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("creating the directory", e.to_string()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| fail("resolving the directory", e.to_string()))?;
        if let Some(user) = &owner {
            ensure_user(user).map_err(|e| fail("creating the postgres user", e))?;
            run("chown", Command::new("chown").arg("-R").arg(user).arg(&dir))
                .map_err(|e| fail("chown", e))?;
        }
        let data = dir.join("data");
        let as_owner = |program: &Path| -> Command {
            match &owner {
                Some(user) => {
                    let mut c = Command::new("runuser");
                    c.arg("-u").arg(user).arg("--").arg(program);
                    c
                }
                None => Command::new(program),
            }
        };
        if !data.join("PG_VERSION").exists() {
            run(
                "initdb",
                as_owner(&bin.join("initdb")).arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]),
            )
            .map_err(|e| fail("initdb", e))?;
        }
        let port = free_port().map_err(|e| fail("finding a free port", e))?;
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            dir.display()
        );
        run(
            "pg_ctl start",
            as_owner(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"]),
        )
        .map_err(|e| {
            fail(
                "pg_ctl start",
                format!("{e}; see {}/postgres.log", dir.display()),
            )
        })?;
        Ok(PrivatePostgres {
            bin,
            data,
            owner,
            port,
        })
    }
}

impl PrivatePostgres {
    fn pg_ctl(&self) -> Command {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut c = match &self.owner {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&pg_ctl);
                c
            }
            None => Command::new(&pg_ctl),
        };
        c.arg("-D").arg(&self.data);
        c
    }

    /// Stops the server (fast shutdown: open transactions roll back, clients are cut off).
    pub fn stop(&self) -> Result<(), String> {
        run(
            "pg_ctl stop",
            self.pg_ctl().args(["-m", "fast", "-w", "stop"]),
        )
    }

    /// Starts the server again on the same port.
    pub fn resume(&self) -> Result<(), String> {
        let dir = self.data.parent().unwrap_or(&self.data).to_path_buf();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            dir.display()
        );
        run(
            "pg_ctl start",
            self.pg_ctl()
                .arg("-l")
                .arg(dir.join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"]),
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run(what: &str, c: &mut Command) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("{what} exited with {}: {}", out.status, err.trim()))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn ensure_user(user: &str) -> Result<(), String> {
    let exists = Command::new("id")
        .arg("-u")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success());
    if exists {
        return Ok(());
    }
    run(
        "useradd",
        Command::new("useradd")
            .args(["--system", "--no-create-home"])
            .arg(user),
    )
}

/// `initdb` and `pg_ctl`: from `pg_config --bindir`, Debian's versioned directories, or PATH.
pub fn find_binaries() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output()
        && o.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
