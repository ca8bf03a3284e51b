//! [`Backend`] over a Loch server's HTTP APIs: the Iceberg REST catalog for namespaces, loads
//! and commits, the management API for creating tables (keyed ones too), optimizing and
//! maintenance, and the ingest route for keyed writes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{NamespaceIdent, Runtime, TableIdent, TableRequirement, TableUpdate};
use loch_api::optimizing::{OptimizeRequest, OptimizeResponse};
use loch_table::mixed::properties::PRIMARY_KEY_FIELDS;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::backend::{ActionOutcome, Backend, LoadedTable, NewTable, OptimizeOutcome, TableRef};
use crate::error::{Result, SqlError};

/// The suffix of a keyed table's change store in the REST catalog.
const CHANGE_SUFFIX: &str = "@change";

/// A Loch server at `url`, with a bearer token when authentication is on.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl HttpBackend {
    /// A backend for the server at `url` (e.g. `http://127.0.0.1:1630`).
    pub fn new(url: &str, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| SqlError::Catalog(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { url: url.trim_end_matches('/').to_string(), token, http })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; the body of a success, or the server's message as an error.
    async fn send(&self, request: RequestBuilder) -> Result<(StatusCode, bytes::Bytes)> {
        let response =
            request.send().await.map_err(|e| SqlError::Catalog(format!("cannot reach {}: {e}", self.url)))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| SqlError::Catalog(format!("reading the answer: {e}")))?;
        if status.is_success() {
            return Ok((status, body));
        }
        if status == StatusCode::CONFLICT && error_type(&body).as_deref() == Some("CommitFailedException") {
            return Err(SqlError::CommitConflict(error_message(status, &body)));
        }
        Err(SqlError::Catalog(error_message(status, &body)))
    }

    async fn json(&self, request: RequestBuilder) -> Result<Value> {
        let (_, body) = self.send(request).await?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| SqlError::Catalog(format!("unexpected answer from the server: {e}")))
    }

    fn rest(catalog: &str, path: &str) -> String {
        format!("/api/iceberg/rest/v1/catalogs/{}{path}", encode(catalog))
    }

    async fn load_store(&self, table: &TableRef, name: &str) -> Result<Option<Table>> {
        #[derive(Deserialize)]
        struct Loaded {
            #[serde(rename = "metadata-location")]
            location: Option<String>,
            metadata: TableMetadata,
            #[serde(default)]
            config: HashMap<String, String>,
        }
        let path = Self::rest(
            &table.catalog,
            &format!("/namespaces/{}/tables/{}", namespace_path(&table.namespace), encode(name)),
        );
        let response = self
            .request(Method::GET, &path)
            .send()
            .await
            .map_err(|e| SqlError::Catalog(format!("cannot reach {}: {e}", self.url)))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = response.status();
        let body = response.bytes().await.map_err(|e| SqlError::Catalog(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            return Err(SqlError::Catalog(error_message(status, &body)));
        }
        let loaded: Loaded = serde_json::from_slice(&body)
            .map_err(|e| SqlError::Catalog(format!("unexpected loadTable answer for {name}: {e}")))?;
        let mut builder = Table::builder()
            .identifier(TableIdent::new(NamespaceIdent::from_vec(table.namespace.clone())?, name.to_string()))
            .file_io(loch_table::io::file_io(loaded.config))
            .metadata(Arc::new(loaded.metadata))
            .runtime(Runtime::current());
        if let Some(location) = loaded.location {
            builder = builder.metadata_location(location);
        }
        Ok(Some(builder.build()?))
    }

    fn table_path(table: &TableRef, rest: &str) -> String {
        format!(
            "/api/v1/tables/{}/{}/{}{rest}",
            encode(&table.catalog),
            namespace_path(&table.namespace),
            encode(&table.name)
        )
    }
}

/// One line from an error answer: the Iceberg `ErrorModel`'s or the management API's message.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message").or_else(|| v.get("message")).and_then(Value::as_str).map(str::to_string)
    });
    match message {
        Some(m) => m,
        None => format!("the server answered {status}: {}", String::from_utf8_lossy(body).trim()),
    }
}

/// The Iceberg `ErrorModel`'s type of an error answer.
fn error_type(body: &[u8]) -> Option<String> {
    let parsed: Value = serde_json::from_slice(body).ok()?;
    parsed.pointer("/error/type").and_then(Value::as_str).map(str::to_string)
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A namespace in a path: its levels joined by U+001F, as the REST spec has it.
fn namespace_path(levels: &[String]) -> String {
    levels.iter().map(|l| encode(l)).collect::<Vec<_>>().join("%1F")
}

#[async_trait]
impl Backend for HttpBackend {
    async fn catalogs(&self) -> Result<Vec<String>> {
        let list = self.json(self.request(Method::GET, "/api/v1/catalogs")).await?;
        let names = list
            .as_array()
            .map(|a| a.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string)).collect())
            .unwrap_or_default();
        Ok(names)
    }

    async fn namespaces(&self, catalog: &str) -> Result<Vec<Vec<String>>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self.request(Method::GET, &Self::rest(catalog, "/namespaces"));
            if let Some(t) = &token {
                request = request.query(&[("pageToken", t)]);
            }
            let page = self.json(request).await?;
            if let Some(list) = page.get("namespaces").and_then(Value::as_array) {
                for ns in list {
                    let levels: Vec<String> = serde_json::from_value(ns.clone()).unwrap_or_default();
                    out.push(levels);
                }
            }
            token = page.get("next-page-token").and_then(Value::as_str).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn create_namespace(&self, catalog: &str, namespace: &[String]) -> Result<()> {
        let body = json!({ "namespace": namespace, "properties": {} });
        self.json(self.request(Method::POST, &Self::rest(catalog, "/namespaces")).json(&body)).await?;
        Ok(())
    }

    async fn drop_namespace(&self, catalog: &str, namespace: &[String]) -> Result<()> {
        let path = Self::rest(catalog, &format!("/namespaces/{}", namespace_path(namespace)));
        self.send(self.request(Method::DELETE, &path)).await?;
        Ok(())
    }

    async fn tables(&self, catalog: &str, namespace: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let path = Self::rest(catalog, &format!("/namespaces/{}/tables", namespace_path(namespace)));
            let mut request = self.request(Method::GET, &path);
            if let Some(t) = &token {
                request = request.query(&[("pageToken", t)]);
            }
            let page = self.json(request).await?;
            if let Some(list) = page.get("identifiers").and_then(Value::as_array) {
                for id in list {
                    if let Some(name) = id.get("name").and_then(Value::as_str)
                        && !name.ends_with(CHANGE_SUFFIX)
                    {
                        out.push(name.to_string());
                    }
                }
            }
            token = page.get("next-page-token").and_then(Value::as_str).map(str::to_string);
            if token.is_none() {
                out.sort();
                return Ok(out);
            }
        }
    }

    async fn load(&self, table: &TableRef) -> Result<Option<LoadedTable>> {
        let Some(base) = self.load_store(table, &table.name).await? else { return Ok(None) };
        let key = base.metadata().properties().get(PRIMARY_KEY_FIELDS).cloned();
        let Some(key) = key.filter(|k| !k.is_empty()) else { return Ok(Some(LoadedTable::Iceberg(base))) };
        let change_name = format!("{}{CHANGE_SUFFIX}", table.name);
        let change = self
            .load_store(table, &change_name)
            .await?
            .ok_or_else(|| SqlError::Catalog(format!("keyed table {table} has no change store {change_name}")))?;
        let primary_key = key.split(',').map(|k| k.trim().to_string()).collect();
        Ok(Some(LoadedTable::Keyed { base, change, primary_key }))
    }

    async fn create(&self, table: &TableRef, new: NewTable) -> Result<()> {
        let format = if new.primary_key.is_empty() { "iceberg" } else { "mixed-iceberg" };
        let body = json!({
            "name": table.name,
            "format": format,
            "schema": serde_json::to_value(&new.schema).map_err(|e| SqlError::invalid(e.to_string()))?,
            "partition_spec": new.partition_spec.map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
            "primary_key": new.primary_key,
            "properties": new.properties,
        });
        let path = format!(
            "/api/v1/catalogs/{}/namespaces/{}/tables",
            encode(&table.catalog),
            namespace_path(&table.namespace)
        );
        self.json(self.request(Method::POST, &path).json(&body)).await?;
        Ok(())
    }

    async fn drop_table(&self, table: &TableRef, purge: bool) -> Result<()> {
        let path = Self::rest(
            &table.catalog,
            &format!("/namespaces/{}/tables/{}", namespace_path(&table.namespace), encode(&table.name)),
        );
        self.send(self.request(Method::DELETE, &path).query(&[("purgeRequested", purge)])).await?;
        Ok(())
    }

    async fn commit(
        &self,
        table: &TableRef,
        store: &str,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<()> {
        let path = Self::rest(
            &table.catalog,
            &format!("/namespaces/{}/tables/{}", namespace_path(&table.namespace), encode(store)),
        );
        let body = json!({ "requirements": requirements, "updates": updates });
        self.json(self.request(Method::POST, &path).json(&body)).await?;
        Ok(())
    }

    async fn ingest(&self, table: &TableRef, changes: Vec<RecordBatch>) -> Result<()> {
        let Some(first) = changes.first() else { return Ok(()) };
        let mut body = Vec::new();
        {
            let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut body, &first.schema())?;
            for batch in &changes {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        let request = self
            .request(Method::POST, &Self::table_path(table, "/changes"))
            .header(reqwest::header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")
            .body(body);
        self.json(request).await?;
        Ok(())
    }

    async fn optimize(&self, table: &TableRef, full: bool) -> Result<OptimizeOutcome> {
        let request = self.request(Method::POST, &Self::table_path(table, "/optimizing/processes"));
        let answer = self.json(request.json(&OptimizeRequest { full })).await?;
        let answer: OptimizeResponse = serde_json::from_value(answer)
            .map_err(|e| SqlError::invalid(format!("the server's answer to OPTIMIZE is not understood: {e}")))?;
        let process = answer.process.map(|p| (p.id, p.process_type, p.tasks as i64));
        Ok(OptimizeOutcome { process, message: answer.message })
    }

    async fn maintain(&self, table: &TableRef, action: &str, options: Value) -> Result<ActionOutcome> {
        let mut request = self.request(Method::POST, &Self::table_path(table, &format!("/maintenance/{action}")));
        if options.get("dry_run").and_then(Value::as_bool) == Some(true) {
            request = request.query(&[("dry_run", "true")]);
        }
        if let Some(n) = options.get("retain_last").and_then(Value::as_u64) {
            request = request.query(&[("retain_last", n.to_string())]);
        }
        let answer = self.json(request.json(&options)).await?;
        let files = answer
            .get("paths")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let count = |k: &str| answer.get(k).and_then(Value::as_u64).unwrap_or(0);
        let message = match answer.get("skipped").and_then(Value::as_str) {
            Some(reason) => format!("{action} skipped: {reason}"),
            None => format!(
                "{action}{}: {} snapshots expired, {} data and delete files and {} metadata files ({} bytes){}",
                if answer.get("dryRun").and_then(Value::as_bool) == Some(true) {
                    " (dry run, nothing deleted)"
                } else {
                    ""
                },
                count("snapshotsExpired"),
                count("contentFiles"),
                count("metadataFiles"),
                count("bytes"),
                if answer.get("dryRun").and_then(Value::as_bool) == Some(true) { " would go" } else { " deleted" },
            ),
        };
        Ok(ActionOutcome { message, files })
    }
}
