//! `payctl`: runs the payment platform on this machine, drives its API and proves it correct.
//!
//! Exit codes: 0 success, 1 failure (an API error, a failed check, a violation), 2 usage error,
//! 3 `status` found a service that is not healthy.

mod api;
mod bench;
mod cb;
mod checks;
mod compose;
mod containers;
mod dlq;
mod docker;
mod doctor;
mod load;
mod monitoring;
mod native;
mod output;
mod top;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Where the native stack keeps its data, logs, pid files and dev secrets.
    #[arg(long, global = true, env = "PAYCTL_HOME", default_value = ".payctl")]
    home: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the platform (Docker containers when an engine answers, else native processes) and wait
    /// until every part is healthy.
    Up {
        /// Do not install anything: print the commands for what is missing and exit 1.
        #[arg(long)]
        no_install: bool,
        /// Where to run: native processes, or Docker (auto: Docker when an engine answers).
        #[arg(long, value_enum, env = "PAYCTL_RUNTIME", default_value_t = native::Runtime::Auto)]
        runtime: native::Runtime,
        /// Instances per service; only the API scales: --scale ingest=3.
        #[arg(long, value_parser = parse_scale, default_value = "ingest=1")]
        scale: u16,
        #[command(flatten)]
        ports: native::Ports,
        #[command(flatten)]
        docker: Box<docker::DockerArgs>,
    },
    /// Stop what `payctl up` started. Data is kept unless --volumes.
    Down {
        /// Also delete the databases, topics, logs and dev secrets.
        #[arg(long)]
        volumes: bool,
        #[command(flatten)]
        ports: native::Ports,
    },
    /// Write compose/docker-compose.yml and the configs it uses from payctl's stack definition
    /// (--check: exit 1 if the files in the repository differ from it).
    Compose(compose::ComposeArgs),
    /// Show each service: pid or container, address, health (exit 3 if one is not healthy).
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: native::Ports,
    },
    /// Print a service's log (mariadb, redis, kafka, ingest[-N], consumer, prometheus, gateway).
    Logs {
        service: String,
        /// Keep printing what is appended.
        #[arg(short, long)]
        follow: bool,
        /// Lines of history to show first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// Authorize a payment.
    Authorize {
        #[command(flatten)]
        args: api::AuthorizeArgs,
        #[command(flatten)]
        target: api::Target,
    },
    /// Capture all or part of an authorized payment.
    Capture {
        #[command(flatten)]
        args: api::ChangeArgs,
        #[command(flatten)]
        target: api::Target,
    },
    /// Refund all or part of what was captured.
    Refund {
        #[command(flatten)]
        args: api::ChangeArgs,
        #[command(flatten)]
        target: api::Target,
    },
    /// Void (release) an uncaptured authorization.
    Void {
        #[command(flatten)]
        args: api::ChangeArgs,
        #[command(flatten)]
        target: api::Target,
    },
    /// Show one payment.
    Get {
        #[command(flatten)]
        args: api::GetArgs,
        #[command(flatten)]
        target: api::Target,
    },
    /// List payments, newest first.
    List {
        #[command(flatten)]
        args: api::ListArgs,
        #[command(flatten)]
        target: api::Target,
    },
    /// Show a payment's ledger legs.
    Ledger {
        #[command(flatten)]
        args: api::GetArgs,
        #[command(flatten)]
        target: api::Target,
    },
    /// authorize → capture → partial refund → refund, then check that payment's ledger.
    Smoke {
        #[command(flatten)]
        target: api::Target,
    },
    /// Check the ledger invariants and the outbox against the payments (exit 1 on any violation).
    Reconcile {
        #[arg(long)]
        json: bool,
        /// Changes younger than this are still in flight and not yet expected in the ledger.
        #[arg(long, default_value_t = 5)]
        settle_seconds: u64,
        #[command(flatten)]
        ports: native::Ports,
    },
    /// The Kafka publisher's circuit breaker: status, test, force-open, disable, reset.
    Cb {
        #[command(subcommand)]
        command: cb::Cb,
        #[command(flatten)]
        target: api::Target,
    },
    /// What this machine has for the platform: programs and versions, ports, disk, memory.
    Doctor {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: native::Ports,
    },
    /// Drive the platform with the real k6 (open model, many merchants), print the figures, reconcile.
    Load(load::LoadArgs),
    /// Measure: the database's own limit, the highest sustained rates (authorize, full flow), ledger
    /// catch-up and memory. Reports figures; asserts nothing.
    Bench(bench::BenchArgs),
    /// Key figures live from every service's /metrics: request rate, p99, errors, breaker state,
    /// outbox backlog, consumer lag, ledger lag, DLQ (the terminal's Grafana on the native runtime).
    Top(top::TopArgs),
    /// The dead-letter queue: inject poison, tail it, replay records once their cause is fixed.
    Dlq {
        #[command(subcommand)]
        command: dlq::Dlq,
    },
    /// Print a shell completion script: payctl completions bash > /etc/bash_completion.d/payctl
    Completions { shell: clap_complete::Shell },
}

fn parse_scale(s: &str) -> Result<u16, String> {
    match s.split_once('=') {
        Some(("ingest", n)) => n
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=16).contains(n))
            .ok_or_else(|| format!("'{n}' is not a number of instances from 1 to 16")),
        _ => Err(format!("'{s}': only the API scales; use --scale ingest=N")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // `payctl logs ingest | head` ends quietly when the reader goes away, like other Unix tools.
    // SAFETY: called before any thread of ours writes; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let home = cli.home.clone();
    let result = async {
        match cli.command {
            Command::Up {
                no_install,
                runtime,
                scale,
                ports,
                docker,
            } => match native::choose_runtime(runtime).await? {
                native::Runtime::Docker => docker::up(&home, &ports, scale, &docker).await,
                _ => native::up(&home, &ports, scale, no_install).await,
            },
            Command::Down { volumes, ports } => match docker::saved(&home) {
                Some(saved) => docker::down(&home, &saved.project, volumes).await,
                None => native::down(&home, &ports, volumes),
            },
            Command::Compose(args) => compose::run(&args),
            Command::Status { json, ports } => match docker::saved(&home) {
                Some(_) => docker::status(&home, json).await,
                None => native::status(&home, &ports, json).await,
            },
            Command::Logs {
                service,
                follow,
                lines,
            } => match docker::saved(&home) {
                Some(_) => docker::logs(&home, &service, lines, follow).await,
                None => native::logs(&home, &service, lines, follow).await,
            },
            Command::Authorize { args, target } => {
                api::authorize(&api::Api::new(&home, &target)?, args)
                    .await
                    .map(|_| ExitCode::SUCCESS)
            }
            Command::Capture { args, target } => {
                api::change(&api::Api::new(&home, &target)?, "capture", args)
                    .await
                    .map(|_| ExitCode::SUCCESS)
            }
            Command::Refund { args, target } => {
                api::change(&api::Api::new(&home, &target)?, "refund", args)
                    .await
                    .map(|_| ExitCode::SUCCESS)
            }
            Command::Void { args, target } => {
                api::change(&api::Api::new(&home, &target)?, "void", args)
                    .await
                    .map(|_| ExitCode::SUCCESS)
            }
            Command::Get { args, target } => api::get(&api::Api::new(&home, &target)?, args)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::List { args, target } => api::list(&api::Api::new(&home, &target)?, args)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Ledger { args, target } => api::ledger(&api::Api::new(&home, &target)?, args)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Smoke { target } => checks::smoke(&api::Api::new(&home, &target)?).await,
            Command::Reconcile {
                json,
                settle_seconds,
                ports,
            } => checks::reconcile(&home, &ports, Duration::from_secs(settle_seconds), json).await,
            Command::Cb { command, target } => cb::run(&home, &target, command).await,
            Command::Dlq { command } => dlq::run(command).await,
            Command::Load(args) => load::run(&home, args).await,
            Command::Bench(args) => bench::run(&home, args).await,
            Command::Top(args) => top::run(&home, args).await,
            Command::Doctor { json, ports } => {
                doctor::run(&home, &ports, json, docker::answers().await)
            }
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "payctl",
                    &mut std::io::stdout(),
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
