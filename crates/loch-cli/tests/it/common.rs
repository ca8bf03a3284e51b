//! Running `loch` processes and talking to them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::NamedTempFile;

pub const LOCH: &str = env!("CARGO_BIN_EXE_loch");

/// A `loch` child process whose output goes to files, so a chatty process never blocks on a
/// full pipe; killed when dropped.
pub struct Proc {
    child: Child,
    stdout: NamedTempFile,
    stderr: NamedTempFile,
}

impl Proc {
    /// Spawns `command` with its output captured.
    pub fn spawn(mut command: Command) -> Self {
        let stdout = NamedTempFile::new().unwrap();
        let stderr = NamedTempFile::new().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout.reopen().unwrap())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        Self { child, stdout, stderr }
    }

    /// What the process printed to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.stdout.path()).unwrap_or_default()
    }

    /// The last lines the process logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let all = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit status if it did.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` and expects a clean exit within 15 seconds.
    pub fn stop(mut self, signal: &str) -> String {
        self.signal(signal);
        let status = self.wait(Duration::from_secs(15));
        let status = status.unwrap_or_else(|| panic!("no exit after SIG{signal}: {}", self.log_tail()));
        assert!(status.success(), "exited with {status} after SIG{signal}: {}", self.log_tail());
        self.stdout()
    }

    /// SIGKILL: the process dies on the spot, as on a crash.
    pub fn kill(mut self) {
        self.signal("KILL");
        assert!(self.wait(Duration::from_secs(10)).is_some(), "no exit after SIGKILL");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `loch serve`.
pub struct Serve {
    pub proc: Proc,
    pub url: String,
}

impl Serve {
    /// `loch serve --data-dir DIR --bind 127.0.0.1:PORT`, once healthy.
    pub fn start(data_dir: &Path, port: u16) -> Self {
        Self::start_with(data_dir, port, &[])
    }

    /// As [`Serve::start`], with extra environment variables (configuration keys and test hooks).
    pub fn start_with(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(LOCH);
        command.args(["serve", "--data-dir"]).arg(data_dir).args(["--bind", &format!("127.0.0.1:{port}")]);
        command.envs(env.iter().copied());
        Self::spawn(command, port)
    }

    /// Runs `command` (a `loch serve` that listens on `port`) until it is healthy.
    pub fn spawn(command: Command, port: u16) -> Self {
        let mut proc = Proc::spawn(command);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http::get_ok(&format!("{url}/health")) {
                return Self { proc, url };
            }
            if let Some(status) = proc.wait(Duration::from_millis(100)) {
                panic!("loch serve exited with {status}: {}", proc.log_tail());
            }
        }
        panic!("loch serve did not become healthy: {}", proc.log_tail());
    }

    /// Sends `signal` and waits for a clean exit; returns what the server printed.
    pub fn stop(self, signal: &str) -> String {
        self.proc.stop(signal)
    }

    /// GET of a management API path, which must answer 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = http::call(reqwest::Method::GET, &format!("{}{path}", self.url), None);
        assert_eq!(status, 200, "GET {path}: {body}\n{}", self.proc.log_tail());
        body
    }

    /// Starts `loch optimizer -a URL -p THREADS` for the default group, with extra environment.
    pub fn optimizer(&self, threads: u32, env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(LOCH);
        command.args(["optimizer", "--ams", &self.url, "-p", &threads.to_string(), "--shutdown-grace", "2s"]);
        command.envs(env.iter().copied());
        Proc::spawn(command)
    }

    /// Polls `path` every 250 ms until `check` accepts it, for at most `timeout`.
    pub fn wait_for(&self, what: &str, path: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.get(path);
            if check(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {value}\n{}", self.proc.log_tail());
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// `tests/python/tables.py` run by the test venv's Python against a server.
pub struct Tables {
    python: PathBuf,
    uri: String,
}

impl Tables {
    /// `None` (after a loud message) when the venv is missing.
    pub fn new(server: &Serve) -> Option<Self> {
        let python = loch_testkit::python()?;
        Some(Self { python, uri: format!("{}/api/iceberg/rest", server.url) })
    }

    /// Runs `tables.py ARGS`; its one-line JSON answer.
    pub fn run(&self, args: &[&str]) -> Value {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `tables.py ARGS`; its one-line JSON answer, or its failure (a read racing a
    /// snapshot expiry that removes the files it was about to read may fail and be retried).
    pub fn try_run(&self, args: &[&str]) -> Result<Value, String> {
        let script = loch_testkit::workspace_root().join("tests/python/tables.py");
        let output = Command::new(&self.python).arg(script).args(args).env("LOCH_URI", &self.uri).output().unwrap();
        if !output.status.success() {
            return Err(format!("tables.py {args:?} failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .map_err(|e| format!("tables.py {args:?} printed {stdout:?}: {e}"))
    }
}

/// Blocking HTTP calls for a synchronous test.
pub mod http {
    use reqwest::{Client, Method};
    use serde_json::Value;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    /// True when GET `url` answers 2xx.
    pub fn get_ok(url: &str) -> bool {
        block_on(async { Client::new().get(url).send().await.is_ok_and(|r| r.status().is_success()) })
    }

    /// Status and JSON body of a request.
    pub fn call(method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
        block_on(async {
            let mut request = Client::new().request(method, url);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }
}
