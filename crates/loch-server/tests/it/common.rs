//! A Loch server started in-process for one test, on SQLite or PostgreSQL, with a `file://` or
//! an `s3://` warehouse, and clients for it.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::CatalogBuilder;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg_catalog_rest::{RestCatalog, RestCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use loch_server::config::{ClientCredential, Config};
use loch_server::{RunningServer, start};

/// Metadata store of a test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Warehouse of a test server's `local` catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    File,
    S3,
}

/// A running server and what it needs to stay alive.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub url: String,
    pub warehouse: String,
    pub backend: Backend,
    pub storage: Storage,
    pub http: reqwest::Client,
    pub token: Option<String>,
    config: Config,
    _dir: tempfile::TempDir,
}

/// Client id and secret of test servers started with authentication.
pub const CLIENT: (&str, &str) = ("tester", "s3cret");

impl TestServer {
    /// Starts a server, or returns `None` (after a loud skip message) when the backend or
    /// storage cannot run here.
    pub async fn start(backend: Backend, storage: Storage) -> Option<Self> {
        Self::start_with(backend, storage, false).await
    }

    /// Like [`TestServer::start`], optionally with authentication on.
    pub async fn start_with(backend: Backend, storage: Storage, auth: bool) -> Option<Self> {
        Self::start_configured(backend, storage, auth, |_| {}).await
    }

    /// Like [`TestServer::start_with`], with `configure` applied to the configuration last.
    pub async fn start_configured(
        backend: Backend,
        storage: Storage,
        auth: bool,
        configure: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            Config { data_dir: dir.path().to_path_buf(), bind: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
        // Catalog tests run without optimizer threads or scheduled maintenance; optimizing and
        // maintenance tests configure their own.
        config.optimizer.local_threads = 0;
        config.maintenance.expire_snapshots_interval = std::time::Duration::ZERO;
        config.maintenance.clean_dangling_delete_files_interval = std::time::Duration::ZERO;
        config.maintenance.clean_orphan_files_interval = std::time::Duration::ZERO;
        config.maintenance.expire_data_interval = std::time::Duration::ZERO;
        config.maintenance.auto_create_tags_interval = std::time::Duration::ZERO;
        // Orphan tests age their files by seconds.
        config.maintenance.orphan_min_age_floor = std::time::Duration::ZERO;
        if backend == Backend::Postgres {
            config.database.url = loch_testkit::postgres()?.create_database();
        }
        let s3_properties = match storage {
            Storage::File => None,
            Storage::S3 => {
                let s3 = loch_testkit::s3()?;
                // The S3 catalog is created through the management API below.
                config.catalog.default_name = String::new();
                Some(HashMap::from([
                    ("warehouse".to_string(), s3.unique_warehouse()),
                    ("s3.endpoint".to_string(), s3.endpoint.clone()),
                    ("s3.region".to_string(), s3.region.clone()),
                    ("client.region".to_string(), s3.region.clone()),
                    ("s3.access-key-id".to_string(), s3.access_key_id.clone()),
                    ("s3.secret-access-key".to_string(), s3.secret_access_key.clone()),
                    ("s3.path-style-access".to_string(), "true".to_string()),
                ]))
            }
        };
        if auth {
            config.auth.clients = vec![ClientCredential { id: CLIENT.0.into(), secret: CLIENT.1.into() }];
        }
        configure(&mut config);
        let server = start(config.clone()).await.expect("server starts");
        let url = server.url();
        let http = reqwest::Client::new();
        let mut test = Self {
            server: Some(server),
            url,
            warehouse: String::new(),
            backend,
            storage,
            http,
            token: None,
            config,
            _dir: dir,
        };
        if auth {
            test.token = Some(test.fetch_token().await);
        }
        if let Some(properties) = s3_properties {
            let response = test
                .request(reqwest::Method::POST, "/api/v1/catalogs")
                .json(&serde_json::json!({"name": "local", "properties": properties}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "create S3 catalog: {}", response.text().await.unwrap());
            test.config.catalog.default_name = "local".into();
        }
        let catalog: serde_json::Value =
            test.request(reqwest::Method::GET, "/api/v1/catalogs/local").send().await.unwrap().json().await.unwrap();
        test.warehouse = catalog["properties"]["warehouse"].as_str().unwrap().to_string();
        Some(test)
    }

    /// The configuration the server runs with (a second server may share its store and data).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Exchanges the test client's credentials for a token.
    pub async fn fetch_token(&self) -> String {
        let response = self
            .http
            .post(format!("{}/api/iceberg/rest/v1/oauth/tokens", self.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT.0),
                ("client_secret", CLIENT.1),
                ("scope", "catalog"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// A request to `path` on the server, with the token if auth is on.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Base URL of the `local` catalog's REST routes (`.../v1/catalogs/local`).
    pub fn catalog_url(&self) -> String {
        format!("{}/api/iceberg/rest/v1/catalogs/local", self.url)
    }

    /// iceberg-rust's REST client for the `local` catalog.
    pub async fn rest_catalog(&self) -> RestCatalog {
        self.rest_catalog_for("local").await
    }

    /// iceberg-rust's REST client for catalog `name`.
    pub async fn rest_catalog_for(&self, name: &str) -> RestCatalog {
        let mut props = HashMap::from([
            ("uri".to_string(), format!("{}/api/iceberg/rest", self.url)),
            ("warehouse".to_string(), name.to_string()),
        ]);
        if self.token.is_some() {
            props.insert("credential".into(), format!("{}:{}", CLIENT.0, CLIENT.1));
        }
        RestCatalogBuilder::default()
            .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
            .load("loch", props)
            .await
            .expect("REST catalog client")
    }

    /// Stops the server and starts it again on the same data (and port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Stops the server (its data stays).
    pub async fn stop(&mut self) {
        let server = self.server.take().expect("running");
        self.config.bind = server.local_addr();
        server.shutdown().await.unwrap();
    }

    /// Starts a stopped server again on the same data and port.
    pub async fn start_again(&mut self) {
        self.server = Some(start(self.config.clone()).await.expect("server restarts"));
    }

    /// Creates catalog `name` with a `file://` warehouse at `dir` through the management API.
    pub async fn add_file_catalog(&self, name: &str, dir: &std::path::Path) {
        let body = serde_json::json!({"name": name, "properties": {"warehouse": format!("file://{}", dir.display())}});
        let (status, answer) = call(self, reqwest::Method::POST, "/api/v1/catalogs", Some(body)).await;
        assert_eq!(status, 201, "create catalog {name}: {answer}");
    }

    /// The metadata store's URL.
    pub fn database_url(&self) -> String {
        self.config.database_url()
    }

    /// A short description for messages: `sqlite/file` etc.
    pub fn label(&self) -> String {
        format!("{:?}/{:?}", self.backend, self.storage).to_lowercase()
    }
}

/// `id: long (required), category: string, value: double` — the schema most tests use.
pub fn simple_schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "category", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(3, "value", Type::Primitive(PrimitiveType::Double)).into(),
        ])
        .build()
        .unwrap()
}

/// Checks a catalog call failed with `kind`.
pub fn assert_kind<T: std::fmt::Debug>(result: iceberg::Result<T>, kind: iceberg::ErrorKind) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{e}"),
        Ok(v) => panic!("expected {kind:?}, got {v:?}"),
    }
}

/// Status and JSON body (or the text, when not JSON) of a request to `server`.
pub async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = server.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// `tests/python/tables.py ARGS` (PyIceberg in the test venv) against `server`: its one-line
/// JSON answer, or `None` when the venv is missing (after a loud message).
pub async fn tables_py(server: &TestServer, args: &[&str]) -> Option<serde_json::Value> {
    let python = loch_testkit::python()?;
    let script = loch_testkit::workspace_root().join("tests/python/tables.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .env("LOCH_URI", format!("{}/api/iceberg/rest", server.url))
        .env("LOCH_WAREHOUSE", "local")
        .output()
        .await
        .expect("tables.py runs");
    assert!(output.status.success(), "tables.py {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Some(serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default()).unwrap())
}
