//! The Python interpreter of the test venv (PyIceberg and pytest installed by `dev/test`).

use std::path::PathBuf;
use std::process::Command;

/// The venv's Python: `LOCH_TEST_PYTHON`, else `.venv/bin/python` in the workspace, if it can
/// import pyiceberg. `None` (after a loud skip message) otherwise.
pub fn python() -> Option<PathBuf> {
    let candidate = std::env::var("LOCH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::workspace_root().join(".venv/bin/python"));
    let works =
        Command::new(&candidate).args(["-c", "import pyiceberg, pytest"]).output().is_ok_and(|o| o.status.success());
    if works {
        Some(candidate)
    } else {
        crate::unavailable(
            "Python venv with pyiceberg",
            &format!("{} cannot import pyiceberg and pytest", candidate.display()),
        );
        None
    }
}
