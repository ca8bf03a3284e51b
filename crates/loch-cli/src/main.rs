//! The `loch` command.

mod optimizer;
mod serve;
mod sql;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Loch: a lakehouse management system for Apache Iceberg.
#[derive(Debug, Parser)]
#[command(name = "loch", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: Iceberg REST catalog, management API and metrics.
    Serve(serve::ServeArgs),
    /// Run an optimizer worker that executes optimizing tasks for a server's optimizer group.
    Optimizer(optimizer::OptimizerArgs),
    /// SQL terminal against a server: a REPL, or statements from -e / -f.
    Sql(sql::SqlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Optimizer(args) = &cli.command {
        match args.threads() {
            Ok(threads) => builder.worker_threads(threads as usize),
            Err(e) => {
                eprintln!("loch: {e:#}");
                return ExitCode::FAILURE;
            }
        };
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Optimizer(args) => optimizer::run(args).await,
            Command::Sql(args) => sql::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default: info for Loch, warn for libraries).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,loch=info,loch_server=info,loch_catalog=info,loch_meta=info,loch_optimizing=info,loch_optimizer=info",
        )
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
