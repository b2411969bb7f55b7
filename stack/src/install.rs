//! Finding, and when missing installing, the programs the stack runs.
//!
//! Debian packages are installed with apt-get when we are root; tansu with `cargo install`. Anything that
//! cannot be installed here yields an error that names the exact command to run.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The tansu release and features the stack is tested with.
pub const TANSU_VERSION: &str = "0.6.0";
pub const TANSU_INSTALL: &str =
    "cargo install tansu --version 0.6.0 --locked --features dynostore,libsql";

/// Which Debian package provides each program we run.
pub const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("mariadbd", "mariadb-server"),
    ("mariadb-install-db", "mariadb-server"),
    ("redis-server", "redis-server"),
    ("nginx", "nginx"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("chromium", "chromium"),
];

/// Looks `program` up on PATH and in the sbin directories (mariadbd lives in /usr/sbin, which a
/// non-root PATH often lacks).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .chain(cargo_bin_dir())
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn cargo_bin_dir() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds `program`, installing its Debian package first if it is missing and we may.
pub fn require(program: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = which(program) {
        return Ok(p);
    }
    let package = DEBIAN_PACKAGES
        .iter()
        .find(|(bin, _)| *bin == program)
        .map(|(_, pkg)| *pkg)
        .with_context(|| format!("{program} is not installed"))?;
    apt_install(&[package])?;
    which(program).with_context(|| format!("{program} still missing after installing {package}"))
}

/// `apt-get install -y` the packages (once per process, serialised).
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    static APT: Mutex<bool> = Mutex::new(false);
    let mut updated = APT
        .lock()
        .map_err(|_| anyhow::anyhow!("apt lock poisoned"))?;
    let command = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !is_root() {
        bail!("missing packages; run as root: {command}");
    }
    if !*updated {
        run(Command::new("apt-get").arg("update").arg("-q"))?;
        *updated = true;
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Finds tansu, building it with cargo if it is missing (about 8 minutes on 2 cores; done once).
pub fn tansu() -> anyhow::Result<PathBuf> {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
    if let Some(p) = which("tansu") {
        return Ok(p);
    }
    tracing::warn!("tansu is missing; building it: {TANSU_INSTALL}");
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "tansu", "--version", TANSU_VERSION, "--locked"])
        .args(["--features", "dynostore,libsql"]);
    run(&mut cmd).with_context(|| format!("installing tansu failed; try: {TANSU_INSTALL}"))?;
    which("tansu").context("tansu still missing after cargo install")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(())
}
