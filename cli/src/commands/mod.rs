//! One module per subcommand: its arguments (clap) and `exec`, which calls the operations (`ops`, the
//! runtime, the stack definition) and prints what they return. No operation knows which command called
//! it.

pub mod api;
pub mod bench;
pub mod cb;
pub mod chaos;
pub mod completions;
pub mod compose;
pub mod dlq;
pub mod doctor;
pub mod down;
pub mod env;
pub mod load;
pub mod logs;
pub mod merchant;
pub mod open;
pub mod reconcile;
pub mod smoke;
pub mod status;
pub mod top;
pub mod up;
pub mod version;

use clap::Subcommand;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the platform (Docker containers when an engine answers, else native processes) and wait
    /// until every part is healthy.
    Up(up::UpArgs),
    /// Stop what `payctl up` started. Data is kept unless --volumes.
    Down(down::DownArgs),
    /// Write compose/docker-compose.yml and the configs it uses from payctl's stack definition
    /// (--check: exit 1 if the files in the repository differ from it).
    Compose(compose::ComposeArgs),
    /// Show each service: pid or container, address, health (exit 3 if one is not healthy).
    Status(status::StatusArgs),
    /// Print `export PAYCTL_API_URL=… PAYCTL_API_KEY=… PAYCTL_HOME=…` for the saved stack: eval "$(payctl env)".
    Env(env::EnvArgs),
    /// Open the store, the API, Grafana or Prometheus in the browser ($BROWSER, xdg-open), or --print
    /// the URL.
    Open(open::OpenArgs),
    /// Print a service's log (mariadb, redis, kafka, ingest[-N], consumer, prometheus, gateway).
    Logs(logs::LogsArgs),
    /// Merchants and their API keys: create (key shown once), list, rotate-key.
    Merchant(merchant::MerchantArgs),
    /// Authorize a payment.
    Authorize(api::AuthorizeArgs),
    /// Capture all or part of an authorized payment.
    Capture(api::CaptureArgs),
    /// Refund all or part of what was captured.
    Refund(api::RefundArgs),
    /// Void (release) an uncaptured authorization.
    Void(api::VoidArgs),
    /// Show one payment.
    Get(api::GetArgs),
    /// List payments, newest first.
    List(api::ListArgs),
    /// Show a payment's ledger legs.
    Ledger(api::GetArgs),
    /// authorize → capture → partial refund → refund, then check that payment's ledger.
    Smoke(smoke::SmokeArgs),
    /// Check the ledger invariants and the outbox against the payments (exit 1 on any violation).
    Reconcile(reconcile::ReconcileArgs),
    /// Kill and freeze services on a seeded schedule under load, then prove every payment a client was
    /// told about exists exactly once, with its ledger (exit 1 on any violation).
    Chaos(chaos::ChaosArgs),
    /// The Kafka publisher's circuit breaker: status, test, force-open, disable, reset.
    Cb(cb::CbArgs),
    /// What this machine has for the platform: programs and versions, ports, disk, memory.
    Doctor(doctor::DoctorArgs),
    /// Drive the platform with the real k6 (open model, many merchants), print the figures, reconcile.
    Load(load::LoadArgs),
    /// Measure: the database's own limit, the highest sustained rates (authorize, full flow), ledger
    /// catch-up and memory. Reports figures; asserts nothing.
    Bench(bench::BenchArgs),
    /// Key figures live from every service's /metrics: request rate, p99, errors, breaker state,
    /// outbox backlog, consumer lag, ledger lag, DLQ (the terminal's Grafana on the native runtime).
    Top(top::TopArgs),
    /// The dead-letter queue: inject poison, tail it, replay records once their cause is fixed.
    Dlq(dlq::DlqArgs),
    /// This payctl's version and git commit, and those of the running API and consumer.
    Version(version::VersionArgs),
    /// Print a shell completion script: payctl completions bash > /etc/bash_completion.d/payctl
    Completions(completions::CompletionsArgs),
}

/// Runs one subcommand with the state directory `home`.
pub async fn exec(home: &Path, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) => up::exec(home, args).await,
        Command::Down(args) => down::exec(home, args).await,
        Command::Compose(args) => compose::exec(&args),
        Command::Status(args) => status::exec(home, args).await,
        Command::Env(args) => env::exec(home, args),
        Command::Open(args) => open::exec(home, args),
        Command::Logs(args) => logs::exec(home, args).await,
        Command::Merchant(args) => merchant::exec(home, args).await,
        Command::Authorize(args) => api::authorize(home, args).await,
        Command::Capture(args) => api::change(home, "capture", args).await,
        Command::Refund(args) => api::change(home, "refund", args).await,
        Command::Void(args) => api::change(home, "void", args).await,
        Command::Get(args) => api::get(home, args).await,
        Command::List(args) => api::list(home, args).await,
        Command::Ledger(args) => api::ledger(home, args).await,
        Command::Smoke(args) => smoke::exec(home, args).await,
        Command::Reconcile(args) => reconcile::exec(home, args).await,
        Command::Chaos(args) => chaos::exec(home, args).await,
        Command::Cb(args) => cb::exec(home, args).await,
        Command::Doctor(args) => doctor::exec(home, args).await,
        Command::Load(args) => load::exec(home, args).await,
        Command::Bench(args) => bench::exec(home, args).await,
        Command::Top(args) => top::exec(home, args).await,
        Command::Dlq(args) => dlq::exec(args).await,
        Command::Version(args) => version::exec(home, args).await,
        Command::Completions(args) => completions::exec(args),
    }
}
