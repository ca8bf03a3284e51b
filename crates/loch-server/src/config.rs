//! Server configuration: a YAML file, overlaid by `LOCH_*` environment variables, overlaid by
//! command-line flags.
//!
//! Keys are dotted paths (`database.url`). An environment variable names a key the way Amoro's
//! `AMS_*` variables do: drop the `LOCH_` prefix, `__` becomes `-`, `_` becomes `.`, lower case
//! (`LOCH_DATABASE_URL` → `database.url`, `LOCH_AUTH_TOKEN__TTL` → `auth.token-ttl`). Variables
//! that name no key are ignored; unknown keys in the file are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_norway::{Mapping, Value};

/// Default port, as Amoro's AMS.
pub const DEFAULT_PORT: u16 = 1630;

/// Everything `loch serve` can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded database and the default warehouse.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Metadata store.
    pub database: DatabaseConfig,
    /// Authentication of API clients.
    pub auth: AuthConfig,
    /// Catalog service.
    pub catalog: CatalogConfig,
    /// Limits of the HTTP server.
    pub http: HttpConfig,
    /// How often every table is evaluated for optimizing.
    pub refresh_tables: RefreshTablesConfig,
    /// Optimizer threads and the protocol's timeouts.
    pub optimizer: OptimizerConfig,
    /// Process history.
    pub process: ProcessConfig,
    /// Table maintenance.
    pub maintenance: MaintenanceConfig,
    /// SQL terminal sessions over HTTP.
    pub terminal: TerminalConfig,
    /// The web dashboard at `/`.
    pub dashboard: DashboardConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./loch-data"),
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            catalog: CatalogConfig::default(),
            http: HttpConfig::default(),
            refresh_tables: RefreshTablesConfig::default(),
            optimizer: OptimizerConfig::default(),
            process: ProcessConfig::default(),
            maintenance: MaintenanceConfig::default(),
            terminal: TerminalConfig::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

/// `dashboard.*`: the web dashboard's login (Amoro's admin / admin by default, which only a
/// loopback bind accepts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the dashboard at all.
    pub enabled: bool,
    /// The administrator's user name.
    pub admin_username: String,
    /// The administrator's password.
    pub admin_password: String,
    /// A login lasts this long without use.
    #[serde(with = "duration")]
    pub session_timeout: Duration,
}

/// The password a dashboard reachable from other hosts must not keep.
pub const DEFAULT_ADMIN_PASSWORD: &str = "admin";

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            admin_username: "admin".into(),
            admin_password: DEFAULT_ADMIN_PASSWORD.into(),
            session_timeout: Duration::from_secs(8 * 3600),
        }
    }
}

/// `http.*`: limits a client cannot get around.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body, in bytes (of an ingest: largest Arrow IPC message).
    pub max_body_size: u64,
    /// Largest body of a keyed table's ingest, which streams, in bytes.
    pub max_ingest_size: u64,
    /// Bytes all request bodies in flight may hold together; past it, requests get a 503.
    pub max_in_flight_body_bytes: u64,
    /// Time a client has to send a request's line and headers.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let limits = crate::http::HttpLimits::default();
        Self {
            max_body_size: limits.max_body_bytes,
            max_ingest_size: limits.max_ingest_bytes,
            max_in_flight_body_bytes: limits.max_in_flight_body_bytes,
            header_read_timeout: limits.header_read_timeout,
            body_read_timeout: limits.body_read_timeout,
        }
    }
}

impl HttpConfig {
    /// The limits of the HTTP layer.
    pub fn limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            max_body_bytes: self.max_body_size.max(1),
            max_ingest_bytes: self.max_ingest_size.max(1),
            max_in_flight_body_bytes: self.max_in_flight_body_bytes.max(self.max_body_size).max(1),
            header_read_timeout: self.header_read_timeout.max(Duration::from_millis(100)),
            body_read_timeout: self.body_read_timeout.max(Duration::from_millis(100)),
        }
    }
}

/// `refresh-tables.*` (Amoro's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RefreshTablesConfig {
    /// Every table is evaluated this often (commits through Loch trigger it sooner).
    #[serde(with = "duration")]
    pub interval: Duration,
}

impl Default for RefreshTablesConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(60) }
    }
}

/// `optimizer.*`: the server's own optimizer threads and the optimizer protocol's timeouts
/// (Amoro's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Optimizer threads inside `loch serve`, serving the `default` group; 0 turns them off.
    pub local_threads: u32,
    /// An optimizer silent this long is dropped and its tasks are handed out again.
    #[serde(with = "duration")]
    pub heart_beat_timeout: Duration,
    /// A task handed out but not acknowledged this long goes back.
    #[serde(with = "duration")]
    pub task_ack_timeout: Duration,
    /// A task executing this long goes back; `0s` means no limit.
    #[serde(with = "duration")]
    pub task_execute_timeout: Duration,
    /// How long a poll waits for a task.
    #[serde(with = "duration")]
    pub polling_timeout: Duration,
    /// Test hook (not configurable from files): the embedded threads sleep this long after
    /// acknowledging each task.
    #[serde(skip)]
    pub test_task_delay: Option<Duration>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            local_threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            heart_beat_timeout: Duration::from_secs(60),
            task_ack_timeout: Duration::from_secs(30),
            task_execute_timeout: Duration::ZERO,
            polling_timeout: Duration::from_secs(3),
            test_task_delay: None,
        }
    }
}

/// `process.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ProcessConfig {
    /// Finished processes and their tasks are kept this long.
    #[serde(with = "duration")]
    pub history_data_keep_time: Duration,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self { history_data_keep_time: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// `terminal.*`: SQL terminal sessions (Amoro's keys where it has them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TerminalConfig {
    /// `terminal.result.limit`: rows kept of each statement's answer.
    pub result: TerminalResultConfig,
    /// `terminal.stop-on-error`: a script stops at its first failing statement unless a
    /// session asks otherwise.
    pub stop_on_error: bool,
    /// `terminal.session.timeout`: sessions nobody looked at for this long are dropped.
    pub session: TerminalSessionConfig,
    /// `terminal.max-sessions`: sessions kept at once (running or finished, not expired).
    pub max_sessions: usize,
    /// `terminal.threads`: threads that run sessions' statements, apart from the server's.
    pub threads: usize,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        Self {
            result: TerminalResultConfig::default(),
            stop_on_error: false,
            session: TerminalSessionConfig::default(),
            max_sessions: 50,
            threads: 2,
        }
    }
}

/// `terminal.result.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TerminalResultConfig {
    /// Rows kept of each statement's answer (Amoro: 1000).
    pub limit: usize,
}

impl Default for TerminalResultConfig {
    fn default() -> Self {
        Self { limit: 1000 }
    }
}

/// `terminal.session.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TerminalSessionConfig {
    /// Idle time after which a session is dropped (Amoro: 30 min).
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for TerminalSessionConfig {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30 * 60) }
    }
}

/// `maintenance.*`: how often each maintenance action runs per table (Amoro's process-factory
/// intervals) and how many run at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Snapshot expiry of every table with `table-expire.enabled` this often; `0s` turns the
    /// scheduled runs off (runs on request remain).
    #[serde(with = "duration")]
    pub expire_snapshots_interval: Duration,
    /// Dangling-delete cleaning of every table with `clean-dangling-delete-files.enabled` this
    /// often; `0s` turns the scheduled runs off.
    #[serde(with = "duration")]
    pub clean_dangling_delete_files_interval: Duration,
    /// Orphan cleaning of every table with `clean-orphan-file.enabled` this often; `0s` turns
    /// the scheduled runs off.
    #[serde(with = "duration")]
    pub clean_orphan_files_interval: Duration,
    /// Data expiration of every table with `data-expire.enabled` this often; `0s` turns the
    /// scheduled runs off.
    #[serde(with = "duration")]
    pub expire_data_interval: Duration,
    /// Automatic tagging of every table with `tag.auto-create.enabled` this often; `0s` turns
    /// the scheduled runs off.
    #[serde(with = "duration")]
    pub auto_create_tags_interval: Duration,
    /// Orphan cleaning never deletes a file younger than this, whatever the table's
    /// `clean-orphan-file.min-existing-time-minutes`: long jobs commit files written hours before.
    #[serde(with = "duration")]
    pub orphan_min_age_floor: Duration,
    /// Maintenance runs at once.
    pub threads: usize,
    /// Test hook (not configurable from files): maintenance pauses this long after each batch
    /// of deletions.
    #[serde(skip)]
    pub test_delete_pause: Option<Duration>,
}

impl MaintenanceConfig {
    /// The runner's settings: the non-zero intervals, and a tick no longer than the shortest.
    fn runner(&self) -> loch_optimizing::maintenance::runner::MaintenanceConfig {
        use loch_optimizing::maintenance::MaintenanceAction as A;
        let intervals: Vec<(A, Duration)> = [
            (A::ExpireSnapshots, self.expire_snapshots_interval),
            (A::CleanOrphanFiles, self.clean_orphan_files_interval),
            (A::CleanDanglingDeleteFiles, self.clean_dangling_delete_files_interval),
            (A::ExpireData, self.expire_data_interval),
            (A::AutoCreateTags, self.auto_create_tags_interval),
        ]
        .into_iter()
        .filter(|(_, d)| !d.is_zero())
        .collect();
        let tick = intervals
            .iter()
            .map(|(_, d)| *d)
            .min()
            .unwrap_or(Duration::from_secs(30))
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        loch_optimizing::maintenance::runner::MaintenanceConfig {
            intervals,
            threads: self.threads.max(1),
            tick,
            test_delete_pause: self.test_delete_pause,
            orphan_min_age_floor: self.orphan_min_age_floor,
        }
    }
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            expire_snapshots_interval: Duration::from_secs(3600),
            clean_dangling_delete_files_interval: Duration::from_secs(24 * 3600),
            clean_orphan_files_interval: Duration::from_secs(24 * 3600),
            expire_data_interval: Duration::from_secs(24 * 3600),
            auto_create_tags_interval: Duration::from_secs(60),
            orphan_min_age_floor: Duration::from_secs(3600),
            threads: 2,
            test_delete_pause: None,
        }
    }
}

/// Metadata store settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `postgres://...`; empty means `sqlite:{data-dir}/loch.db`.
    pub url: String,
    /// Most open connections.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: String::new(), max_connections: 16 }
    }
}

/// Authentication settings. Off (every request allowed) while no clients are configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AuthConfig {
    /// OAuth2 clients allowed to get tokens: a list of `{id, secret}` or `"id:secret,id:secret"`.
    #[serde(deserialize_with = "deserialize_clients")]
    pub clients: Vec<ClientCredential>,
    /// Lifetime of issued tokens.
    #[serde(with = "duration")]
    pub token_ttl: Duration,
    /// Token requests a client (or, for unknown clients, an address) may make per minute.
    pub token_requests_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { clients: Vec::new(), token_ttl: Duration::from_secs(3600), token_requests_per_minute: 60 }
    }
}

/// One OAuth2 client.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredential {
    /// Client id.
    pub id: String,
    /// Client secret.
    pub secret: String,
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredential").field("id", &self.id).field("secret", &"***").finish()
    }
}

/// Catalog service settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Name of the internal catalog created at first start (empty: create none).
    pub default_name: String,
    /// Its warehouse; empty means `{data-dir}/warehouse`.
    pub default_warehouse: String,
    /// How often a commit that lost a race is re-applied on the server before a 409.
    pub commit_retries: u32,
    /// Largest metadata file the catalog reads (registered or its own), in bytes.
    pub max_metadata_file_size: u64,
    /// Memory for parsed table metadata kept between requests, in bytes (estimated as four
    /// times the JSON): hot tables load from memory, the rest from storage.
    pub metadata_cache_size: u64,
    /// Longest the catalog waits for a metadata file to be read.
    #[serde(with = "duration")]
    pub metadata_read_timeout: Duration,
    /// How long a drop with purge waits for the purge before answering (it then goes on in the
    /// background).
    #[serde(with = "duration")]
    pub purge_wait: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            default_name: "local".into(),
            default_warehouse: String::new(),
            commit_retries: 4,
            max_metadata_file_size: 64 << 20,
            metadata_cache_size: loch_catalog::ServiceOptions::default().metadata_cache_bytes,
            metadata_read_timeout: Duration::from_secs(30),
            purge_wait: Duration::from_secs(10),
        }
    }
}

impl CatalogConfig {
    /// Options of the catalog service.
    pub fn service_options(&self) -> loch_catalog::ServiceOptions {
        loch_catalog::ServiceOptions {
            commit_retries: self.commit_retries,
            read_limits: loch_catalog::storage::policy::ReadLimits {
                max_bytes: self.max_metadata_file_size.max(1),
                timeout: self.metadata_read_timeout.max(Duration::from_millis(10)),
            },
            purge_wait: self.purge_wait,
            metadata_cache_bytes: self.metadata_cache_size,
        }
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file or a variable is not valid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the file (if any), then overlays `LOCH_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                let value: Value = serde_norway::from_str(&text)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
                match value {
                    Value::Null => Value::Mapping(Mapping::new()),
                    v @ Value::Mapping(_) => v,
                    _ => {
                        return Err(ConfigError::Invalid(format!("{}: expected a mapping at the top", path.display())));
                    }
                }
            }
            None => Value::Mapping(Mapping::new()),
        };
        let known = known_keys();
        for (name, value) in env {
            let Some(key) = env_key(&name) else { continue };
            let Some((_, default)) = known.iter().find(|(k, _)| *k == key) else { continue };
            // Keys whose default is a number or boolean parse the text; others take it verbatim.
            let parsed = match default {
                Value::Number(_) | Value::Bool(_) => {
                    serde_norway::from_str::<Value>(&value).unwrap_or(Value::String(value))
                }
                _ => Value::String(value),
            };
            set_path(&mut tree, &key, parsed);
        }
        serde_norway::from_value(tree).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The database URL, defaulting to the embedded SQLite file.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite:{}", self.data_dir.join("loch.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// Self-optimizing settings of the service.
    pub fn optimizing(&self) -> loch_optimizing::OptimizingConfig {
        let o = &self.optimizer;
        loch_optimizing::OptimizingConfig {
            refresh_interval: self.refresh_tables.interval.max(Duration::from_millis(100)),
            heartbeat_timeout: o.heart_beat_timeout,
            ack_timeout: o.task_ack_timeout,
            execute_timeout: (!o.task_execute_timeout.is_zero()).then_some(o.task_execute_timeout),
            poll_timeout: o.polling_timeout,
            history_keep: self.process.history_data_keep_time,
            maintenance: self.maintenance.runner(),
        }
    }

    /// The default catalog's warehouse, defaulting to `{data-dir}/warehouse`.
    pub fn default_warehouse(&self) -> std::io::Result<String> {
        if !self.catalog.default_warehouse.is_empty() {
            return Ok(self.catalog.default_warehouse.clone());
        }
        let dir = std::path::absolute(self.data_dir.join("warehouse"))?;
        Ok(format!("file://{}", dir.display()))
    }
}

/// The config key an environment variable names, if it starts with `LOCH_`.
fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix("LOCH_")?;
    Some(rest.to_ascii_lowercase().replace("__", "\u{0}").replace('_', ".").replace('\u{0}', "-"))
}

/// Every dotted key of [`Config`] with its default value.
fn known_keys() -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Mapping(map) => {
                for (k, v) in map {
                    if let Some(k) = k.as_str() {
                        let key = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
                        walk(&key, v, out);
                    }
                }
            }
            other => out.push((prefix.to_string(), other)),
        }
    }
    let mut keys = Vec::new();
    if let Ok(value) = serde_norway::to_value(Config::default()) {
        walk("", value, &mut keys);
    }
    keys
}

fn set_path(tree: &mut Value, key: &str, value: Value) {
    let mut node = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !matches!(node, Value::Mapping(_)) {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        let k = Value::String((*part).to_string());
        if i == parts.len() - 1 {
            map.insert(k, value);
            return;
        }
        node = map.entry(k).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}

fn deserialize_clients<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ClientCredential>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Clients {
        List(Vec<ClientCredential>),
        Text(String),
    }
    match Clients::deserialize(d)? {
        Clients::List(list) => Ok(list),
        Clients::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|pair| match pair.split_once(':') {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                    Ok(ClientCredential { id: id.to_string(), secret: secret.to_string() })
                }
                _ => Err(serde::de::Error::custom("auth.clients entries must look like id:secret")),
            })
            .collect(),
    }
}

/// Durations as humantime strings (`30s`, `1h`, `7d`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.bind.port(), 1630);
        assert!(config.database_url().starts_with("sqlite:"));
        assert!(config.database_url().ends_with("loch.db"));
    }

    #[test]
    fn env_overrides_file_and_unknown_variables_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("loch.yaml");
        std::fs::write(&file, "database:\n  url: postgres://file\n  max-connections: 4\nauth:\n  token-ttl: 10m\n")
            .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("LOCH_DATABASE_URL", "postgres://env/db"),
                ("LOCH_AUTH_CLIENTS", "spark:s1, flink:s2"),
                ("LOCH_CATALOG_COMMIT__RETRIES", "9"),
                ("LOCH_OPTIMIZER_LOCAL__THREADS", "0"),
                ("LOCH_REFRESH__TABLES_INTERVAL", "5s"),
                ("LOCH_TEST_POSTGRES_URL", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database.url, "postgres://env/db");
        assert_eq!(config.database.max_connections, 4);
        assert_eq!(config.auth.token_ttl, Duration::from_secs(600));
        assert_eq!(config.catalog.commit_retries, 9);
        assert_eq!(config.optimizer.local_threads, 0);
        assert_eq!(config.refresh_tables.interval, Duration::from_secs(5));
        assert_eq!(config.optimizing().execute_timeout, None);
        assert_eq!(config.auth.clients.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec!["spark", "flink"]);
    }

    #[test]
    fn bad_files_fail_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("loch.yaml");
        std::fs::write(&file, "databse:\n  url: x\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("databse"), "{err}");
        std::fs::write(&file, "auth:\n  clients: nocolon\n").unwrap();
        assert!(Config::load(Some(&file), env(&[])).is_err());
        assert!(Config::load(Some(&dir.path().join("missing.yaml")), env(&[])).is_err());
    }

    #[test]
    fn env_names_map_to_keys() {
        assert_eq!(env_key("LOCH_DATABASE_URL").as_deref(), Some("database.url"));
        assert_eq!(env_key("LOCH_AUTH_TOKEN__TTL").as_deref(), Some("auth.token-ttl"));
        assert_eq!(env_key("LOCH_DATA__DIR").as_deref(), Some("data-dir"));
        assert_eq!(env_key("OTHER"), None);
    }
}
