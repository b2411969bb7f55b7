//! The images of the Docker runtime: upstream ones pulled when missing (retried, a progress bar per
//! layer), the project's own built from compose/*.Dockerfile with a context of only the paths each
//! needs.

use super::containers::{self, Container};
use super::{labels, DockerArgs};
use crate::ops::store::build_store_if_missing;
use crate::output;
use anyhow::{bail, Context};
use bollard::query_parameters::{BuildImageOptions, CreateImageOptions};
use bollard::Docker as Engine;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

async fn image_exists(docker: &Engine, image: &str) -> bool {
    docker.inspect_image(image).await.is_ok()
}

pub async fn ensure_image(
    docker: &Engine,
    def: &Container,
    args: &DockerArgs,
) -> anyhow::Result<()> {
    match &def.build {
        Some(build) => {
            if args.rebuild || !image_exists(docker, &def.image).await {
                build_image(docker, &def.image, build, args).await?;
            }
        }
        None => {
            if !image_exists(docker, &def.image).await {
                pull(docker, &def.image).await?;
            }
        }
    }
    Ok(())
}

/// Pulls an image with a progress bar per layer; retried on failure with a growing pause.
async fn pull(docker: &Engine, image: &str) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 4;
    let (from_image, tag) = match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    };
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        eprintln!("pulling {image} (attempt {attempt}/{ATTEMPTS})");
        let bars = indicatif::MultiProgress::new();
        let mut layers: HashMap<String, indicatif::ProgressBar> = HashMap::new();
        let style = indicatif::ProgressStyle::with_template(
            "  {prefix:12} {msg:12} {bar:30} {bytes}/{total_bytes}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let mut stream = docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from_image.to_owned()),
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
            None,
        );
        let mut failed = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|e| e.message) {
                        failed = Some(anyhow::anyhow!(e));
                        break;
                    }
                    let Some(id) = info.id else { continue };
                    let bar = layers.entry(id.clone()).or_insert_with(|| {
                        let b = bars.add(indicatif::ProgressBar::new(0));
                        b.set_style(style.clone());
                        b.set_prefix(id);
                        b
                    });
                    if let Some(p) = info.progress_detail {
                        if let (Some(cur), Some(total)) = (p.current, p.total) {
                            bar.set_length(total.max(0) as u64);
                            bar.set_position(cur.max(0) as u64);
                        }
                    }
                    bar.set_message(info.status.unwrap_or_default());
                }
                Err(e) => {
                    failed = Some(e.into());
                    break;
                }
            }
        }
        for bar in layers.values() {
            bar.finish();
        }
        match failed {
            None => return Ok(()),
            Some(e) => {
                eprintln!("  pull failed: {e}");
                last = Some(e);
                if attempt < ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(2u64.pow(attempt))).await;
                }
            }
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!("pulling {image} failed {ATTEMPTS} times")))
}

/// The repository checkout the project's images are built from.
fn source_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("PAYCTL_SOURCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir()?,
    };
    if !dir.join("compose/rust-service.Dockerfile").exists() {
        bail!(
            "{} is not a payctl checkout (no compose/rust-service.Dockerfile); run from the checkout or set PAYCTL_SOURCE_DIR",
            dir.display()
        );
    }
    Ok(dir)
}

/// The commit checked out in `source`, if it is a git checkout.
fn git_commit(source: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(source)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

/// The build context as a tar: the repository paths the Dockerfile uses (never target/ or
/// node_modules/), plus the host-built binary with --prebuilt.
fn context_tar(
    source: &Path,
    build: &containers::Build,
    prebuilt: Option<&Path>,
) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(true);
    // The classic builder rejects GNU sparse entries (debug binaries can be sparse on disk).
    tar.sparse(false);
    // Same bytes for the same files: the engine's build cache can reuse layers.
    tar.mode(tar::HeaderMode::Deterministic);
    for path in build.context {
        let full = source.join(path);
        if full.is_dir() {
            tar.append_dir_all(path, &full)
                .with_context(|| format!("adding {} to the build context", full.display()))?;
        } else if full.exists() {
            tar.append_path_with_name(&full, path)?;
        } else {
            bail!(
                "{} is missing{}",
                full.display(),
                if path.starts_with("frontend/dist") {
                    " (build the store: cd frontend && npm ci && npm run build)"
                } else {
                    ""
                }
            );
        }
    }
    if let (Some(dir), Some(service)) = (prebuilt, build.service) {
        let binary = dir.join(service);
        tar.append_path_with_name(&binary, format!("compose/prebuilt/{service}"))
            .with_context(|| format!("adding the prebuilt {}", binary.display()))?;
    }
    Ok(tar.into_inner()?)
}

async fn build_image(
    docker: &Engine,
    image: &str,
    build: &containers::Build,
    args: &DockerArgs,
) -> anyhow::Result<()> {
    let source = source_dir()?;
    if build.dockerfile == "compose/gateway.Dockerfile" {
        build_store_if_missing();
    }
    let prebuilt = args.prebuilt.as_deref().filter(|_| build.service.is_some());
    let context = context_tar(&source, build, prebuilt)?;
    let mut buildargs: HashMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Some(service) = build.service {
        buildargs.insert("SERVICE".into(), service.into());
        // The build context has no .git: tell the build script which commit it compiles.
        if let Some(commit) = git_commit(&source) {
            buildargs
                .entry("PAYCTL_GIT_COMMIT".into())
                .or_insert(commit);
        }
    }
    let target = match (build.service, prebuilt) {
        (Some(_), Some(_)) => "prebuilt",
        (Some(_), None) => "release",
        _ => "",
    };
    eprintln!(
        "building {image} from {}{} ({} KiB context)",
        build.dockerfile,
        if target.is_empty() {
            String::new()
        } else {
            format!(", target {target}")
        },
        context.len() / 1024
    );
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(100));
    let mut stream = docker.build_image(
        BuildImageOptions {
            dockerfile: build.dockerfile.to_owned(),
            t: Some(image.to_owned()),
            rm: true,
            forcerm: true,
            buildargs: Some(buildargs),
            networkmode: args.build_network.clone(),
            target: target.to_owned(),
            labels: Some(labels("payctl-image", None)),
            ..Default::default()
        },
        None,
        Some(bollard::body_full(context.into())),
    );
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                spinner.finish_and_clear();
                bail!("building {image}: {e}\n{}", tail.join("\n"));
            }
        };
        if let Some(e) = info.error_detail.and_then(|e| e.message) {
            spinner.finish_and_clear();
            bail!("building {image}: {e}\nlast output:\n{}", tail.join("\n"));
        }
        for line in info.stream.unwrap_or_default().lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if line.starts_with("Step ") {
                spinner.set_message(line.to_owned());
            }
            tail.push(line.to_owned());
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
    }
    spinner.finish_and_clear();
    eprintln!("{} built {image}", output::mark(true));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_of_a_checkout_is_passed_to_the_image_build() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let commit = git_commit(&repo).unwrap();
        assert!(
            commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit}"
        );
        assert_eq!(git_commit(Path::new("/nonexistent")), None);
    }
}
