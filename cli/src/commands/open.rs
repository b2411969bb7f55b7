//! `payctl open [store|api|grafana|prometheus]`: a part of the stack in the browser — `$BROWSER` when
//! set, else the desktop's opener (xdg-open; `open` on macOS). With `--print`, or when there is no way
//! to open one (a server, a container), the URL is printed instead.

use crate::ops::endpoints::{absolute, Endpoints};
use crate::stack::Ports;
use clap::{Args, ValueEnum};
use std::path::Path;
use std::process::{Command, ExitCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The demo store, at the gateway's /.
    Store,
    /// The payment API through the gateway (/api).
    Api,
    /// Grafana (Docker runtime only).
    Grafana,
    /// Prometheus.
    Prometheus,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl open                             the store in the browser
  payctl open grafana                     the dashboards (Docker runtime)
  payctl open prometheus --print          only print the URL
  BROWSER=firefox payctl open             with that browser")]
pub struct OpenArgs {
    /// What to open.
    #[arg(value_enum, default_value_t = Target::Store)]
    target: Target,
    /// Print the URL instead of opening it.
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    ports: Ports,
}

pub fn exec(home: &Path, a: OpenArgs) -> anyhow::Result<ExitCode> {
    let e = Endpoints::of(&absolute(home), &a.ports);
    let url = match a.target {
        Target::Store => e.store_url,
        Target::Api => e.api_url,
        Target::Prometheus => e
            .prometheus_url
            .ok_or_else(|| anyhow::anyhow!("this stack has no Prometheus"))?,
        Target::Grafana => e.grafana_url.ok_or_else(|| {
            anyhow::anyhow!(
                "Grafana runs only on the Docker runtime (payctl up --runtime docker); payctl top shows the key figures"
            )
        })?,
    };
    let opener = (!a.print).then(opener).flatten();
    let Some(opener) = opener else {
        println!("{url}");
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!("opening {url} with {opener}");
    match Command::new(&opener).arg(&url).status() {
        Ok(s) if s.success() => {}
        // The URL is still what the user wanted: give it to them.
        Ok(s) => {
            eprintln!("{opener} exited with {s}; the URL:");
            println!("{url}");
        }
        Err(e) => {
            eprintln!("cannot run {opener}: {e}; the URL:");
            println!("{url}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `$BROWSER` when set (the convention of git, python's webbrowser, …), else the desktop's opener if
/// this machine has one.
fn opener() -> Option<String> {
    // $BROWSER may list several, separated by ':'; the first is the preferred one.
    let browser = std::env::var("BROWSER").unwrap_or_default();
    if let Some(first) = browser.split(':').map(str::trim).find(|b| !b.is_empty()) {
        return Some(first.to_owned());
    }
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    payctl_stack::install::which(program).map(|p| p.display().to_string())
}
