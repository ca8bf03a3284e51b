//! Runs statements: Loch's own (catalog browsing, DDL, maintenance) against the backend, and
//! everything else through a DataFusion session built per statement with exactly the tables the
//! statement names, loaded fresh, so every statement sees the tables' current state (or the
//! snapshot its time travel asks for).

use std::sync::Arc;

use crate::KeyedTableProvider;
use crate::backend::{Backend, LoadedTable, NewTable, OptimizeOutcome, TableRef};
use crate::ddl;
use crate::error::{Result, SqlError};
use crate::evolve::evolve;
use crate::iceberg_scan::IcebergTableProvider;
use crate::meta_tables;
use crate::statement::{CreateTable, Located, Statement, parse_script, time_travel};
use crate::time_travel::{keyed_as_of, snapshot_of};
use crate::write;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, FromTable, Ident, ObjectName, ObjectNamePart, Statement as SqlStatement, TableFactor,
    TableObject, TableWithJoins,
};
use futures::{StreamExt, TryStreamExt};

/// What a statement answered.
#[derive(Debug, Clone)]
pub struct Output {
    /// Columns of the rows (empty for a statement without rows).
    pub schema: SchemaRef,
    /// The rows, at most the limit asked for.
    pub batches: Vec<RecordBatch>,
    /// More rows were there than the limit.
    pub truncated: bool,
    /// One line about what happened (`OK`, `3 rows`, `inserted 5 rows`, ...).
    pub summary: String,
}

impl Output {
    fn done(summary: impl Into<String>) -> Self {
        Self { schema: Arc::new(ArrowSchema::empty()), batches: Vec::new(), truncated: false, summary: summary.into() }
    }

    fn strings(column: &str, values: Vec<String>) -> Result<Self> {
        let schema = Arc::new(ArrowSchema::new(vec![Field::new(column, DataType::Utf8, false)]));
        let n = values.len();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values)) as ArrayRef])?;
        Ok(Self { schema, batches: vec![batch], truncated: false, summary: rows_summary(n) })
    }

    fn count(column: &str, n: u64, summary: String) -> Result<Self> {
        let schema = Arc::new(ArrowSchema::new(vec![Field::new(column, DataType::UInt64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(vec![n])) as ArrayRef])?;
        Ok(Self { schema, batches: vec![batch], truncated: false, summary })
    }

    /// The process `OPTIMIZE` planned (no row when none was), with the service's message.
    fn process(outcome: OptimizeOutcome) -> Result<Self> {
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("process_id", DataType::Int64, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("tasks", DataType::Int64, false),
        ]));
        let (ids, (types, tasks)): (Vec<i64>, (Vec<String>, Vec<i64>)) =
            outcome.process.into_iter().map(|(id, kind, tasks)| (id, (kind, tasks))).unzip();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(types)),
            Arc::new(Int64Array::from(tasks)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Self { schema, batches: vec![batch], truncated: false, summary: outcome.message })
    }

    /// Rows in the answer.
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

fn rows_summary(n: usize) -> String {
    if n == 1 { "1 row".into() } else { format!("{n} rows") }
}

/// A SQL session: the current catalog and namespace, over a backend.
#[derive(Debug)]
pub struct SqlEngine {
    backend: Arc<dyn Backend>,
    catalog: String,
    namespace: Vec<String>,
}

impl SqlEngine {
    /// A session on `catalog` (its namespace `default` until `USE`).
    pub fn new(backend: Arc<dyn Backend>, catalog: impl Into<String>) -> Self {
        Self { backend, catalog: catalog.into(), namespace: vec!["default".into()] }
    }

    /// The backend statements run against.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The current catalog.
    pub fn catalog(&self) -> &str {
        &self.catalog
    }

    /// The current namespace.
    pub fn namespace(&self) -> &[String] {
        &self.namespace
    }

    /// Runs every statement of `sql` in order, stopping at the first error.
    pub async fn run(&mut self, sql: &str) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        for statement in parse_script(sql)? {
            out.push(self.execute(&statement, None).await?);
        }
        Ok(out)
    }

    /// Runs one statement, keeping at most `limit` rows of its answer.
    pub async fn execute(&mut self, located: &Located, limit: Option<usize>) -> Result<Output> {
        match &located.statement {
            Statement::ShowCatalogs => Output::strings("catalog", self.backend.catalogs().await?),
            Statement::ShowNamespaces(catalog) => {
                let catalog = match catalog {
                    Some(name) => single(name, "catalog")?,
                    None => self.catalog.clone(),
                };
                let list = self.backend.namespaces(&catalog).await?;
                Output::strings("namespace", list.into_iter().map(|l| l.join(".")).collect())
            }
            Statement::ShowTables(namespace) => {
                let (catalog, namespace) = match namespace {
                    Some(name) => self.resolve_namespace(name)?,
                    None => (self.catalog.clone(), self.namespace.clone()),
                };
                Output::strings("table", self.backend.tables(&catalog, &namespace).await?)
            }
            Statement::Describe(name) => self.describe(name).await,
            Statement::ShowCreateTable(name) => {
                let (table, loaded) = self.load(name).await?;
                let text = ddl::show_create_table(&table.to_string(), loaded.table(), loaded.primary_key());
                let mut out = Output::strings("createtab_stmt", vec![text])?;
                out.summary = "OK".into();
                Ok(out)
            }
            Statement::ShowProperties(name) => {
                let (_, loaded) = self.load(name).await?;
                let mut props: Vec<(String, String)> =
                    loaded.table().metadata().properties().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                props.sort();
                let schema = Arc::new(ArrowSchema::new(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", DataType::Utf8, false),
                ]));
                let n = props.len();
                let (keys, values): (Vec<String>, Vec<String>) = props.into_iter().unzip();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(StringArray::from(keys)) as ArrayRef, Arc::new(StringArray::from(values))],
                )?;
                Ok(Output { schema, batches: vec![batch], truncated: false, summary: rows_summary(n) })
            }
            Statement::CreateNamespace { name, if_not_exists } => {
                let (catalog, namespace) = self.resolve_namespace(name)?;
                let exists = self.backend.namespaces(&catalog).await?.contains(&namespace);
                if exists {
                    if *if_not_exists {
                        return Ok(Output::done("OK"));
                    }
                    return Err(SqlError::invalid(format!("namespace {} already exists", namespace.join("."))));
                }
                self.backend.create_namespace(&catalog, &namespace).await?;
                Ok(Output::done("OK"))
            }
            Statement::DropNamespace { name, if_exists } => {
                let (catalog, namespace) = self.resolve_namespace(name)?;
                if *if_exists && !self.backend.namespaces(&catalog).await?.contains(&namespace) {
                    return Ok(Output::done("OK"));
                }
                self.backend.drop_namespace(&catalog, &namespace).await?;
                Ok(Output::done("OK"))
            }
            Statement::CreateTable(create) => self.create_table(create).await,
            Statement::DropTable { name, if_exists, purge } => {
                let table = self.resolve(name)?;
                if self.backend.load(&table).await?.is_none() {
                    if *if_exists {
                        return Ok(Output::done("OK"));
                    }
                    return Err(SqlError::invalid(format!("table {table} does not exist")));
                }
                self.backend.drop_table(&table, *purge).await?;
                Ok(Output::done("OK"))
            }
            Statement::SetProperties(name, pairs) => {
                let (table, loaded) = self.load(name).await?;
                // `format-version` is no property but the version to upgrade to, as in Spark.
                let (versions, pairs): (Vec<_>, Vec<_>) =
                    pairs.iter().cloned().partition(|(k, _)| k == "format-version");
                let mut updates = Vec::new();
                for (_, version) in versions {
                    let format_version = match version.as_str() {
                        "1" => iceberg::spec::FormatVersion::V1,
                        "2" => iceberg::spec::FormatVersion::V2,
                        "3" => iceberg::spec::FormatVersion::V3,
                        other => {
                            return Err(SqlError::invalid(format!(
                                "unsupported format-version {other:?}; use 1, 2 or 3"
                            )));
                        }
                    };
                    if format_version < loaded.table().metadata().format_version() {
                        return Err(SqlError::invalid(format!(
                            "table {table} is format-version {}; a table's format version can only go up",
                            loaded.table().metadata().format_version() as u8
                        )));
                    }
                    updates.push(iceberg::TableUpdate::UpgradeFormatVersion { format_version });
                }
                if !pairs.is_empty() {
                    updates.push(iceberg::TableUpdate::SetProperties { updates: pairs.into_iter().collect() });
                }
                let store = loaded.table().identifier().name().to_string();
                self.backend.commit(&table, &store, Vec::new(), updates).await?;
                Ok(Output::done("OK"))
            }
            Statement::UnsetProperties(name, keys) => {
                let (table, loaded) = self.load(name).await?;
                let updates = vec![iceberg::TableUpdate::RemoveProperties { removals: keys.clone() }];
                let store = loaded.table().identifier().name().to_string();
                self.backend.commit(&table, &store, Vec::new(), updates).await?;
                Ok(Output::done("OK"))
            }
            Statement::AlterColumns(name, change) => {
                let (table, loaded) = self.load(name).await?;
                let stores: Vec<&iceberg::table::Table> = match &loaded {
                    LoadedTable::Iceberg(table) => vec![table],
                    // Both stores keep one schema; both commits are checked before either is made.
                    LoadedTable::Keyed { base, change, .. } => vec![base, change],
                };
                let mut commits = Vec::with_capacity(stores.len());
                for store in stores {
                    if let Some(commit) = evolve(store, &table.to_string(), change, loaded.primary_key())? {
                        commits.push((store.identifier().name().to_string(), commit));
                    }
                }
                let changed = !commits.is_empty();
                for (store, (requirements, updates)) in commits {
                    self.backend.commit(&table, &store, requirements, updates).await?;
                }
                Ok(Output::done(if changed { "OK" } else { "OK (nothing to change)" }))
            }
            Statement::Optimize { name, full } => {
                let (table, _) = self.load(name).await?;
                let outcome = self.backend.optimize(&table, *full).await?;
                Output::process(outcome)
            }
            Statement::ExpireSnapshots { name, retain } => {
                let (table, _) = self.load(name).await?;
                if *retain == Some(0) {
                    return Err(SqlError::invalid("EXPIRE SNAPSHOTS ... RETAIN needs at least 1 snapshot"));
                }
                let options = serde_json::json!({ "retain_last": retain });
                let outcome = self.backend.maintain(&table, "expire-snapshots", options).await?;
                Output::strings("summary", vec![outcome.message])
            }
            Statement::CleanOrphanFiles { name, dry_run } => {
                let (table, _) = self.load(name).await?;
                let options = serde_json::json!({ "dry_run": dry_run });
                let outcome = self.backend.maintain(&table, "clean-orphan-files", options).await?;
                let mut out = Output::strings("file", outcome.files)?;
                out.summary = outcome.message;
                Ok(out)
            }
            Statement::Sql(statement) => {
                // A write that lost a commit race committed nothing: run it again on the new
                // state (a concurrent optimizing commit is the usual cause), a few times.
                let mut attempt = 1;
                loop {
                    match self.sql(statement, limit).await {
                        Err(SqlError::CommitConflict(reason)) if attempt < COMMIT_ATTEMPTS && retryable(statement) => {
                            tracing::debug!(attempt, %reason, "a statement's commit lost a race; running it again");
                            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }
        }
    }

    /// `[catalog.]namespace` of a name (a three-part name is a table, not a namespace).
    fn resolve_namespace(&self, name: &ObjectName) -> Result<(String, Vec<String>)> {
        let parts = parts(name)?;
        match parts.as_slice() {
            [namespace] => Ok((self.catalog.clone(), split_namespace(namespace))),
            [catalog, namespace] => Ok((catalog.clone(), split_namespace(namespace))),
            _ => Err(SqlError::invalid(format!("{name} is not a namespace name; use [catalog.]namespace"))),
        }
    }

    /// The table a name means here: `t`, `namespace.t` or `catalog.namespace.t`.
    fn resolve(&self, name: &ObjectName) -> Result<TableRef> {
        let parts = parts(name)?;
        self.resolve_parts(&parts, name)
    }

    fn resolve_parts(&self, parts: &[String], name: &dyn std::fmt::Display) -> Result<TableRef> {
        match parts {
            [table] => {
                Ok(TableRef { catalog: self.catalog.clone(), namespace: self.namespace.clone(), name: table.clone() })
            }
            [namespace, table] => Ok(TableRef {
                catalog: self.catalog.clone(),
                namespace: split_namespace(namespace),
                name: table.clone(),
            }),
            [catalog, namespace, table] => {
                Ok(TableRef { catalog: catalog.clone(), namespace: split_namespace(namespace), name: table.clone() })
            }
            _ => Err(SqlError::invalid(format!("{name} is not a table name; use [[catalog.]namespace.]table"))),
        }
    }

    pub(crate) async fn load(&self, name: &ObjectName) -> Result<(TableRef, LoadedTable)> {
        let table = self.resolve(name)?;
        let loaded = self.backend.load(&table).await?;
        let loaded = loaded.ok_or_else(|| SqlError::invalid(format!("table {table} does not exist")))?;
        Ok((table, loaded))
    }

    async fn describe(&self, name: &ObjectName) -> Result<Output> {
        let (_, loaded) = self.load(name).await?;
        let schema = loaded.table().metadata().current_schema().clone();
        let key = loaded.primary_key();
        let fields = schema.as_struct().fields();
        let mut names = Vec::new();
        let mut types = Vec::new();
        let mut nullable = Vec::new();
        let mut keys = Vec::new();
        let mut comments = Vec::new();
        for f in fields {
            names.push(f.name.clone());
            types.push(ddl::sql_type(&f.field_type));
            nullable.push(if f.required { "NO" } else { "YES" }.to_string());
            keys.push(if key.contains(&f.name) { "PRI" } else { "" }.to_string());
            comments.push(f.doc.clone().unwrap_or_default());
        }
        let n = names.len();
        let out_schema = Arc::new(ArrowSchema::new(
            ["column_name", "data_type", "is_nullable", "key", "comment"]
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, false))
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = [names, types, nullable, keys, comments]
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(out_schema.clone(), columns)?;
        Ok(Output { schema: out_schema, batches: vec![batch], truncated: false, summary: rows_summary(n) })
    }

    async fn create_table(&mut self, create: &CreateTable) -> Result<Output> {
        let table = self.resolve(&create.name)?;
        if self.backend.load(&table).await?.is_some() {
            if create.if_not_exists {
                return Ok(Output::done("OK"));
            }
            return Err(SqlError::invalid(format!("table {table} already exists")));
        }
        // CTAS: plan the query first, so a bad query creates nothing.
        let query = match &create.query {
            Some(query) => {
                let statement = SqlStatement::Query(query.clone());
                let (ctx, plan) = self.plan(&statement).await?;
                let frame = ctx.execute_logical_plan(plan).await?;
                Some(frame)
            }
            None => None,
        };
        let arrow = match (&query, create.columns.is_empty()) {
            (Some(frame), true) => ddl::require_key(frame.schema().as_arrow(), &create.primary_key)?,
            (_, false) => ddl::arrow_schema(&create.columns, &create.primary_key)?,
            (None, true) => return Err(SqlError::invalid("CREATE TABLE needs columns or AS SELECT")),
        };
        let schema = ddl::iceberg_schema(&arrow)?;
        let partition_spec = ddl::partition_spec(&create.partitioned_by, &schema)?;
        let new = NewTable {
            schema,
            partition_spec,
            properties: ddl::properties(&create.properties),
            primary_key: create.primary_key.clone(),
        };
        self.backend.create(&table, new).await?;
        let Some(frame) = query else { return Ok(Output::done("OK")) };
        let stream = frame.execute_stream().await?;
        let written = match self.write_rows(&table, stream, None, false).await {
            Ok(n) => n,
            Err(e) => {
                // The table was made for these rows: without them it goes too.
                let _ = self.backend.drop_table(&table, true).await;
                return Err(e);
            }
        };
        Output::count("count", written, format!("created {table} with {}", rows_summary(written as usize)))
    }

    /// Plans `statement` in a session holding the tables it names.
    async fn plan(&self, statement: &SqlStatement) -> Result<(SessionContext, datafusion::logical_expr::LogicalPlan)> {
        let statement = DFStatement::Statement(Box::new(statement.clone()));
        let ctx = self.context(&statement).await?;
        let plan = ctx.state().statement_to_plan(statement).await?;
        Ok((ctx, plan))
    }

    /// A session with every table `statement` references registered under the name it used.
    pub(crate) async fn context(&self, statement: &DFStatement) -> Result<SessionContext> {
        let namespace = self.namespace.join(".");
        let config = SessionConfig::new().with_default_catalog_and_schema(&self.catalog, &namespace);
        let ctx = SessionContext::new_with_config(config);
        let references = ctx.state().resolve_table_references(statement)?;
        let functions = ctx.state().table_functions().clone();
        for reference in references {
            // Table functions (`range(10)`) resolve like tables; DataFusion plans them itself.
            if matches!(reference, TableReference::Bare { .. }) && functions.contains_key(reference.table()) {
                continue;
            }
            let provider = self.provider(&reference).await?;
            let (catalog, schema) = match &reference {
                TableReference::Bare { .. } => (self.catalog.clone(), namespace.clone()),
                TableReference::Partial { schema, .. } => (self.catalog.clone(), schema.to_string()),
                TableReference::Full { catalog, schema, .. } => (catalog.to_string(), schema.to_string()),
            };
            let catalog_provider = match ctx.catalog(&catalog) {
                Some(c) => c,
                None => {
                    let c: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
                    ctx.register_catalog(&catalog, c.clone());
                    c
                }
            };
            if catalog_provider.schema(&schema).is_none() {
                catalog_provider.register_schema(&schema, Arc::new(MemorySchemaProvider::new()))?;
            }
            ctx.register_table(reference.clone(), provider)?;
        }
        Ok(ctx)
    }

    /// The provider of a referenced table: a metadata table, a snapshot, a keyed table's
    /// merge-on-read, or an Iceberg table's scan.
    async fn provider(&self, reference: &TableReference) -> Result<Arc<dyn TableProvider>> {
        let (name, travel) = time_travel(reference.table())?;
        let (name, kind) = match meta_tables::split(name) {
            Some((table, kind)) => (table, Some(kind)),
            None => (name, None),
        };
        let mut parts: Vec<String> = Vec::new();
        if let Some(catalog) = reference.catalog() {
            parts.push(catalog.to_string());
        }
        if let Some(schema) = reference.schema() {
            parts.push(schema.to_string());
        }
        parts.push(name.to_string());
        let table = self.resolve_parts(&parts, reference)?;
        let loaded = self.backend.load(&table).await?;
        let loaded = loaded.ok_or_else(|| SqlError::invalid(format!("table {table} does not exist")))?;
        if let Some(kind) = kind {
            if travel.is_some() {
                return Err(SqlError::invalid("metadata tables have no time travel"));
            }
            return meta_tables::provider(&loaded, kind).await;
        }
        match (loaded, travel) {
            (LoadedTable::Iceberg(table), None) => Ok(Arc::new(IcebergTableProvider::try_new(table, None)?)),
            (LoadedTable::Iceberg(table), Some(travel)) => {
                let snapshot = snapshot_of(&table, &travel)?;
                Ok(Arc::new(IcebergTableProvider::try_new(table, Some(snapshot))?))
            }
            (LoadedTable::Keyed { base, change, primary_key }, None) => {
                Ok(Arc::new(KeyedTableProvider::try_new(base, change, primary_key)?))
            }
            (LoadedTable::Keyed { base, change, primary_key }, Some(travel)) => {
                let (base, change) = keyed_as_of(&table.to_string(), &base, &change, &travel)?;
                Ok(Arc::new(KeyedTableProvider::try_new(base, change, primary_key)?))
            }
        }
    }

    async fn sql(&mut self, statement: &SqlStatement, limit: Option<usize>) -> Result<Output> {
        match statement {
            SqlStatement::Use(use_) => self.use_(use_),
            SqlStatement::Insert(insert) => {
                let TableObject::TableName(name) = &insert.table else {
                    return Err(SqlError::invalid("INSERT INTO a table function is not supported"));
                };
                let table = self.resolve(name)?;
                let source =
                    insert.source.clone().ok_or_else(|| SqlError::invalid("INSERT needs VALUES or a query"))?;
                let (ctx, plan) = self.plan(&SqlStatement::Query(source)).await?;
                let stream = ctx.execute_logical_plan(plan).await?.execute_stream().await?;
                let columns: Vec<String> = insert.columns.iter().map(normalize).collect();
                let columns = (!columns.is_empty()).then_some(columns);
                let n = self.write_rows(&table, stream, columns, insert.overwrite).await?;
                Output::count("count", n, format!("inserted {}", rows_summary(n as usize)))
            }
            SqlStatement::Delete(delete) => {
                if delete.using.is_some() || !delete.tables.is_empty() {
                    return Err(SqlError::invalid("DELETE ... USING and multi-table DELETE are not supported"));
                }
                let from = match &delete.from {
                    FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
                };
                let [from] = from.as_slice() else {
                    return Err(SqlError::invalid("DELETE removes rows of one table"));
                };
                let (name, alias) = target_of(from)?;
                let selection = delete.selection.as_ref().map(ToString::to_string);
                let n = self.row_level(statement, &name, alias, selection, None).await?;
                Output::count("count", n, format!("deleted {}", rows_summary(n as usize)))
            }
            SqlStatement::Update(update) => {
                if update.from.is_some() {
                    return Err(SqlError::invalid("UPDATE ... FROM is not supported"));
                }
                let (name, alias) = target_of(&update.table)?;
                let mut set = Vec::new();
                for assignment in &update.assignments {
                    let AssignmentTarget::ColumnName(column) = &assignment.target else {
                        return Err(SqlError::invalid(
                            "UPDATE SET (a, b) = ... is not supported; set columns one by one",
                        ));
                    };
                    let column = parts(column)?.pop().unwrap_or_default();
                    set.push((column, assignment.value.to_string()));
                }
                let selection = update.selection.as_ref().map(ToString::to_string);
                let n = self.row_level(statement, &name, alias, selection, Some(set)).await?;
                Output::count("count", n, format!("updated {}", rows_summary(n as usize)))
            }
            SqlStatement::Merge(merge) => {
                let n = self.merge(statement, merge).await?;
                Output::count("count", n, format!("merged {}", rows_summary(n as usize)))
            }
            query @ (SqlStatement::Query(_) | SqlStatement::Explain { .. }) => {
                let (ctx, plan) = self.plan(query).await?;
                let frame = ctx.execute_logical_plan(plan).await?;
                let mut stream = frame.execute_stream().await?;
                let schema = stream.schema();
                let mut batches = Vec::new();
                let mut rows = 0usize;
                let mut truncated = false;
                while let Some(batch) = stream.try_next().await? {
                    match limit {
                        Some(limit) if rows + batch.num_rows() > limit => {
                            batches.push(batch.slice(0, limit - rows));
                            rows = limit;
                            truncated = true;
                            break;
                        }
                        _ => {
                            rows += batch.num_rows();
                            batches.push(batch);
                        }
                    }
                }
                let mut summary = rows_summary(rows);
                if truncated {
                    summary.push_str(" (truncated)");
                }
                Ok(Output { schema, batches, truncated, summary })
            }
            // DataFusion's own DDL would make tables over any path the server can read.
            other => Err(SqlError::invalid(format!("Loch does not run this statement: {}", first_words(other)))),
        }
    }

    fn use_(&mut self, use_: &datafusion::sql::sqlparser::ast::Use) -> Result<Output> {
        use datafusion::sql::sqlparser::ast::Use;
        let name = match use_ {
            Use::Object(name) | Use::Database(name) | Use::Schema(name) => name,
            Use::Catalog(name) => {
                self.catalog = single(name, "catalog")?;
                return Ok(Output::done("OK"));
            }
            other => return Err(SqlError::invalid(format!("unsupported {other}"))),
        };
        let parts = parts(name)?;
        match parts.as_slice() {
            [namespace] => self.namespace = split_namespace(namespace),
            [catalog, namespace] => {
                self.catalog = catalog.clone();
                self.namespace = split_namespace(namespace);
            }
            _ => return Err(SqlError::invalid(format!("USE {name}: use [catalog.]namespace"))),
        }
        Ok(Output::done("OK"))
    }

    /// Writes a statement's rows into `table` (in the order of `columns` when given, the
    /// others NULL); `overwrite` replaces the partitions the rows fall in. Returns the row count.
    async fn write_rows(
        &self,
        table: &TableRef,
        stream: SendableRecordBatchStream,
        columns: Option<Vec<String>>,
        overwrite: bool,
    ) -> Result<u64> {
        let loaded = self
            .backend
            .load(table)
            .await?
            .ok_or_else(|| SqlError::invalid(format!("table {table} does not exist")))?;
        let target = write::table_arrow_schema(loaded.table())?;
        let order = match &columns {
            Some(columns) => Some(column_order(columns, &target)?),
            None => None,
        };
        let target_for_rows = target.clone();
        let rows = stream.map(move |batch| {
            let batch = batch?;
            let batch = match &order {
                Some(order) => reorder(&batch, order, &target_for_rows)?,
                None => batch,
            };
            write::conform(&batch, &target_for_rows)
        });
        match loaded {
            LoadedTable::Iceberg(store) => {
                let (files, count) = write::write_data_files(&store, Box::pin(rows)).await?;
                if files.is_empty() && !overwrite {
                    return Ok(0);
                }
                let result = if overwrite {
                    self.overwrite(table, &store, files.clone()).await
                } else {
                    let mut delta = loch_table::snapshot::RowDelta::new();
                    for f in files.iter().cloned() {
                        delta = delta.add_rows(f);
                    }
                    write::commit(self.backend.as_ref(), table, &store, delta).await.map(|_| ())
                };
                if let Err(e) = result {
                    write::delete_files(&store, &files).await;
                    return Err(e);
                }
                Ok(count)
            }
            LoadedTable::Keyed { base, change, primary_key } => {
                let batches: Vec<RecordBatch> = Box::pin(rows).try_collect().await?;
                let count = batches.iter().map(|b| b.num_rows() as u64).sum();
                if overwrite {
                    self.overwrite_keyed(table, &base, &change, &primary_key, &batches).await?;
                    return Ok(count);
                }
                let changes = batches.iter().map(|b| write::with_op(b, "+I")).collect::<Result<Vec<_>>>()?;
                self.backend.ingest(table, changes).await?;
                Ok(count)
            }
        }
    }

    /// Dynamic partition overwrite of a keyed table: the rows become base files that replace
    /// the partitions they fall in, changes committed before included (one base-store commit).
    async fn overwrite_keyed(
        &self,
        table: &TableRef,
        base: &iceberg::table::Table,
        change: &iceberg::table::Table,
        primary_key: &[String],
        batches: &[RecordBatch],
    ) -> Result<()> {
        use loch_table::mixed::{overwrite::prepare_overwrite, properties::base_buckets};
        let buckets = base_buckets(base.metadata().properties())?;
        let overwrite = prepare_overwrite(base, change, primary_key, buckets, batches)
            .await
            .map_err(|e| SqlError::invalid(format!("INSERT OVERWRITE {table}: {e}")))?;
        let pending = overwrite.commit;
        let name = base.identifier().name().to_string();
        if let Err(e) = self.backend.commit(table, &name, pending.requirements, pending.updates).await {
            for path in &pending.written_files {
                let _ = base.file_io().delete(path).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Dynamic partition overwrite: the new files replace every data file of the partitions
    /// they fall in (the whole table when unpartitioned).
    async fn overwrite(
        &self,
        table: &TableRef,
        store: &iceberg::table::Table,
        files: Vec<iceberg::spec::DataFile>,
    ) -> Result<()> {
        let metadata = store.metadata_ref();
        let unpartitioned = metadata.default_partition_spec().is_unpartitioned();
        let partitions: std::collections::HashSet<iceberg::spec::Struct> =
            files.iter().map(|f| f.partition().clone()).collect();
        let mut action = loch_table::snapshot::OverwriteFiles::new().add_files(files);
        if let Some(snapshot) = metadata.current_snapshot().cloned() {
            let live: Vec<loch_table::scan::LiveFile> =
                loch_table::scan::live_files(store.file_io().clone(), metadata.clone(), snapshot).try_collect().await?;
            for f in live {
                if !f.is_delete() && (unpartitioned || partitions.contains(f.file.partition())) {
                    action = action.delete_file(f.path());
                }
            }
        }
        write::commit(self.backend.as_ref(), table, store, action).await.map(|_| ())
    }
}

impl SqlEngine {
    /// `DELETE` (`set` = `None`) or `UPDATE` of the rows of `name` that `selection` matches.
    async fn row_level(
        &self,
        statement: &SqlStatement,
        name: &ObjectName,
        alias: Option<String>,
        selection: Option<String>,
        set: Option<Vec<(String, String)>>,
    ) -> Result<u64> {
        let (table, loaded) = self.load(name).await?;
        let schema = loaded.table().metadata().current_schema().clone();
        let columns: Vec<String> = schema.as_struct().fields().iter().map(|f| f.name.clone()).collect();
        let assignments = match &set {
            None => None,
            Some(set) => {
                let mut values: crate::dml::Assignments = vec![None; columns.len()];
                for (column, value) in set {
                    let i = columns
                        .iter()
                        .position(|c| c == column)
                        .ok_or_else(|| SqlError::invalid(format!("table {table} has no column {column}")))?;
                    if values[i].is_some() {
                        return Err(SqlError::invalid(format!("UPDATE sets column {column} twice")));
                    }
                    if loaded.primary_key().contains(column) {
                        return Err(SqlError::invalid(format!(
                            "UPDATE cannot change primary key column {column} of keyed table {table}; delete and insert instead"
                        )));
                    }
                    values[i] = Some(value.clone());
                }
                Some(values)
            }
        };
        let alias = alias.unwrap_or_else(|| table.name.clone());
        match &loaded {
            LoadedTable::Iceberg(store) => {
                let ctx = self.context(&DFStatement::Statement(Box::new(statement.clone()))).await?;
                let query = crate::dml::row_query(store, &alias, selection.as_deref(), assignments.as_ref());
                let kind = if assignments.is_some() { "UPDATE" } else { "DELETE" };
                crate::dml::iceberg_row_level(self.backend.as_ref(), &table, store, &ctx, kind, &query, Vec::new())
                    .await
            }
            LoadedTable::Keyed { .. } => {
                let quoted: Vec<String> = columns.iter().map(|c| ddl::quote(c)).collect();
                let mut items = quoted.clone();
                if let Some(values) = &assignments {
                    for (i, value) in values.iter().enumerate() {
                        items.push(match value {
                            Some(sql) => format!("{sql} AS __loch_new_{i}"),
                            None => format!("{} AS __loch_new_{i}", quoted[i]),
                        });
                    }
                }
                let filter = selection.map(|s| format!(" WHERE {s}")).unwrap_or_default();
                let sql = format!("SELECT {} FROM {name} AS {}{filter}", items.join(", "), ddl::quote(&alias));
                let parsed = parse_script(&sql)?;
                let Some(Statement::Sql(query)) = parsed.into_iter().next().map(|l| l.statement) else {
                    return Err(SqlError::invalid("cannot plan the rows to change"));
                };
                let (ctx, plan) = self.plan(&query).await?;
                let batches: Vec<RecordBatch> = ctx.execute_logical_plan(plan).await?.collect().await?;
                let target = write::table_arrow_schema(loaded.table())?;
                let n = columns.len();
                let mut changes = Vec::new();
                let mut count = 0u64;
                for batch in batches.iter().filter(|b| b.num_rows() > 0) {
                    count += batch.num_rows() as u64;
                    let before = write::conform(&batch.project(&(0..n).collect::<Vec<_>>())?, &target)?;
                    changes.push(match &assignments {
                        None => write::with_op(&before, "-D")?,
                        Some(_) => {
                            let after = write::conform(&batch.project(&(n..2 * n).collect::<Vec<_>>())?, &target)?;
                            write::update_pairs(&before, &after)?
                        }
                    });
                }
                if count > 0 {
                    self.backend.ingest(&table, changes).await?;
                }
                Ok(count)
            }
        }
    }
}

/// The table and alias of a `DELETE` / `UPDATE` target (no joins).
fn target_of(from: &TableWithJoins) -> Result<(ObjectName, Option<String>)> {
    if !from.joins.is_empty() {
        return Err(SqlError::invalid("DELETE and UPDATE change one table, without joins"));
    }
    table_target(&from.relation)
}

/// The table and alias of a row-level statement's target (`DELETE`, `UPDATE`, `MERGE`).
pub(crate) fn table_target(factor: &TableFactor) -> Result<(ObjectName, Option<String>)> {
    match factor {
        TableFactor::Table { name, alias, .. } => Ok((name.clone(), alias.as_ref().map(|a| normalize(&a.name)))),
        other => Err(SqlError::invalid(format!("{other} is not a table"))),
    }
}

/// For each target column, its position among `columns` (`None`: NULL).
fn column_order(columns: &[String], target: &SchemaRef) -> Result<Vec<Option<usize>>> {
    for c in columns {
        if target.index_of(c).is_err() {
            return Err(SqlError::invalid(format!("the table has no column {c}")));
        }
    }
    Ok(target.fields().iter().map(|f| columns.iter().position(|c| c == f.name())).collect())
}

fn reorder(batch: &RecordBatch, order: &[Option<usize>], target: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(order.len());
    let mut fields = Vec::with_capacity(order.len());
    for (position, field) in order.iter().zip(target.fields()) {
        match position {
            Some(i) => {
                let column = batch.columns().get(*i).cloned().ok_or_else(|| {
                    SqlError::invalid(format!(
                        "the statement gives {} columns, fewer than it names",
                        batch.num_columns()
                    ))
                })?;
                fields.push(Field::new(field.name(), column.data_type().clone(), true));
                columns.push(column);
            }
            None => {
                fields.push(Field::new(field.name(), field.data_type().clone(), true));
                columns.push(arrow_array::new_null_array(field.data_type(), batch.num_rows()));
            }
        }
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::new(ArrowSchema::new(fields)), columns, &options)?)
}

/// How often a write whose commit lost a race runs before its error is shown (Iceberg's
/// `commit.retry.num-retries` is 4, after the first attempt).
const COMMIT_ATTEMPTS: u32 = 5;

/// Whether a statement that lost a commit race may simply run again: a single commit that
/// recomputes everything from the table it reads (not DDL, whose first step may have landed).
fn retryable(statement: &SqlStatement) -> bool {
    matches!(
        statement,
        SqlStatement::Insert(_) | SqlStatement::Delete(_) | SqlStatement::Update { .. } | SqlStatement::Merge(_)
    )
}

/// The first words of a statement, to name it in an error.
fn first_words(statement: &SqlStatement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(3).collect();
    words.join(" ")
}

/// Identifiers as DataFusion normalizes them: unquoted ones lower-cased.
pub(crate) fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

pub(crate) fn parts(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(normalize(ident)),
            other => Err(SqlError::invalid(format!("{other} is not a name"))),
        })
        .collect()
}

fn single(name: &ObjectName, what: &str) -> Result<String> {
    match parts(name)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(SqlError::invalid(format!("{name} is not a {what} name"))),
    }
}

/// Namespace levels of a schema name (`a.b` when quoted as one identifier).
fn split_namespace(name: &str) -> Vec<String> {
    name.split('.').map(str::to_string).collect()
}
