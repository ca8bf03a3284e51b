//! A real browser for the dashboard's tests: Debian's Chromium, headless, driven through
//! ChromeDriver's WebDriver protocol (plain JSON over HTTP), one profile per browser.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::common::Proc;

/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A headless Chromium session; the driver and browser stop when it drops.
pub struct Browser {
    driver: Option<Proc>,
    url: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a browser at 1280×800; `None` (said loudly) when Chromium or
    /// ChromeDriver is missing, unless `LOCH_TEST_REQUIRE_ALL` makes that a failure.
    pub fn start() -> Option<Self> {
        let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
        if !std::path::Path::new(chromium).exists() || !std::path::Path::new(driver).exists() {
            if std::env::var_os("LOCH_TEST_REQUIRE_ALL").is_some() {
                panic!(
                    "{chromium} or {driver} is missing: install Debian's chromium and chromium-driver (./dev/test does)"
                );
            }
            eprintln!("\n!!! SKIPPED: no {chromium} / {driver}; the dashboard's browser tests did not run\n");
            return None;
        }
        let port = loch_testkit::free_port();
        let mut command = Command::new(driver);
        command.arg(format!("--port={port}"));
        let proc = Proc::spawn(command);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !crate::common::http::get_ok(&format!("{url}/status")) {
            assert!(Instant::now() < deadline, "chromedriver did not start: {}", proc.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        } } });
        let answer = call(Method::POST, &format!("{url}/session"), Some(capabilities));
        let session = answer["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_string();
        Some(Self { driver: Some(proc), url, session, _profile: profile })
    }

    fn at(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.url, self.session)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        call(Method::POST, &self.at(path), Some(body))
    }

    fn get(&self, path: &str) -> Value {
        call(Method::GET, &self.at(path), None)
    }

    /// Opens `url` and waits until it loaded.
    pub fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// The page's URL.
    pub fn current_url(&self) -> String {
        self.get("/url").as_str().unwrap_or_default().to_string()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.get("/title").as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML as the browser holds it.
    pub fn source(&self) -> String {
        self.get("/source").as_str().unwrap_or_default().to_string()
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.execute("return document.body.innerText;", json!([])).as_str().unwrap_or_default().to_string()
    }

    /// Runs `script` in the page with `args`; its return value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    fn element(&self, css: &str) -> String {
        let found = self.post("/element", json!({ "using": "css selector", "value": css }));
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css} on {}: {found}", self.current_url()))
            .to_string()
    }

    /// Clicks the first element `css` selects.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/click"), json!({}));
    }

    /// Clicks the first element `css` selects and waits until the page it leads to loaded
    /// (a form's answer, a link's target).
    pub fn click_and_load(&self, css: &str) {
        self.execute("window.__lochOldPage = true;", json!([]));
        self.click(css);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let loaded = self
                .execute("return window.__lochOldPage === undefined && document.readyState === 'complete';", json!([]));
            if loaded == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "clicking {css} loaded no page: {}", self.current_url());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` into the first field `css` selects, after clearing it.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/clear"), json!({}));
        self.post(&format!("/element/{id}/value"), json!({ "text": text }));
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }));
    }

    /// Saves the page as `target/screenshots/{name}.png` (in the workspace); its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.get("/screenshot");
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).unwrap();
        let dir = loch_testkit::workspace_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Waits until `check` holds for the page's text (reloading between looks).
    pub fn wait_for_text(&self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if check(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{what}: not seen within {timeout:?}:\n{text}");
            std::thread::sleep(Duration::from_millis(300));
            self.goto(&self.current_url());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = block_on(Client::new().delete(self.at("")).send());
        if let Some(driver) = self.driver.take() {
            driver.kill();
        }
    }
}

/// A WebDriver command's `value`.
fn call(method: Method, url: &str, body: Option<Value>) -> Value {
    block_on(async {
        let mut request = Client::new().request(method, url).timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(error) = answer["value"].get("error") {
            panic!("webdriver {url}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    })
}
