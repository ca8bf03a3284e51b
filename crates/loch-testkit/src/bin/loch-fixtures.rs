//! `loch-fixtures -- COMMAND...`: starts PostgreSQL and garage on 127.0.0.1, runs COMMAND
//! with `LOCH_TEST_*` variables pointing at them, stops both and exits with COMMAND's status.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use loch_testkit::garage::GarageServer;
use loch_testkit::postgres::PostgresServer;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loch-fixtures: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.iter().position(|a| a == "--") {
        Some(i) => &args[i + 1..],
        None => &args[..],
    };
    if command.is_empty() {
        bail!("usage: loch-fixtures -- COMMAND [ARGS...]");
    }
    let root = tempfile::Builder::new().prefix("loch-fixtures-").tempdir()?;

    eprintln!("loch-fixtures: starting PostgreSQL");
    let postgres = PostgresServer::start(&root.path().join("pg"), false)?;
    eprintln!("loch-fixtures: starting garage (S3)");
    let garage = match GarageServer::start(&root.path().join("garage")) {
        Ok(g) => g,
        Err(e) => {
            postgres.stop().ok();
            return Err(e);
        }
    };
    eprintln!("loch-fixtures: PostgreSQL on {}, S3 on {}", postgres.port, garage.s3.endpoint);

    let status = Command::new(&command[0])
        .args(&command[1..])
        .env("LOCH_TEST_POSTGRES_URL", &postgres.admin_url)
        .envs(garage.s3.env())
        .status()
        .with_context(|| format!("cannot run {}", command[0]));

    eprintln!("loch-fixtures: stopping servers");
    postgres.stop().ok();
    garage.stop().ok();
    let status = status?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}
