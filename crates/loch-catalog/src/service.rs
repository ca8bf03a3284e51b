//! The catalog service: shared state behind every catalog operation.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use loch_meta::{CatalogRecord, MetaStore};
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

use crate::error::{CatalogError, Result};
use crate::metadata::MetadataCache;
use crate::storage::Warehouse;
use crate::storage::policy::ReadLimits;

/// Tuning of the catalog service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// How often a commit that lost the pointer race is re-applied to the new base before the
    /// client gets a 409.
    pub commit_retries: u32,
    /// Memory for parsed metadata kept in memory (estimated as four times its JSON). The
    /// default, 64 MiB, holds thousands of tables' metadata while a server with 10,000 tables
    /// stays well under 256 MB.
    pub metadata_cache_bytes: u64,
    /// Limits on reading a metadata file (size, time).
    pub read_limits: ReadLimits,
    /// How long a drop with purge waits for the purge before answering (it goes on in the
    /// background after that).
    pub purge_wait: std::time::Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            commit_retries: 4,
            metadata_cache_bytes: 64 << 20,
            read_limits: ReadLimits::default(),
            purge_wait: std::time::Duration::from_secs(10),
        }
    }
}

/// A catalog resolved by name, with its storage.
#[derive(Debug, Clone)]
pub struct ResolvedCatalog {
    /// The stored catalog.
    pub record: CatalogRecord,
    /// Its warehouse.
    pub warehouse: Arc<Warehouse>,
}

/// The catalog service. Every writer of table metadata inside Loch goes through it.
#[derive(Debug)]
pub struct CatalogService {
    pub(crate) store: MetaStore,
    pub(crate) options: ServiceOptions,
    pub(crate) metadata: MetadataCache,
    warehouses: Mutex<HashMap<i64, (i64, Arc<Warehouse>)>>,
    catalogs: moka::sync::Cache<String, CatalogRecord>,
    commit_locks: Vec<AsyncMutex<()>>,
    commits: tokio::sync::broadcast::Sender<i64>,
    /// Held while a catalog's warehouse is checked against the others and stored.
    pub(crate) warehouse_claims: AsyncMutex<()>,
    /// Purges running in this process (a purge runs once at a time).
    pub(crate) purging: Mutex<std::collections::HashSet<i64>>,
    /// Wakes the background purger.
    pub(crate) purge_wake: tokio::sync::Notify,
}

/// How long a catalog looked up by name is trusted; catalog changes made through this process
/// apply at once, changes made through another replica within this time.
const CATALOG_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

const COMMIT_LOCK_STRIPES: usize = 256;

impl CatalogService {
    /// A service over `store`.
    pub fn new(store: MetaStore, options: ServiceOptions) -> Self {
        Self {
            metadata: MetadataCache::new(options.metadata_cache_bytes, options.read_limits),
            store,
            options,
            warehouses: Mutex::new(HashMap::new()),
            catalogs: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(CATALOG_CACHE_TTL).build(),
            commit_locks: (0..COMMIT_LOCK_STRIPES).map(|_| AsyncMutex::new(())).collect(),
            commits: tokio::sync::broadcast::channel(8192).0,
            warehouse_claims: AsyncMutex::new(()),
            purging: Mutex::new(std::collections::HashSet::new()),
            purge_wake: tokio::sync::Notify::new(),
        }
    }

    /// Ids of tables and views as their pointers change: commits, creates, registers, view
    /// replacements (self-optimizing looks at them at once instead of at its next check).
    pub fn subscribe_commits(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.commits.subscribe()
    }

    /// Announces a commit to `table_id`.
    pub(crate) fn announce_commit(&self, table_id: i64) {
        let _ = self.commits.send(table_id);
    }

    /// The metadata store.
    pub fn store(&self) -> &MetaStore {
        &self.store
    }

    /// Looks up a catalog by name (briefly cached, as every request does it); its storage
    /// client is built once per catalog version.
    pub async fn resolve(&self, name: &str) -> Result<ResolvedCatalog> {
        let record = match self.catalogs.get(name) {
            Some(record) => record,
            None => {
                let record =
                    self.store.get_catalog(name).await?.ok_or_else(|| CatalogError::NoSuchCatalog(name.to_string()))?;
                self.catalogs.insert(name.to_string(), record.clone());
                record
            }
        };
        let warehouse = self.warehouse_of(&record)?;
        Ok(ResolvedCatalog { record, warehouse })
    }

    /// Forgets a cached catalog after it changed.
    pub(crate) fn forget_catalog(&self, name: &str) {
        self.catalogs.invalidate(name);
    }

    pub(crate) fn warehouse_of(&self, record: &CatalogRecord) -> Result<Arc<Warehouse>> {
        let mut cache =
            self.warehouses.lock().map_err(|_| CatalogError::Internal("warehouse cache poisoned".into()))?;
        if let Some((version, warehouse)) = cache.get(&record.id)
            && *version == record.updated_at
        {
            return Ok(warehouse.clone());
        }
        let warehouse = Warehouse::from_properties(&record.properties)?;
        cache.insert(record.id, (record.updated_at, warehouse.clone()));
        Ok(warehouse)
    }

    /// Serializes commits to the same tables inside this process, so racing writers queue
    /// instead of wasting metadata writes; across processes the pointer compare-and-swap
    /// decides. Keys are locked in a fixed order, so multi-table commits cannot deadlock.
    pub(crate) async fn lock_tables<'a>(&'a self, keys: impl IntoIterator<Item = String>) -> Vec<MutexGuard<'a, ()>> {
        let mut stripes: Vec<usize> = keys
            .into_iter()
            .map(|key| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % COMMIT_LOCK_STRIPES as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.commit_locks[stripe].lock().await);
        }
        guards
    }
}

/// Key of a table for [`CatalogService::lock_tables`].
pub(crate) fn table_key(catalog_id: i64, namespace: &[String], name: &str) -> String {
    format!("{catalog_id}\u{1f}{}\u{1f}{name}", namespace.join("\u{1f}"))
}
