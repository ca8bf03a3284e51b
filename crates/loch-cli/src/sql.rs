//! `loch sql`: the SQL terminal against a Loch server — a REPL with history and multi-line
//! statements, or a script from `-e`/`-f`; answers printed as aligned tables, CSV or JSON.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use datafusion::arrow::util::pretty::pretty_format_batches;
use loch_sql::{HttpBackend, Output, SqlEngine, parse_script};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

/// Flags of `loch sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The server's base URL
    #[arg(long, short = 'a', value_name = "URL", default_value = "http://127.0.0.1:1630", env = "LOCH_AMS")]
    ams: String,
    /// Bearer token, when the server has authentication on
    #[arg(long, value_name = "TOKEN", env = "LOCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Catalog to start in
    #[arg(long, short = 'c', value_name = "CATALOG", default_value = "local")]
    catalog: String,
    /// Namespace to start in
    #[arg(long, short = 'n', value_name = "NAMESPACE", default_value = "default")]
    namespace: String,
    /// Run these statements and exit
    #[arg(long, short = 'e', value_name = "SQL", conflicts_with = "file")]
    execute: Option<String>,
    /// Run the statements of this file and exit
    #[arg(long, short = 'f', value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// How answers are printed
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table with a row count.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Runs `loch sql`.
pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    url::Url::parse(&args.ams).with_context(|| format!("--ams {:?} is not a URL", args.ams))?;
    let backend = Arc::new(HttpBackend::new(&args.ams, args.token.clone())?);
    let mut engine = SqlEngine::new(backend, args.catalog.clone());
    if args.namespace != "default" {
        engine.run(&format!("USE {}", args.namespace)).await?;
    }
    let script = match (&args.execute, &args.file) {
        (Some(sql), _) => Some(sql.clone()),
        (None, Some(path)) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        (None, None) => None,
    };
    match script {
        Some(sql) => run_script(&mut engine, &sql, args.format).await,
        None => repl(&mut engine, args.format).await,
    }
}

/// Runs a script, stopping at the first error (which is the command's error).
async fn run_script(engine: &mut SqlEngine, sql: &str, format: Format) -> anyhow::Result<()> {
    let statements = parse_script(sql).map_err(|e| anyhow::anyhow!("{e}"))?;
    for statement in statements {
        let output = engine
            .execute(&statement, None)
            .await
            .map_err(|e| anyhow::anyhow!("statement at line {}: {e}", statement.line))?;
        print_output(&output, format)?;
    }
    Ok(())
}

fn print_output(output: &Output, format: Format) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if output.schema.fields().is_empty() {
        if format == Format::Table {
            writeln!(stdout, "{}", output.summary)?;
        }
        return Ok(());
    }
    match format {
        Format::Table => {
            writeln!(stdout, "{}", pretty_format_batches(&output.batches)?)?;
            writeln!(stdout, "{}", output.summary)?;
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut stdout);
            for batch in &output.batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut stdout);
            for batch in &output.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

const HELP: &str = "\
statements end with ;   \\q quit   \\d list tables   \\d TABLE describe   \\dn list namespaces
\\c CATALOG switch catalog   \\? this help";

/// The interactive terminal: a statement runs once a line ends it with `;`.
async fn repl(engine: &mut SqlEngine, format: Format) -> anyhow::Result<()> {
    let mut editor = DefaultEditor::new().context("cannot start the line editor")?;
    let history = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".loch_sql_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    if std::io::stdin().is_terminal() {
        println!("loch sql — {HELP}");
    }
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            format!("loch:{}.{}> ", engine.catalog(), engine.namespace().join("."))
        } else {
            "      -> ".to_string()
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match helper(trimmed) {
                Helper::Quit => break,
                Helper::Help => println!("{HELP}"),
                Helper::Sql(sql) => run_interactive(engine, &sql, format).await,
                Helper::Unknown => eprintln!("unknown command {trimmed}; \\? lists them"),
            }
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if !buffer.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(sql.trim());
        run_interactive(engine, &sql, format).await;
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

enum Helper {
    Quit,
    Help,
    Sql(String),
    Unknown,
}

fn helper(command: &str) -> Helper {
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or_default();
    let arg = words.next();
    match (name, arg) {
        ("\\q", _) => Helper::Quit,
        ("\\?", _) => Helper::Help,
        ("\\d", None) => Helper::Sql("SHOW TABLES".into()),
        ("\\d", Some(table)) => Helper::Sql(format!("DESCRIBE {table}")),
        ("\\dn", _) => Helper::Sql("SHOW NAMESPACES".into()),
        ("\\c", Some(catalog)) => Helper::Sql(format!("USE CATALOG {catalog}")),
        _ => Helper::Unknown,
    }
}

/// Runs what the user typed; an error is printed as one line and the session goes on.
async fn run_interactive(engine: &mut SqlEngine, sql: &str, format: Format) {
    let statements = match parse_script(sql) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return;
        }
    };
    for statement in statements {
        let started = std::time::Instant::now();
        match engine.execute(&statement, None).await {
            Ok(output) => {
                if let Err(e) = print_output(&output, format) {
                    eprintln!("ERROR: {e}");
                }
                if format == Format::Table {
                    println!("({:.3} s)", started.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                eprintln!("ERROR: {e}");
                return;
            }
        }
    }
}
