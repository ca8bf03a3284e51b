//! This process's CPU time and memory, from `/proc/self`, for benchmarks that measure work done
//! in-process (Loch's server or executor) beside peers measured the same way.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// CPU time (user + system) this process has used so far; zero where `/proc` is unreadable.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

/// Clock ticks per second of `/proc` times, asked of `getconf` once.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A line of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes; 0 when absent.
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The resident set's high-water mark, measured from a point in time: [`PeakRss::start`] resets
/// the kernel's mark (`/proc/self/clear_refs`), so earlier work does not count.
pub struct PeakRss {
    base: u64,
}

impl PeakRss {
    /// Resets the high-water mark to the current resident set and remembers it.
    pub fn start() -> Self {
        // Linux resets VmHWM to VmRSS on "5". Where it cannot, the mark may be an earlier,
        // higher peak: the growth then reads high, never low.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Self { base: status_bytes("VmRSS") }
    }

    /// How far the resident set rose above where it was at [`PeakRss::start`], in bytes.
    pub fn growth(&self) -> u64 {
        status_bytes("VmHWM").saturating_sub(self.base)
    }
}
