//! The optimizer threads inside `loch serve`: the same worker loop as `loch optimizer`, on its
//! own runtime so that decoding and encoding Parquet never stalls request handling, talking to
//! the optimizing service in-process instead of over HTTP.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use loch_api::optimizer::{CompleteRequest, ProtocolError, RegisterRequest, RegisterResponse, TaskAssignment, TaskKey};
use loch_optimizer::{Coordinator, ExecuteError, WorkerConfig};
use loch_optimizing::{DEFAULT_GROUP, OptimizingError, OptimizingService};
use tokio::runtime::Handle;
use tokio::sync::watch;

/// Calls the service on the server's runtime (where its database connections live).
struct InProcess {
    service: Arc<OptimizingService>,
    server: Handle,
}

impl InProcess {
    async fn call<T, F>(&self, f: impl FnOnce(Arc<OptimizingService>) -> F) -> loch_optimizer::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, OptimizingError>> + Send + 'static,
    {
        match self.server.spawn(f(self.service.clone())).await {
            Ok(result) => result.map_err(worker_error),
            Err(e) => Err(ProtocolError::Server(format!("server task ended: {e}")).into()),
        }
    }
}

/// How a worker sees a service error: as it would over HTTP.
pub fn worker_error(e: OptimizingError) -> ExecuteError {
    e.protocol().into()
}

#[async_trait]
impl Coordinator for InProcess {
    async fn register(&self, request: &RegisterRequest) -> loch_optimizer::Result<RegisterResponse> {
        let request = request.clone();
        self.call(|s| async move { s.register(&request, true).await }).await
    }

    async fn touch(&self, token: &str) -> loch_optimizer::Result<()> {
        let token = token.to_string();
        self.call(|s| async move { s.touch(&token).await }).await
    }

    async fn poll(&self, token: &str, thread_id: u32) -> loch_optimizer::Result<Option<TaskAssignment>> {
        let token = token.to_string();
        self.call(move |s| async move { s.poll(&token, thread_id).await }).await
    }

    async fn ack(&self, token: &str, thread_id: u32, key: TaskKey) -> loch_optimizer::Result<()> {
        let token = token.to_string();
        self.call(move |s| async move { s.ack(&token, thread_id, &key).await }).await
    }

    async fn complete(&self, request: CompleteRequest) -> loch_optimizer::Result<()> {
        self.call(move |s| async move {
            let result = match (request.output, request.error) {
                (Some(output), None) => Ok(output),
                (_, Some(error)) => Err(error),
                (None, None) => Err("the optimizer reported neither output nor error".to_string()),
            };
            s.complete(&request.token, request.thread_id, &request.key, result).await
        })
        .await
    }
}

/// The running embedded optimizer.
pub struct EmbeddedOptimizer {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl EmbeddedOptimizer {
    /// Starts `threads` optimizer threads serving the `default` group; must be called on the
    /// server's runtime.
    pub fn start(service: Arc<OptimizingService>, threads: u32, task_delay: Option<Duration>) -> std::io::Result<Self> {
        let coordinator: Arc<dyn Coordinator> = Arc::new(InProcess { service, server: Handle::current() });
        let config = WorkerConfig {
            group: DEFAULT_GROUP.to_string(),
            threads,
            memory_mb: 0,
            properties: BTreeMap::from([("pid".to_string(), std::process::id().to_string())]),
            shutdown_grace: Duration::from_secs(2),
            task_delay,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads as usize)
            .thread_name("loch-optimizer")
            .enable_all()
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new().name("loch-optimizer-main".into()).spawn(move || {
            runtime.block_on(loch_optimizer::worker::run(coordinator, config, stopped));
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
        tracing::info!(threads, "embedded optimizer started");
        Ok(Self { stop, thread })
    }

    /// Stops the threads (running tasks get a short grace, then go back to the server).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}
