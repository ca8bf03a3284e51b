//! `loch optimizer`: an optimizer worker process serving one group of a `loch serve`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use loch_optimizer::{Coordinator, Credential, HttpCoordinator, WorkerConfig};
use tokio::sync::watch;

/// Flags of `loch optimizer`.
#[derive(Debug, Args)]
pub struct OptimizerArgs {
    /// The server's base URL, e.g. http://127.0.0.1:1630
    #[arg(long, short = 'a', value_name = "URL", env = "LOCH_OPTIMIZER_AMS")]
    ams: String,
    /// Optimizer group to serve
    #[arg(long, short = 'g', value_name = "GROUP", default_value = "default", env = "LOCH_OPTIMIZER_GROUP")]
    group: String,
    /// Executor threads, which are also all the cores the worker uses [default: number of cores]
    #[arg(long, short = 'p', value_name = "N", env = "LOCH_OPTIMIZER_THREADS")]
    threads: Option<u32>,
    /// Memory to report, in MiB
    #[arg(long, value_name = "MB", default_value_t = 0)]
    memory_mb: u64,
    /// When the server has authentication on: a bearer token, or a client credential `id:secret`
    #[arg(long, value_name = "TOKEN", env = "LOCH_OPTIMIZER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// On SIGTERM or Ctrl-C, let running tasks finish for this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
}

/// Test hook: the worker sleeps this many milliseconds after acknowledging each task.
const TASK_DELAY_VAR: &str = "LOCH_OPTIMIZER_TEST_TASK_DELAY_MS";

/// The test hook's delay, if set.
pub fn test_task_delay() -> anyhow::Result<Option<Duration>> {
    match std::env::var(TASK_DELAY_VAR) {
        Ok(ms) => Ok(Some(Duration::from_millis(ms.parse().with_context(|| format!("{TASK_DELAY_VAR}={ms}"))?))),
        Err(_) => Ok(None),
    }
}

impl OptimizerArgs {
    /// Executor threads; the runtime gets as many workers, so a task's parallel column encoding
    /// stays within what `--threads` grants (as the embedded optimizer's runtime does).
    pub fn threads(&self) -> anyhow::Result<u32> {
        let threads =
            self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        Ok(threads)
    }
}

/// Registers with the server and executes tasks until SIGINT or SIGTERM.
pub async fn run(args: OptimizerArgs) -> anyhow::Result<()> {
    let threads = args.threads()?;
    url::Url::parse(&args.ams).with_context(|| format!("--ams {:?} is not a URL", args.ams))?;
    let credential = args.token.as_deref().map(Credential::parse);
    let coordinator: Arc<dyn Coordinator> = Arc::new(HttpCoordinator::new(&args.ams, credential)?);
    let mut properties = BTreeMap::from([
        ("pid".to_string(), std::process::id().to_string()),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]);
    if let Ok(host) = std::env::var("HOSTNAME") {
        properties.insert("host".to_string(), host);
    }
    let config = WorkerConfig {
        group: args.group.clone(),
        threads,
        memory_mb: args.memory_mb,
        properties,
        shutdown_grace: args.shutdown_grace,
        task_delay: test_task_delay()?,
    };
    eprintln!("loch optimizer: serving group {} of {} with {threads} thread(s)", args.group, args.ams);
    let (stop, stopped) = watch::channel(false);
    let mut worker = tokio::spawn(loch_optimizer::worker::run(coordinator, config, stopped));
    let ending = tokio::select! {
        signal = crate::serve::wait_for_signal() => {
            signal?;
            eprintln!("loch optimizer: stopping");
            let _ = stop.send(true);
            (&mut worker).await
        }
        ending = &mut worker => ending,
    };
    if ending.context("the worker ended abnormally")? == loch_optimizer::worker::Ending::Released {
        eprintln!("loch optimizer: released by an operator on the server; stopped");
    }
    Ok(())
}
