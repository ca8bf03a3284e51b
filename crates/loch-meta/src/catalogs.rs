//! Catalog rows: a name, a kind and the catalog's properties (warehouse, storage settings,
//! table defaults).

use std::collections::BTreeMap;

use sqlx::FromRow;

use crate::error::{MetaError, Result, is_unique_violation};
use crate::store::{MetaStore, on_pool};

/// A stored catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRecord {
    /// Stable id; namespaces and tables refer to it.
    pub id: i64,
    /// Unique name; the Iceberg REST `warehouse` parameter and URL prefix.
    pub name: String,
    /// Catalog kind, e.g. `internal`.
    pub kind: String,
    /// Catalog properties.
    pub properties: BTreeMap<String, String>,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// Last change of the properties (ms since epoch); also versions cached storage clients.
    pub updated_at: i64,
}

/// What is needed to create a catalog.
#[derive(Debug, Clone)]
pub struct NewCatalog {
    /// Unique name.
    pub name: String,
    /// Catalog kind.
    pub kind: String,
    /// Catalog properties.
    pub properties: BTreeMap<String, String>,
}

#[derive(FromRow)]
struct CatalogRow {
    id: i64,
    name: String,
    kind: String,
    properties: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<CatalogRow> for CatalogRecord {
    type Error = MetaError;
    fn try_from(row: CatalogRow) -> Result<Self> {
        Ok(Self {
            properties: decode_properties(&row.properties)?,
            id: row.id,
            name: row.name,
            kind: row.kind,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Decodes a JSON object of strings as stored in `properties` columns.
pub(crate) fn decode_properties(json: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(json).map_err(|e| MetaError::Corrupt(format!("properties: {e}")))
}

/// Encodes properties for a `properties` column.
pub(crate) fn encode_properties(properties: &BTreeMap<String, String>) -> String {
    // A map of strings always serializes.
    serde_json::to_string(properties).unwrap_or_else(|_| "{}".to_string())
}

impl MetaStore {
    /// All catalogs, ordered by name.
    pub async fn list_catalogs(&self) -> Result<Vec<CatalogRecord>> {
        let rows: Vec<CatalogRow> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, name, kind, properties, created_at, updated_at FROM catalogs ORDER BY name")
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The catalog called `name`, if any.
    pub async fn get_catalog(&self, name: &str) -> Result<Option<CatalogRecord>> {
        let row: Option<CatalogRow> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, name, kind, properties, created_at, updated_at FROM catalogs WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
        })?;
        row.map(TryInto::try_into).transpose()
    }

    /// The catalog with this id, if any.
    pub async fn get_catalog_by_id(&self, id: i64) -> Result<Option<CatalogRecord>> {
        let row: Option<CatalogRow> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, name, kind, properties, created_at, updated_at FROM catalogs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        row.map(TryInto::try_into).transpose()
    }

    /// Creates a catalog; fails with [`MetaError::AlreadyExists`] if the name is taken.
    pub async fn create_catalog(&self, new: &NewCatalog) -> Result<CatalogRecord> {
        let now = crate::now_ms();
        let props = encode_properties(&new.properties);
        let row: std::result::Result<CatalogRow, sqlx::Error> = on_pool!(self, write, |pool| {
            sqlx::query_as(
                "INSERT INTO catalogs (name, kind, properties, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                 RETURNING id, name, kind, properties, created_at, updated_at",
            )
            .bind(&new.name)
            .bind(&new.kind)
            .bind(&props)
            .bind(now)
            .fetch_one(pool)
            .await
        });
        match row {
            Ok(row) => row.try_into(),
            Err(e) if is_unique_violation(&e) => Err(MetaError::AlreadyExists(format!("catalog {}", new.name))),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a catalog's properties.
    pub async fn update_catalog(&self, name: &str, properties: &BTreeMap<String, String>) -> Result<CatalogRecord> {
        let now = crate::now_ms();
        let props = encode_properties(properties);
        let row: Option<CatalogRow> = on_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE catalogs SET properties = $1, updated_at = $2 WHERE name = $3 \
                 RETURNING id, name, kind, properties, created_at, updated_at",
            )
            .bind(&props)
            .bind(now)
            .bind(name)
            .fetch_optional(pool)
            .await
        })?;
        row.ok_or_else(|| MetaError::NotFound(format!("catalog {name}")))?.try_into()
    }

    /// Deletes a catalog and its namespaces; refused with [`MetaError::NotEmpty`] while it
    /// holds tables or views, or dropped tables' files are still being purged.
    pub async fn delete_catalog(&self, name: &str) -> Result<()> {
        let result = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let id: Option<i64> = sqlx::query_scalar("SELECT id FROM catalogs WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(id) = id else { return Ok(None) };
                let tables: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM tables WHERE catalog_id = $1) \
                     + (SELECT COUNT(*) FROM purges WHERE catalog_id = $1)",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if tables > 0 {
                    return Ok(Some(false));
                }
                sqlx::query("DELETE FROM namespaces WHERE catalog_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM catalogs WHERE id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Some(true))
            }
            .await
        });
        match result {
            Ok(Some(true)) => Ok(()),
            Ok(Some(false)) => {
                Err(MetaError::NotEmpty(format!("catalog {name} still has tables, views or purges in progress")))
            }
            Ok(None) => Err(MetaError::NotFound(format!("catalog {name}"))),
            Err(e) => Err(e.into()),
        }
    }
}
