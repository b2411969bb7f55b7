//! `payctl`: runs the payment platform on this machine, drives its API and proves it correct.
//!
//! Exit codes: 0 success, 1 failure (an API error, a failed check, a violation), 2 usage error,
//! 3 `status` found a service that is not healthy.
//!
//! The folders show the architecture: `commands/` has one module per subcommand (its arguments, what
//! it calls and what it prints); `ops/` has what commands share (the API client, the k6 runner,
//! reconcile, …); `stack/` is the one definition of the platform (services, ports, dependencies, health
//! checks, configs) that both runtimes in `runtime/` (native processes, Docker containers) run.

mod commands;
mod ops;
mod output;
mod runtime;
mod stack;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "payctl",
    version,
    about = "Run, drive and check the payctl payment platform",
    after_help = "Examples:
  payctl up                               start the platform natively and print a dev API key
  payctl authorize --amount 50000         authorize ₩50,000 with the dev merchant's key
  payctl capture <id> --amount 20000      capture part of it
  payctl list --status CAPTURED --json    a page of payments as JSON
  payctl smoke                            authorize → capture → refunds, then check the ledger
  payctl reconcile                        run the ledger invariants (exit 1 on a violation)
  payctl cb test                          stop Kafka, prove payments go on and nothing is lost
  payctl dlq inject invalid-json          send poison; then `payctl dlq tail` shows it dead-lettered
  payctl logs ingest -f                   follow the API's log
  payctl down --volumes                   stop everything and delete its data"
)]
struct Cli {
    /// Where the native stack keeps its data, logs, pid files and dev secrets [default: the nearest
    /// .payctl/ from here up to the project's root (the folder with the workspace's Cargo.toml), else
    /// .payctl there, else ./.payctl]
    #[arg(long, global = true, env = "PAYCTL_HOME")]
    home: Option<PathBuf>,

    #[command(subcommand)]
    command: commands::Command,
}

#[tokio::main]
async fn main() -> ExitCode {
    // `payctl logs ingest | head` ends quietly when the reader goes away, like other Unix tools.
    // SAFETY: called before any thread of ours writes; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let home = match cli.home {
        Some(home) => home,
        None => match std::env::current_dir() {
            Ok(here) => stack::find_home(&here),
            Err(_) => PathBuf::from(".payctl"),
        },
    };
    match commands::exec(&home, cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
