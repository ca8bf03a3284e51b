//! The worker loop: register, heartbeat, and per thread poll → ack → execute → complete.
//!
//! The same loop runs inside `loch serve` (talking to the service in-process) and as
//! `loch optimizer` (talking HTTP); a [`Coordinator`] is the difference. When the server forgets
//! the optimizer (it restarted with a lost registration, or heartbeats stopped for too long),
//! the worker registers again and carries on. When an operator releases it, it stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use loch_api::optimizer::{CompleteRequest, RegisterRequest, RegisterResponse, TaskAssignment, TaskKey};
use tokio::sync::{RwLock, watch};

use crate::error::{ExecuteError, Result};
use crate::executor::execute;

/// The server side of the optimizer protocol.
#[async_trait]
pub trait Coordinator: Send + Sync {
    /// Joins a group.
    async fn register(&self, request: &RegisterRequest) -> Result<RegisterResponse>;
    /// Heartbeat.
    async fn touch(&self, token: &str) -> Result<()>;
    /// Long-polls a task.
    async fn poll(&self, token: &str, thread_id: u32) -> Result<Option<TaskAssignment>>;
    /// Starts a task.
    async fn ack(&self, token: &str, thread_id: u32, key: TaskKey) -> Result<()>;
    /// Reports a result.
    async fn complete(&self, request: CompleteRequest) -> Result<()>;
}

/// What a worker offers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Optimizer group.
    pub group: String,
    /// Executor threads.
    pub threads: u32,
    /// Memory, in MiB (reported).
    pub memory_mb: u64,
    /// Reported properties.
    pub properties: BTreeMap<String, String>,
    /// On stop, running tasks get this long to finish before they are abandoned (the server
    /// hands abandoned tasks out again).
    pub shutdown_grace: Duration,
    /// Test hook: sleep this long after acknowledging each task, so tests can kill a worker
    /// mid-task.
    pub task_delay: Option<Duration>,
}

/// Why a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its owner asked it to stop.
    Stopped,
    /// An operator released it on the server.
    Released,
}

struct Shared {
    coordinator: Arc<dyn Coordinator>,
    config: WorkerConfig,
    token: RwLock<Option<String>>,
    heartbeat: RwLock<Duration>,
    /// Set when the server says this optimizer was released: every loop ends.
    released: watch::Sender<bool>,
}

impl Shared {
    /// The current token, registering first when there is none.
    async fn token(&self, stop: &watch::Receiver<bool>) -> Option<String> {
        let mut backoff = Duration::from_millis(500);
        loop {
            if let Some(token) = self.token.read().await.clone() {
                return Some(token);
            }
            if *stop.borrow() {
                return None;
            }
            let mut slot = self.token.write().await;
            if slot.is_some() {
                continue;
            }
            let request = RegisterRequest {
                group: self.config.group.clone(),
                threads: self.config.threads,
                memory_mb: self.config.memory_mb,
                properties: self.config.properties.clone(),
            };
            match self.coordinator.register(&request).await {
                Ok(response) => {
                    tracing::info!(group = %self.config.group, threads = self.config.threads, "registered with the server");
                    *self.heartbeat.write().await = Duration::from_millis(response.heartbeat_interval_ms.max(100));
                    *slot = Some(response.token.clone());
                    return Some(response.token);
                }
                Err(e) => {
                    drop(slot);
                    tracing::warn!(error = %e, "cannot register; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Ends the worker: an operator released it.
    fn release(&self) {
        if !self.released.send_replace(true) {
            tracing::warn!(group = %self.config.group, "released by an operator; stopping");
        }
    }

    /// Forgets `token` (the server no longer knows it).
    async fn forget(&self, token: &str) {
        let mut slot = self.token.write().await;
        if slot.as_deref() == Some(token) {
            *slot = None;
        }
    }
}

/// Runs a worker until `stop` turns true or an operator releases it; running tasks get the
/// shutdown grace to finish.
pub async fn run(coordinator: Arc<dyn Coordinator>, config: WorkerConfig, outer: watch::Receiver<bool>) -> Ending {
    let (released, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        coordinator,
        config,
        token: RwLock::new(None),
        heartbeat: RwLock::new(Duration::from_secs(10)),
        released,
    });
    // One signal for the loops: stopped by the owner, or released.
    let (halt, stop) = watch::channel(false);
    {
        let (mut outer, mut released) = (outer, shared.released.subscribe());
        tokio::spawn(async move {
            tokio::select! {
                _ = outer.wait_for(|s| *s) => {}
                _ = released.wait_for(|r| *r) => {}
            }
            let _ = halt.send(true);
        });
    }
    let mut handles = Vec::new();
    {
        let shared = shared.clone();
        let mut stop = stop.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let Some(token) = shared.token(&stop).await else { break };
                let interval = *shared.heartbeat.read().await;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => break,
                }
                match shared.coordinator.touch(&token).await {
                    Ok(()) => {}
                    Err(ExecuteError::Unregistered) => shared.forget(&token).await,
                    Err(ExecuteError::Released) => shared.release(),
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        }));
    }
    for thread_id in 0..shared.config.threads {
        let shared = shared.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move { thread_loop(shared, thread_id, stop).await }));
    }
    let mut stopped = stop;
    let _ = stopped.wait_for(|s| *s).await;
    let grace = tokio::time::sleep(shared.config.shutdown_grace);
    tokio::pin!(grace);
    for mut handle in handles {
        tokio::select! {
            _ = &mut handle => {}
            _ = &mut grace => {
                tracing::warn!("stopping with tasks still running; the server will hand them out again");
                handle.abort();
            }
        }
    }
    if *shared.released.borrow() { Ending::Released } else { Ending::Stopped }
}

async fn thread_loop(shared: Arc<Shared>, thread_id: u32, stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    while !*stop.borrow() {
        let Some(token) = shared.token(&stop).await else { break };
        match shared.coordinator.poll(&token, thread_id).await {
            Ok(Some(task)) => {
                backoff = Duration::from_millis(200);
                run_task(&shared, &token, thread_id, task).await;
            }
            Ok(None) => backoff = Duration::from_millis(200),
            Err(ExecuteError::Unregistered) => shared.forget(&token).await,
            Err(ExecuteError::Released) => shared.release(),
            Err(e) => {
                tracing::warn!(thread_id, error = %e, "poll failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn run_task(shared: &Shared, token: &str, thread_id: u32, task: TaskAssignment) {
    let key = task.key;
    if let Err(e) = shared.coordinator.ack(token, thread_id, key).await {
        if matches!(e, ExecuteError::Released) {
            shared.release();
        }
        tracing::warn!(?key, error = %e, "the server did not accept the acknowledgement; skipping the task");
        return;
    }
    if let Some(delay) = shared.config.task_delay {
        tokio::time::sleep(delay).await;
    }
    tracing::info!(table = %task.input.table, ?key, "executing task");
    let result = execute(&task.input).await;
    let (output, error) = match result {
        Ok(output) => (Some(output), None),
        Err(e) => {
            tracing::warn!(?key, error = %e, "task failed");
            (None, Some(e.to_string()))
        }
    };
    let request = CompleteRequest { token: token.to_string(), thread_id, key, output, error };
    // A completion is worth retrying for a while: the work is done.
    let mut backoff = Duration::from_millis(200);
    for _ in 0..10 {
        match shared.coordinator.complete(request.clone()).await {
            Ok(()) => return,
            Err(ExecuteError::Unregistered | ExecuteError::Released) => {
                tracing::warn!(?key, "the server forgot this optimizer; the task will be handed out again");
                return;
            }
            Err(ExecuteError::Rejected(message)) => {
                tracing::warn!(?key, %message, "the server rejected the result");
                return;
            }
            Err(e) => {
                tracing::warn!(?key, error = %e, "cannot report the result; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
