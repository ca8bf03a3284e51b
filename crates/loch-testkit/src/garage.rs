//! A throwaway single-node garage server: a real S3-compatible object store on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{cleanup_after_exit, run};

/// Version of garage that `dev/test` installs.
pub const GARAGE_VERSION: &str = "2.5.0";

/// Connection settings of an S3 endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Fixture {
    /// Endpoint URL, e.g. `http://127.0.0.1:3900`.
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// A bucket tests may write to.
    pub bucket: String,
}

impl S3Fixture {
    /// A fresh `s3://bucket/prefix` location for one test.
    pub fn unique_warehouse(&self) -> String {
        format!("s3://{}/{}", self.bucket, crate::unique_name("wh-"))
    }

    fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok();
        Some(Self {
            endpoint: var("LOCH_TEST_S3_ENDPOINT")?,
            region: var("LOCH_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
            access_key_id: var("LOCH_TEST_S3_ACCESS_KEY_ID")?,
            secret_access_key: var("LOCH_TEST_S3_SECRET_ACCESS_KEY")?,
            bucket: var("LOCH_TEST_S3_BUCKET")?,
        })
    }

    /// The variables that hand this endpoint to test processes.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LOCH_TEST_S3_ENDPOINT", self.endpoint.clone()),
            ("LOCH_TEST_S3_REGION", self.region.clone()),
            ("LOCH_TEST_S3_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("LOCH_TEST_S3_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("LOCH_TEST_S3_BUCKET", self.bucket.clone()),
        ]
    }
}

/// Where the garage binary is: `LOCH_GARAGE_BIN`, the tools cache `dev/test` installs into, or PATH.
pub fn garage_bin() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("LOCH_GARAGE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let tools = std::env::var("LOCH_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/loch-tools"));
    let cached = tools.join("bin/garage");
    if cached.exists() {
        return Ok(cached);
    }
    if run(Command::new("garage").arg("--version")).is_ok() {
        return Ok(PathBuf::from("garage"));
    }
    bail!("garage not found (set LOCH_GARAGE_BIN, or run ./dev/test which installs garage {GARAGE_VERSION})")
}

/// A garage server this process started.
#[derive(Debug)]
pub struct GarageServer {
    /// How to reach it.
    pub s3: S3Fixture,
    dir: PathBuf,
    child: Child,
}

impl GarageServer {
    /// Configures and starts garage under `dir` with one key and one bucket.
    pub fn start(dir: &Path) -> Result<Self> {
        let bin = garage_bin()?;
        std::fs::create_dir_all(dir)?;
        let (rpc, api) = (crate::free_port(), crate::free_port());
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{dir}/meta\"\ndata_dir = \"{dir}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{api}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                dir = dir.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("garage.log"))?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start garage")?;
        let cli = |args: &[&str]| -> Result<String> { run(Command::new(&bin).arg("-c").arg(&config).args(args)) };

        // `node id` can answer from the key on disk before the server listens for RPC, so the
        // first RPC command is retried too until garage is up.
        let deadline = Instant::now() + Duration::from_secs(30);
        let until_up = |args: &[&str]| -> Result<String> {
            loop {
                match cli(args) {
                    Ok(out) => return Ok(out),
                    Err(e) if Instant::now() > deadline => return Err(e.context("garage did not start")),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        };
        let node = until_up(&["node", "id", "-q"])?.trim().split('@').next().unwrap_or_default().to_string();
        until_up(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        cli(&["layout", "apply", "--version", "1"])?;
        let key_id = format!("GK{}", &secret[..24]);
        let key_secret = format!("{secret}{secret}")[..64].to_string();
        cli(&["key", "import", "--yes", "-n", "loch", &key_id, &key_secret])?;
        cli(&["bucket", "create", "loch-test"])?;
        cli(&["bucket", "allow", "--read", "--write", "--owner", "loch-test", "--key", "loch"])?;
        Ok(Self {
            s3: S3Fixture {
                endpoint: format!("http://127.0.0.1:{api}"),
                region: "garage".into(),
                access_key_id: key_id,
                secret_access_key: key_secret,
                bucket: "loch-test".into(),
            },
            dir: dir.to_path_buf(),
            child,
        })
    }

    /// Shell command that stops the server and removes its files.
    pub fn stop_command(&self) -> String {
        format!("kill {} 2>/dev/null; sleep 1; rm -rf {}", self.child.id(), self.dir.display())
    }

    /// Stops the server and removes its files.
    pub fn stop(mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
        Ok(())
    }
}

/// The shared S3 endpoint: from `LOCH_TEST_S3_*` if set, else a garage started for this process.
/// `None` (after a loud skip message) when none can run here.
pub fn s3() -> Option<&'static S3Fixture> {
    static FIXTURE: OnceLock<Option<S3Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            if let Some(s3) = S3Fixture::from_env() {
                return Some(s3);
            }
            let started = GarageServer::start(&std::env::temp_dir().join(crate::unique_name("loch-garage-"))).and_then(
                |server| {
                    cleanup_after_exit(&server.stop_command())?;
                    let s3 = server.s3.clone();
                    // The watchdog stops the server; keep the process handle from killing it early.
                    std::mem::forget(server);
                    Ok(s3)
                },
            );
            match started {
                Ok(s3) => Some(s3),
                Err(e) => {
                    crate::unavailable("S3 server (garage)", &format!("{e:#}"));
                    None
                }
            }
        })
        .as_ref()
}
