//! Namespace rows: multi-level names with properties, nested under a parent namespace.

use std::collections::BTreeMap;

use sqlx::FromRow;

use crate::catalogs::{decode_properties, encode_properties};
use crate::error::{MetaError, Result, is_unique_violation};
use crate::page::{Page, PageRequest};
use crate::store::{MetaStore, on_pool};

/// Separator of namespace levels in stored names, as in the Iceberg REST spec's paths.
pub(crate) const LEVEL_SEPARATOR: char = '\u{1f}';

/// A stored namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRecord {
    /// Stable id; tables refer to it.
    pub id: i64,
    /// The catalog holding the namespace.
    pub catalog_id: i64,
    /// The namespace's levels, outermost first.
    pub levels: Vec<String>,
    /// Namespace properties.
    pub properties: BTreeMap<String, String>,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// Last property change (ms since epoch).
    pub updated_at: i64,
}

/// Outcome of a property update, as the Iceberg REST API reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyChanges {
    /// Keys set or replaced.
    pub updated: Vec<String>,
    /// Keys removed.
    pub removed: Vec<String>,
    /// Keys asked to be removed that were not set.
    pub missing: Vec<String>,
}

#[derive(FromRow)]
struct NamespaceRow {
    id: i64,
    catalog_id: i64,
    name: String,
    properties: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<NamespaceRow> for NamespaceRecord {
    type Error = MetaError;
    fn try_from(row: NamespaceRow) -> Result<Self> {
        Ok(Self {
            id: row.id,
            catalog_id: row.catalog_id,
            levels: split_name(&row.name),
            properties: decode_properties(&row.properties)?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The stored name of a namespace: its levels joined by U+001F.
pub(crate) fn join_name(levels: &[String]) -> String {
    levels.join(&LEVEL_SEPARATOR.to_string())
}

fn split_name(name: &str) -> Vec<String> {
    name.split(LEVEL_SEPARATOR).map(str::to_string).collect()
}

fn display(levels: &[String]) -> String {
    format!("namespace {}", levels.join("."))
}

impl MetaStore {
    /// Namespaces directly under `parent` (the top level when `parent` is empty), by name.
    pub async fn list_namespaces(
        &self,
        catalog_id: i64,
        parent: &[String],
        page: &PageRequest,
    ) -> Result<Page<NamespaceRecord>> {
        let parent = join_name(parent);
        let rows: Vec<NamespaceRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, catalog_id, name, properties, created_at, updated_at FROM namespaces \
                 WHERE catalog_id = $1 AND parent = $2 AND name > $3 ORDER BY name LIMIT $4",
            )
            .bind(catalog_id)
            .bind(&parent)
            .bind(page.sql_after())
            .bind(page.sql_limit())
            .fetch_all(pool)
            .await
        })?;
        let items = rows.into_iter().map(TryInto::try_into).collect::<Result<Vec<NamespaceRecord>>>()?;
        Ok(page.finish(items, |ns| join_name(&ns.levels)))
    }

    /// The namespace with these levels, if it exists.
    pub async fn get_namespace(&self, catalog_id: i64, levels: &[String]) -> Result<Option<NamespaceRecord>> {
        let name = join_name(levels);
        let row: Option<NamespaceRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, catalog_id, name, properties, created_at, updated_at FROM namespaces \
                 WHERE catalog_id = $1 AND name = $2",
            )
            .bind(catalog_id)
            .bind(&name)
            .fetch_optional(pool)
            .await
        })?;
        row.map(TryInto::try_into).transpose()
    }

    /// Creates a namespace. Its parent must exist ([`MetaError::NotFound`] otherwise); the name
    /// must be free ([`MetaError::AlreadyExists`]).
    pub async fn create_namespace(
        &self,
        catalog_id: i64,
        levels: &[String],
        properties: &BTreeMap<String, String>,
    ) -> Result<NamespaceRecord> {
        let name = join_name(levels);
        let parent = join_name(&levels[..levels.len().saturating_sub(1)]);
        let props = encode_properties(properties);
        let now = crate::now_ms();
        let result = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                if !parent.is_empty() {
                    let found: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM namespaces WHERE catalog_id = $1 AND name = $2")
                            .bind(catalog_id)
                            .bind(&parent)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if found.is_none() {
                        return Ok(None);
                    }
                }
                let row: NamespaceRow = sqlx::query_as(
                    "INSERT INTO namespaces (catalog_id, name, parent, properties, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) \
                     RETURNING id, catalog_id, name, properties, created_at, updated_at",
                )
                .bind(catalog_id)
                .bind(&name)
                .bind(&parent)
                .bind(&props)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Some(row))
            }
            .await
        });
        match result {
            Ok(Some(row)) => row.try_into(),
            Ok(None) => Err(MetaError::NotFound(display(&levels[..levels.len() - 1]))),
            Err(e) if is_unique_violation(&e) => Err(MetaError::AlreadyExists(display(levels))),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets and removes namespace properties in one transaction.
    pub async fn update_namespace_properties(
        &self,
        catalog_id: i64,
        levels: &[String],
        updates: &BTreeMap<String, String>,
        removals: &[String],
    ) -> Result<PropertyChanges> {
        let name = join_name(levels);
        let now = crate::now_ms();
        let changes = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let current: Option<String> =
                    sqlx::query_scalar("SELECT properties FROM namespaces WHERE catalog_id = $1 AND name = $2")
                        .bind(catalog_id)
                        .bind(&name)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(current) = current else { return Ok(None) };
                let mut properties = decode_properties(&current).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let mut changes = PropertyChanges::default();
                for key in removals {
                    if properties.remove(key).is_some() {
                        changes.removed.push(key.clone());
                    } else {
                        changes.missing.push(key.clone());
                    }
                }
                for (key, value) in updates {
                    properties.insert(key.clone(), value.clone());
                    changes.updated.push(key.clone());
                }
                sqlx::query(
                    "UPDATE namespaces SET properties = $1, updated_at = $2 WHERE catalog_id = $3 AND name = $4",
                )
                .bind(encode_properties(&properties))
                .bind(now)
                .bind(catalog_id)
                .bind(&name)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Some(changes))
            }
            .await
        })?;
        changes.ok_or_else(|| MetaError::NotFound(display(levels)))
    }

    /// Drops an empty namespace; [`MetaError::NotEmpty`] if it holds namespaces, tables or views.
    pub async fn drop_namespace(&self, catalog_id: i64, levels: &[String]) -> Result<()> {
        let name = join_name(levels);
        let result = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let children: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM namespaces WHERE catalog_id = $1 AND parent = $2")
                        .bind(catalog_id)
                        .bind(&name)
                        .fetch_one(&mut *tx)
                        .await?;
                if children > 0 {
                    return Ok(Err(MetaError::NotEmpty(format!(
                        "Namespace {} is not empty. Contains {children} namespace(s).",
                        display(levels)
                    ))));
                }
                let (tables, views): (i64, i64) = sqlx::query_as(
                    "SELECT COALESCE(SUM(CASE WHEN t.kind = 'table' THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN t.kind = 'view' THEN 1 ELSE 0 END), 0) \
                     FROM tables t JOIN namespaces n ON n.id = t.namespace_id WHERE n.catalog_id = $1 AND n.name = $2",
                )
                .bind(catalog_id)
                .bind(&name)
                .fetch_one(&mut *tx)
                .await?;
                if tables + views > 0 {
                    let contents = match (tables, views) {
                        (t, 0) => format!("{t} table(s)"),
                        (0, v) => format!("{v} view(s)"),
                        (t, v) => format!("{t} table(s) and {v} view(s)"),
                    };
                    return Ok(Err(MetaError::NotEmpty(format!(
                        "Namespace {} is not empty. Contains {contents}.",
                        display(levels)
                    ))));
                }
                let deleted = sqlx::query("DELETE FROM namespaces WHERE catalog_id = $1 AND name = $2")
                    .bind(catalog_id)
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(Err(MetaError::NotFound(display(levels))));
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Ok(()))
            }
            .await
        });
        result?
    }
}
