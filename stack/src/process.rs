//! Supervised child processes.
//!
//! Test instances must not outlive the test binary, even when it is killed: on Linux they are spawned
//! with `PR_SET_PDEATHSIG`. Linux sends that signal when the *thread* that forked the child exits, so every
//! tied child is forked from one spawner thread that lives as long as the process. Other systems (macOS,
//! where payctl runs the Docker runtime) have no such signal: there a tied child is stopped by its
//! `Drop` only, and one left by a killed test binary must be stopped by hand.

use anyhow::{bail, Context};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when this process ends (tests).
    TiedToThisProcess,
    /// Keeps running in its own session after this process ends (`payctl up`).
    Detached,
}

/// A running service process with its log file.
#[derive(Debug)]
pub struct Supervised {
    pub name: String,
    pub pid: u32,
    pub log_path: PathBuf,
    child: Option<Child>,
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("payctl-stack-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop only ends with the process.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(tx)
    })
}

impl Supervised {
    /// Starts `command` with stdout and stderr appended to `log_path`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log_path: &Path,
        lifetime: Lifetime,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = match lifetime {
            Lifetime::TiedToThisProcess => {
                tie_to_this_process(&mut command);
                let (reply_tx, reply_rx) = mpsc::channel();
                spawner()
                    .lock()
                    .map_err(|_| anyhow::anyhow!("spawner lock poisoned"))?
                    .send((command, reply_tx))
                    .map_err(|_| anyhow::anyhow!("spawner thread is gone"))?;
                reply_rx.recv()?
            }
            Lifetime::Detached => {
                // SAFETY: setsid is async-signal-safe.
                unsafe {
                    command.pre_exec(|| {
                        if libc::setsid() < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                command.spawn()
            }
        }
        .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            pid: child.id(),
            log_path: log_path.to_owned(),
            child: Some(child),
        })
    }

    /// Adopts a process started earlier (from a pid file), for `payctl down`.
    pub fn adopt(name: &str, pid: u32, log_path: &Path) -> Self {
        Self {
            name: name.to_owned(),
            pid,
            log_path: log_path.to_owned(),
            child: None,
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => pid_alive(self.pid),
        }
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL. Returns once the process is gone.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.kill()
    }

    /// SIGKILL, for tests of crashes and for stubborn processes.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running() {
            if Instant::now() > deadline {
                bail!("{} (pid {}) did not die after SIGKILL", self.name, self.pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with a pid we started; a stale pid at worst yields ESRCH.
        unsafe {
            libc::kill(self.pid as libc::pid_t, signal);
        }
    }

    /// The last `n` lines of this service's log, to show when it fails.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        log_tail(&self.log_path, n)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Reap tied children so they do not linger as zombies; detached ones are left running on purpose.
        if let Some(child) = &mut self.child {
            let _ = child.try_wait();
        }
    }
}

pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    if !alive {
        return false;
    }
    // A zombie still "exists": look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// The last `n` lines of a log file (all of them for `usize::MAX`): read from the end in growing
/// windows until they hold `n` whole lines; bytes that are not UTF-8 (a window starting inside a
/// character, a binary write) come out as U+FFFD rather than ending the read.
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        // A window that starts mid-file starts mid-line: that first piece is not a line.
        if start > 0 && !lines.is_empty() {
            lines.remove(0);
        }
        if start == 0 || lines.len() >= n {
            return lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| l.to_string())
                .collect();
        }
        window = window.saturating_mul(4);
    }
}

/// Polls `ready` until it returns true, the process dies, or `timeout` passes.
pub fn wait_ready(
    process: &mut Supervised,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if !process.is_running() {
            bail!(
                "{} exited during start-up; last log lines:\n{}",
                process.name,
                process.log_tail(20).join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} was not ready after {:?}; last log lines:\n{}",
                process.name,
                timeout,
                process.log_tail(20).join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes `command`'s process die with ours (Linux: the parent-death signal).
#[cfg(target_os = "linux")]
fn tie_to_this_process(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// No parent-death signal outside Linux: the child is stopped by `Drop` (see the module's doc).
#[cfg(not(target_os = "linux"))]
fn tie_to_this_process(_command: &mut Command) {}
