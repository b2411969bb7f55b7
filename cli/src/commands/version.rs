//! `payctl version`: this payctl's version and git commit, and those of the running API instances and
//! consumer (their `build_info{version, commit}` metric), so a stack left running on an older build
//! shows it.

use crate::ops::metrics::{scrape, Sample};
use crate::output;
use crate::stack::Ports;
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

/// The commit payctl was built from (`build/git_commit.rs`), "unknown" outside a git checkout.
pub const COMMIT: &str = env!("PAYCTL_GIT_COMMIT");

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl version                          payctl, the API instances and the consumer
  payctl version --json | jq -r .payctl.commit")]
pub struct VersionArgs {
    /// Print {payctl: {version, commit}, services: [{service, running, version, commit}]} as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ports: Ports,
}

#[derive(Debug, Serialize)]
struct Build {
    version: String,
    commit: String,
}

#[derive(Debug, Serialize)]
struct ServiceBuild {
    service: String,
    /// Whether its /metrics answered.
    running: bool,
    /// None when it does not run, or runs a build without the `build_info` metric.
    version: Option<String>,
    commit: Option<String>,
}

#[derive(Debug, Serialize)]
struct Versions {
    payctl: Build,
    services: Vec<ServiceBuild>,
}

pub async fn exec(home: &Path, a: VersionArgs) -> anyhow::Result<ExitCode> {
    let services = scrape(home, &a.ports)
        .await
        .into_iter()
        .map(|(service, _, samples)| {
            let build = samples.as_deref().and_then(build_of);
            ServiceBuild {
                service,
                running: samples.is_some(),
                version: build.as_ref().map(|b| b.version.clone()),
                commit: build.map(|b| b.commit),
            }
        })
        .collect();
    let v = Versions {
        payctl: Build {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: COMMIT.to_owned(),
        },
        services,
    };
    if a.json {
        output::json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "payctl".to_owned(),
        v.payctl.version.clone(),
        v.payctl.commit.clone(),
    ]];
    for s in &v.services {
        rows.push(match (&s.version, &s.commit) {
            (Some(version), Some(commit)) => {
                vec![s.service.clone(), version.clone(), commit.clone()]
            }
            _ if s.running => vec![
                s.service.clone(),
                "unknown (no build_info)".into(),
                "-".into(),
            ],
            _ => vec![s.service.clone(), "not running".into(), "-".into()],
        });
    }
    println!(
        "{}",
        output::table(&["component", "version", "commit"], rows)
    );
    Ok(ExitCode::SUCCESS)
}

/// The `build_info{version, commit}` of a service's metrics.
fn build_of(samples: &[Sample]) -> Option<Build> {
    let info = samples.iter().find(|s| s.name == "build_info")?;
    let label = |key: &str| {
        info.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    Some(Build {
        version: label("version")?,
        commit: label("commit")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::parse;

    #[test]
    fn the_build_is_read_from_the_metric() {
        let samples = parse(
            "# HELP build_info x\n# TYPE build_info gauge\nbuild_info{commit=\"abc123\",version=\"0.1.0\"} 1\nup 1\n",
        );
        let b = build_of(&samples).unwrap();
        assert_eq!((b.version.as_str(), b.commit.as_str()), ("0.1.0", "abc123"));
        assert!(build_of(&parse("up 1\n")).is_none());
    }

    #[test]
    fn the_commit_is_the_checkouts() {
        // The build script ran in this checkout, so the commit is its HEAD (unless the build was told).
        let expected = match std::env::var("PAYCTL_GIT_COMMIT") {
            Ok(told) if !told.is_empty() => told,
            _ => {
                let o = std::process::Command::new("git")
                    .args(["rev-parse", "HEAD"])
                    .output()
                    .unwrap();
                String::from_utf8(o.stdout).unwrap().trim().to_owned()
            }
        };
        assert_eq!(COMMIT, expected);
    }
}
