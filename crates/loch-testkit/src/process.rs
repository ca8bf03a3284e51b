//! Running helper programs, and cleaning up after servers a test process started itself.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs a command to completion; fails with its output if it exits non-zero.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when this process runs as root (PostgreSQL refuses to run as root).
pub(crate) fn is_root() -> bool {
    run(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// Runs `cleanup` (a shell snippet) once this process has exited, from a detached watchdog.
///
/// Statics are never dropped in Rust, so a server started lazily for a test process would
/// outlive it; the watchdog polls our pid and stops the server after we are gone.
pub(crate) fn cleanup_after_exit(cleanup: &str) -> Result<()> {
    let pid = std::process::id();
    let script = format!("while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}");
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the cleanup watchdog")?;
    Ok(())
}
