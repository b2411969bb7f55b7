//! Build script of payctl, pay-server and pay-consumer (each Cargo.toml names this file): embeds the
//! git commit the binary is built from as `PAYCTL_GIT_COMMIT`, for `payctl version` and the services'
//! `build_info` metric.
//!
//! `PAYCTL_GIT_COMMIT` in the build's environment wins (a build without `.git`, such as the Docker
//! image's, can be told); else `git rev-parse HEAD`; else "unknown". Cargo reruns this when HEAD or the
//! branch it points to moves, so the commit is never stale.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PAYCTL_GIT_COMMIT");
    let commit = std::env::var("PAYCTL_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PAYCTL_GIT_COMMIT={}", commit.trim());
}

/// `git` in this package's folder, its output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "HEAD"])?;
    // Watch HEAD (a checkout), the branch's ref (a commit) and packed-refs (where `git gc` moves refs).
    // Only files that exist: cargo reruns a script at every build for a missing one.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten().map(PathBuf::from) {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
