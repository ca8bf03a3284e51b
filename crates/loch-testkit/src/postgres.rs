//! A throwaway PostgreSQL server on 127.0.0.1, from the machine's PostgreSQL binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::process::{cleanup_after_exit, is_root, run};

/// A PostgreSQL server this process started; stop it with [`PostgresServer::stop`].
#[derive(Debug)]
pub struct PostgresServer {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// URL of the `postgres` database as superuser `postgres`.
    pub admin_url: String,
    dir: PathBuf,
    bin: PathBuf,
    as_root: bool,
}

/// Directory of the newest installed PostgreSQL's programs (`initdb`, `pg_ctl`, `psql`).
pub fn bin_dir() -> Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some((_, dir)) => Ok(dir),
        None => bail!("no PostgreSQL server programs under /usr/lib/postgresql (apt-get install postgresql)"),
    }
}

impl PostgresServer {
    /// Initializes a cluster under `dir` and starts it. `durable` keeps fsync on (benchmarks);
    /// tests turn it off for speed.
    pub fn start(dir: &Path, durable: bool) -> Result<Self> {
        let bin = bin_dir()?;
        let as_root = is_root();
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
        let data = dir.join("data");
        let port = crate::free_port();
        let server = Self {
            port,
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir: dir.to_path_buf(),
            bin,
            as_root,
        };
        server
            .pg(&["initdb", "-D", path(&data)?, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .context("initdb failed")?;
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=400 -c shared_buffers=128MB",
            path(dir)?
        );
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = dir.join("postgres.log");
        server
            .pg(&["pg_ctl", "-D", path(&data)?, "-o", &options, "-l", path(&log)?, "-w", "-t", "60", "start"])
            .with_context(|| format!("pg_ctl start failed; see {}", log.display()))?;
        Ok(server)
    }

    fn pg(&self, args: &[&str]) -> Result<String> {
        let program = self.bin.join(args[0]);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(&args[1..]);
        run(&mut cmd)
    }

    /// Shell command that stops the server and removes its files.
    pub fn stop_command(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let stop = format!("{} -D {} -m immediate -w stop", pg_ctl.display(), data.display());
        let stop = if self.as_root { format!("runuser -u postgres -- {stop}") } else { stop };
        format!("{stop} >/dev/null 2>&1; rm -rf {}", self.dir.display())
    }

    /// Stops the server and removes its files.
    pub fn stop(&self) -> Result<()> {
        run(Command::new("sh").args(["-c", &self.stop_command()]))?;
        Ok(())
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// The PostgreSQL server tests share; hands out fresh databases.
#[derive(Debug)]
pub struct PostgresFixture {
    admin_url: String,
}

impl PostgresFixture {
    /// Creates an empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let name = crate::unique_name("loch_");
        let psql = bin_dir().map(|d| d.join("psql")).unwrap_or_else(|_| PathBuf::from("psql"));
        run(Command::new(psql).args([
            &self.admin_url,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            &format!("CREATE DATABASE {name}"),
        ]))
        .expect("CREATE DATABASE failed");
        match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("bad admin url {}", self.admin_url),
        }
    }
}

/// The shared PostgreSQL server: `LOCH_TEST_POSTGRES_URL` if set, else one started for this
/// process. `None` (after a loud skip message) when no server can run here.
pub fn postgres() -> Option<&'static PostgresFixture> {
    static FIXTURE: OnceLock<Option<PostgresFixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            if let Ok(url) = std::env::var("LOCH_TEST_POSTGRES_URL") {
                return Some(PostgresFixture { admin_url: url });
            }
            match start_private() {
                Ok(url) => Some(PostgresFixture { admin_url: url }),
                Err(e) => {
                    crate::unavailable("PostgreSQL", &format!("{e:#}"));
                    None
                }
            }
        })
        .as_ref()
}

fn start_private() -> Result<String> {
    let dir = std::env::temp_dir().join(crate::unique_name("loch-pg-"));
    let server = PostgresServer::start(&dir, false)?;
    cleanup_after_exit(&server.stop_command())?;
    Ok(server.admin_url.clone())
}
