//! `payctl k8s`: writes the Kubernetes manifests (`deploy/k8s`: a kustomize base, overlays `dev` and
//! `production`) from the same container definition the runtimes and `payctl compose` use;
//! `--check` compares instead.

use crate::ops::k8s::files;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct K8sArgs {
    /// Compare instead of writing: exit 1 when a file differs from the definition.
    #[arg(long)]
    check: bool,
    /// Where the manifests go (base/ and overlays/ under it).
    #[arg(long, default_value = "deploy/k8s")]
    out: PathBuf,
}

pub fn exec(args: &K8sArgs) -> anyhow::Result<ExitCode> {
    let mut stale = Vec::new();
    for (path, body) in files()? {
        let full = args.out.join(&path);
        if args.check {
            if std::fs::read(&full).ok().as_deref() != Some(body.as_slice()) {
                stale.push(full.display().to_string());
            }
        } else {
            std::fs::create_dir_all(full.parent().context("a file without a directory")?)?;
            std::fs::write(&full, body).with_context(|| format!("writing {}", full.display()))?;
            println!("wrote {}", full.display());
        }
    }
    if stale.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: differs from payctl's stack definition (run `payctl k8s`): {}",
        stale.join(", ")
    );
    Ok(ExitCode::from(1))
}
