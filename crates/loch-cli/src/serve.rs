//! `loch serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use loch_server::Config;

/// Flags of `loch serve`; they override the config file and `LOCH_*` variables.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the embedded database and the default warehouse [default: ./loch-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:1630]
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// YAML configuration file
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Loads the configuration, serves until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    config.optimizer.test_task_delay = crate::optimizer::test_task_delay()?;
    config.maintenance.test_delete_pause = test_delete_pause()?;
    let default_catalog = config.catalog.default_name.clone();
    let auth = !config.auth.clients.is_empty();
    let server = loch_server::start(config).await.context("cannot start the server")?;
    print_banner(&server.url(), &default_catalog, auth);

    wait_for_signal().await?;
    eprintln!("loch: shutting down");
    server.shutdown().await.context("error while shutting down")?;
    Ok(())
}

fn print_banner(url: &str, catalog: &str, auth: bool) {
    let catalog = if catalog.is_empty() { "<catalog name>" } else { catalog };
    let credential = if auth { ", credential=\"<client-id>:<secret>\"" } else { "" };
    println!(
        "Loch {version} is listening on {url}\n\
         \n  Iceberg REST catalog  {url}/api/iceberg/rest   (warehouse = catalog name, e.g. {catalog})\
         \n  Management API        {url}/api/v1/catalogs    (OpenAPI: {url}/api/v1/openapi.json)\
         \n  Optimizer protocol    {url}/api/optimizer/v1   (loch optimizer --ams {url} --group default)\
         \n  Metrics               {url}/metrics\
         \n\nConnect PyIceberg:\
         \n  from pyiceberg.catalog import load_catalog\
         \n  catalog = load_catalog(\"loch\", type=\"rest\", uri=\"{url}/api/iceberg/rest\", warehouse=\"{catalog}\"{credential})\
         \n\nPress Ctrl-C to stop.",
        version = env!("CARGO_PKG_VERSION"),
    );
}

pub async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Test hook: `LOCH_MAINTENANCE_TEST_DELETE_PAUSE_MS` makes maintenance pause after each batch
/// of deletions, so that a test can kill the server in the middle of one.
fn test_delete_pause() -> anyhow::Result<Option<std::time::Duration>> {
    const VAR: &str = "LOCH_MAINTENANCE_TEST_DELETE_PAUSE_MS";
    match std::env::var(VAR) {
        Ok(ms) => Ok(Some(std::time::Duration::from_millis(ms.parse().with_context(|| format!("{VAR}={ms}"))?))),
        Err(_) => Ok(None),
    }
}
