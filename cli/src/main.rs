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
  payctl down --volumes                   stop everything and delete its data

Exit codes:
  0  success
  1  failure: an API error, a failed check, a violation
  2  usage error: an unknown argument or a value out of range
  3  `payctl status` found a service that is not healthy"
)]
struct Cli {
    /// Where the native stack keeps its data, logs, pid files and dev secrets.
    #[arg(long, global = true, env = "PAYCTL_HOME", default_value = ".payctl")]
    home: PathBuf,

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and the help that `payctl` alone prints (exit 2) as clap prints them.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match commands::exec(&cli.home, cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// clap's usage error in one line: its message, the possible values and tip, without the usage block.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut out = lines.next().unwrap_or("error: usage").to_owned();
    for l in lines {
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            continue;
        }
        out.push(' ');
        out.push_str(l);
    }
    out.push_str(" (see --help)");
    out
}
