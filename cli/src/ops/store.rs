//! The demo store the gateway serves (frontend/), built when a checkout has none.

use std::process::Command;

/// Builds the store (frontend/dist) when this is a checkout without a build and npm is here, so that the
/// gateway serves the store on the first `up`. Without npm the gateway shows a page that says how.
pub fn build_store_if_missing() {
    let Ok(cwd) = std::env::current_dir() else {
        return;
    };
    let frontend = cwd.join("frontend");
    if std::env::var_os("PAYCTL_STORE_DIR").is_some()
        || frontend.join("dist/index.html").exists()
        || !frontend.join("package.json").exists()
        || payctl_stack::install::which("npm").is_none()
    {
        return;
    }
    eprintln!("building the store (npm ci && npm run build in frontend/) …");
    let run = |args: &[&str]| {
        Command::new("npm")
            .args(args)
            .current_dir(&frontend)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = (frontend.join("node_modules").exists() || run(&["ci", "--no-audit", "--no-fund"]))
        && run(&["run", "build"]);
    if !ok {
        eprintln!("warning: the store did not build; the gateway serves a placeholder at /");
    }
}
