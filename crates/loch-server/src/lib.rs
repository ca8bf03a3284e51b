//! Loch's HTTP server: the Iceberg REST catalog (`/api/iceberg/rest`), the management API
//! (`/api/v1`), Prometheus metrics (`/metrics`) and the health check (`/health`).
//!
//! [`start`] connects the metadata store, creates the default catalog on first start, binds the
//! listener and serves until [`RunningServer::shutdown`].

pub mod auth;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod http;
pub mod keyed;
pub mod management;
pub mod observability;
pub mod optimizing;
pub mod rest;
pub mod state;
pub mod terminal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use loch_catalog::CatalogService;
use loch_meta::{MetaStore, StoreOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use config::Config;

use crate::auth::Auth;
use crate::state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The metadata store could not be opened.
    #[error(transparent)]
    Meta(#[from] loch_meta::MetaError),
    /// The default catalog could not be created.
    #[error("cannot create the default catalog: {0}")]
    Catalog(#[from] loch_catalog::CatalogError),
    /// Self-optimizing could not start.
    #[error("cannot start self-optimizing: {0}")]
    Optimizing(#[from] loch_optimizing::OptimizingError),
    /// The embedded optimizer threads could not start.
    #[error("cannot start the embedded optimizer: {0}")]
    Optimizer(std::io::Error),
    /// The terminal's threads could not start.
    #[error("cannot start the SQL terminal's threads: {0}")]
    Terminal(std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A server that is serving; stop it with [`RunningServer::shutdown`].
pub struct RunningServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    optimizer: Option<optimizing::embedded::EmbeddedOptimizer>,
    store: MetaStore,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the server, e.g. `http://127.0.0.1:1630`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, stops the embedded optimizer (its running tasks are
    /// handed out again after a restart), lets in-flight requests finish, closes the database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        if let Some(optimizer) = self.optimizer {
            optimizer.stop().await;
        }
        for handle in self.background {
            let _ = handle.await;
        }
        let result = self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.store.close().await;
        result
    }
}

/// Builds the router over `state`, with the HTTP layer's `limits`.
pub fn router(state: AppState, limits: http::HttpLimits) -> Router {
    let budget = http::BodyBudget::new(limits);
    let protected = Router::new()
        .nest("/api/iceberg/rest", rest::protected_routes())
        .merge(management::routes())
        .merge(keyed::routes(limits))
        .merge(optimizing::api::routes())
        .merge(optimizing::protocol::routes())
        .merge(terminal::routes())
        .route("/metrics", get(observability::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    let public = Router::new()
        .nest("/api/iceberg/rest", rest::public_routes())
        .route("/health", get(observability::health))
        .merge(dashboard::routes(state.clone()));
    protected
        .merge(public)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(middleware::from_fn(observability::track_requests))
        .layer(middleware::from_fn(move |request, next| http::read_body(budget.clone(), request, next)))
        .layer(DefaultBodyLimit::max(usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX)))
        .layer(middleware::from_fn(http::with_request_id))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

/// Starts a server with `config`.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| ServerError::DataDir { path: config.data_dir.clone(), source })?;
    let store_options = StoreOptions { max_connections: config.database.max_connections, ..StoreOptions::default() };
    let store = MetaStore::connect(&config.database_url(), &store_options).await?;
    let catalogs = Arc::new(CatalogService::new(store.clone(), config.catalog.service_options()));
    if !config.catalog.default_name.is_empty() {
        let warehouse = config
            .default_warehouse()
            .map_err(|source| ServerError::DataDir { path: config.data_dir.clone(), source })?;
        catalogs.ensure_catalog(&config.catalog.default_name, &warehouse).await?;
    }
    let auth = Arc::new(Auth::new(&config.auth, store.clone()));
    if !auth.enabled() && !config.bind.ip().is_loopback() {
        tracing::warn!(
            bind = %config.bind,
            "listening on a non-loopback address without authentication: anyone who can reach it can change every table; configure auth.clients"
        );
    }
    let optimizing = loch_optimizing::OptimizingService::new(catalogs.clone(), config.optimizing()).await?;
    let state = AppState {
        optimizing: optimizing.clone(),
        catalogs,
        auth: auth.clone(),
        metrics: observability::prometheus(),
        default_catalog: config.catalog.default_name.clone().into(),
        terminal: terminal::Terminal::new(config.terminal.clone()).map_err(ServerError::Terminal)?,
        dashboard: Arc::new(dashboard::Dashboard::new(&config)),
    };

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServerError::Bind { addr: config.bind, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.bind, source })?;
    state.terminal.listening_on(addr);
    let (stop, stopped) = watch::channel(false);

    let mut purge_stop = stop.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = tick.tick() => auth.purge_expired().await,
                _ = purge_stop.changed() => break,
            }
        }
    });

    // The overview's size and file counts over time: a sample a minute.
    let (sample_state, mut sample_stop) = (state.clone(), stop.subscribe());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => dashboard::pages::overview::sample(&sample_state).await,
                _ = sample_stop.changed() => break,
            }
        }
    });

    optimizing.recover().await?;
    let mut background = optimizing.spawn_background(stop.subscribe());
    background.push(state.catalogs.spawn_purger(stop.subscribe()));
    let optimizer = match config.optimizer.local_threads {
        0 => None,
        threads => Some(
            optimizing::embedded::EmbeddedOptimizer::start(optimizing, threads, config.optimizer.test_task_delay)
                .map_err(ServerError::Optimizer)?,
        ),
    };

    let limits = config.http.limits();
    let app = router(state, limits);
    let task = tokio::spawn(http::serve(listener, app, limits, stopped));
    tracing::info!(%addr, "Loch is serving");
    Ok(RunningServer { addr, stop, task, background, optimizer, store })
}
