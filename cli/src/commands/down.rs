//! `payctl down`: stop what `payctl up` started, on the runtime it started it on. With `--volumes` its
//! data goes too, which cannot be undone: a person at a terminal is asked first, a script must say
//! `--yes`.

use crate::runtime::{self, docker, Runtime};
use crate::stack::Ports;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl down                             stop; the data stays for the next `payctl up`
  payctl down --volumes                   stop and delete the data (asks first)
  payctl down --volumes --yes             the same without asking, for scripts and CI")]
pub struct DownArgs {
    /// Also delete the databases, topics, logs and dev secrets (asks first on a terminal).
    #[arg(long)]
    volumes: bool,
    /// Delete with --volumes without asking (needed when stdin is not a terminal).
    #[arg(short = 'y', long)]
    yes: bool,
    /// The Docker stack of this name (its containers, network and volumes, found by their label),
    /// whatever the state directory holds: after `.payctl` was removed, or from another directory.
    #[arg(long, value_parser = docker::project_name)]
    project: Option<String>,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: DownArgs) -> anyhow::Result<ExitCode> {
    if a.volumes && !a.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            eprintln!("error: down --volumes deletes the stack's data and stdin is not a terminal to ask; add --yes to confirm");
            return Ok(ExitCode::from(2));
        }
        eprint!(
            "delete the stack's data (database, Kafka, logs, dev secrets under {})? [y/N] ",
            home.display()
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !confirmed(&answer) {
            eprintln!("nothing stopped or deleted");
            return Ok(ExitCode::from(1));
        }
    }
    match a.project {
        Some(project) => {
            let here = docker::saved(home).filter(|s| s.project == project);
            let saved = docker::Saved {
                network: here
                    .as_ref()
                    .map_or(docker::containers::Network::Bridge, |s| s.network),
                engine: here.and_then(|s| s.engine),
                project,
            };
            docker::Docker::open(home, &a.ports, saved)
                .down(a.volumes)
                .await?
        }
        None => runtime::open(home, &a.ports).down(a.volumes).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Only an explicit yes deletes; an empty answer is the default, no.
fn confirmed(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        for yes in ["y\n", "Y", " yes \n", "YES"] {
            assert!(confirmed(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "y es"] {
            assert!(!confirmed(no), "{no:?}");
        }
    }
}
