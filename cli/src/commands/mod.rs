//! One module per subcommand: its arguments (clap) and `exec`, which calls the operations (`ops`, the
//! runtime, the stack definition) and prints what they return. No operation knows which command called
//! it.

pub mod acquirer;
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
pub mod k8s;
pub mod lifecycle;
pub mod load;
pub mod logs;
pub mod merchant;
pub mod open;
pub mod reconcile;
pub mod settle;
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
    #[command(after_help = "Examples:
  payctl up                          Docker when an engine answers, else native processes
  payctl up --runtime native         processes under .payctl/, no Docker
  payctl up --scale ingest=3         three API instances behind the gateway
  payctl up --scale ingest=3,consumer=2 --partitions 6
                                     and two ledger consumers sharing six partitions per topic
  payctl up --no-install             only print the commands for what is missing")]
    Up(up::UpArgs),
    /// Stop what `payctl up` started. Data is kept unless --volumes.
    #[command(after_help = "Examples:
  payctl down                        stop everything; the data stays for the next up
  payctl down --volumes              also delete the databases, topics, logs and dev secrets")]
    Down(down::DownArgs),
    /// Write compose/docker-compose.yml and the configs it uses from payctl's stack definition
    /// (--check: exit 1 if the files in the repository differ from it).
    #[command(after_help = "Examples:
  payctl compose                     rewrite compose/ from the stack definition
  payctl compose --check             exit 1 when compose/ differs from it (CI)")]
    Compose(compose::ComposeArgs),
    /// Write the Kubernetes manifests (deploy/k8s: a kustomize base, overlays dev and production) from
    /// payctl's stack definition (--check: exit 1 if the files in the repository differ from it).
    #[command(after_help = "Examples:
  payctl k8s                                 rewrite deploy/k8s from the stack definition
  payctl k8s --check                         exit 1 when deploy/k8s differs from it (CI)
  payctl k8s --out /tmp/k8s                  write them somewhere else
  kubectl kustomize deploy/k8s/overlays/dev  render the dev overlay (README, \"Kubernetes\")")]
    K8s(k8s::K8sArgs),
    /// Show each service: pid or container, address, health (exit 3 if one is not healthy).
    Status(status::StatusArgs),
    /// Print `export PAYCTL_API_URL=… PAYCTL_API_KEY=… PAYCTL_HOME=…` for the saved stack: eval "$(payctl env)".
    Env(env::EnvArgs),
    /// Open the store, the API, Grafana or Prometheus in the browser ($BROWSER, xdg-open), or --print
    /// the URL.
    Open(open::OpenArgs),
    /// Merchants and their API keys: create (key shown once), list, rotate-key.
    Merchant(merchant::MerchantArgs),
    /// Print a service's log, or every service's (-f to follow, --since 10m).
    Logs(logs::LogsArgs),
    /// Stop one service of the running stack; the others go on.
    #[command(after_help = "Examples:
  payctl stop consumer               events wait in Kafka; the ledger falls behind
  payctl stop ingest-2")]
    Stop(lifecycle::ServiceArgs),
    /// Start one stopped service of the stack again, on its data, and wait until it is healthy.
    #[command(after_help = "Examples:
  payctl start consumer              back on its data; returns once it is healthy")]
    Start(lifecycle::ServiceArgs),
    /// Stop one service and start it again (e.g. after changing its environment or binary).
    #[command(after_help = "Examples:
  payctl restart ingest              e.g. after building a new pay-server
  PAYCTL_HOME=/srv/pay/.payctl payctl restart gateway")]
    Restart(lifecycle::ServiceArgs),
    /// Authorize a payment.
    #[command(after_help = "Examples:
  payctl authorize --amount 50000                    ₩50,000 with the dev merchant's key
  id=$(payctl authorize --amount 500 -q)             the payment id alone
  payctl authorize --amount 500 --idempotency-key order-7 --json   retry-safe; \"replayed\" says if it was")]
    Authorize(api::AuthorizeArgs),
    /// Capture all or part of an authorized payment.
    #[command(after_help = "Examples:
  payctl capture <id>                capture all that is authorized
  payctl capture <id> --amount 20000 part of it (more captures may follow)")]
    Capture(api::CaptureArgs),
    /// Refund all or part of what was captured.
    #[command(after_help = "Examples:
  payctl refund <id>                 refund all that was captured and not yet refunded
  payctl refund <id> --amount 5000 --reason \"damaged box\"")]
    Refund(api::RefundArgs),
    /// Void (release) an uncaptured authorization.
    #[command(after_help = "Examples:
  payctl void <id>                   release the whole authorization
  payctl void <id> --reason \"order cancelled\"   after a partial capture: release the rest")]
    Void(api::VoidArgs),
    /// Show one payment.
    #[command(after_help = "Examples:
  payctl get <id>                    one payment as a table
  payctl get <id> --json | jq .status
  payctl get <id> --watch            again every 2 s, until Ctrl-C")]
    Get(api::GetArgs),
    /// List payments, newest first.
    #[command(after_help = "Examples:
  payctl list                        the newest 20 payments
  payctl list --status CAPTURED --limit 50 --json
  payctl list -q | xargs -n1 payctl ledger   ids only, one per line
  payctl list --no-headers | cut -f2         tab-separated, no header")]
    List(api::ListArgs),
    /// Show a payment's ledger legs.
    #[command(after_help = "Examples:
  payctl ledger <id>                 the payment's ledger legs and whether they balance
  payctl ledger <id> --json")]
    Ledger(api::GetArgs),
    /// authorize → capture → partial refund → refund, then check that payment's ledger.
    Smoke(smoke::SmokeArgs),
    /// Check the ledger invariants, the outbox, settlement and payouts; or an acquirer statement against
    /// our settlements (exit 1 on any violation or exception).
    Reconcile(reconcile::ReconcileArgs),
    /// Close a business date: pay each merchant the net the acquirer settled (captures − refunds −
    /// fees), as a payout and its ledger legs. Safe to run again.
    Settle(settle::SettleArgs),
    /// Kill and freeze services on a seeded schedule under load, then prove every payment a client was
    /// told about exists exactly once, with its ledger (exit 1 on any violation).
    Chaos(chaos::ChaosArgs),
    /// The Kafka publisher's circuit breaker: status, test, force-open, disable, reset.
    #[command(after_help = "Examples:
  payctl cb status                   state, failure rate, recent transitions
  payctl cb test --junit cb.xml      stop Kafka under payments, prove nothing is lost
  payctl cb force-open; payctl cb reset")]
    Cb(cb::CbArgs),
    /// What this machine has for the platform: programs and versions, ports, disk, memory.
    #[command(after_help = "Examples:
  payctl doctor                      ✓/✗ per program, port, disk and memory (exit 1 on a ✗)
  payctl doctor --json")]
    Doctor(doctor::DoctorArgs),
    /// Drive the platform with the real k6 (open model, many merchants), print the figures, reconcile.
    #[command(after_help = "Examples:
  payctl load                        200 authorizations/s for 30 s, then reconcile
  payctl load --rate 500 --duration 2m --flow full
  payctl load --no-reconcile         k6's verdict alone")]
    Load(load::LoadArgs),
    /// Measure: the database's own limit, the highest sustained rates (authorize, full flow) with the
    /// API's commits and each process's CPU per flow, ledger catch-up and memory. Reports figures;
    /// asserts nothing.
    #[command(after_help = "Examples:
  payctl bench                       the whole measurement (several minutes); k6 cross-checks the rate
  payctl bench --rates 1000,2000 --step 30s --broker-messages 0
  payctl bench --driver k6           every step with k6, as `payctl load` drives
  payctl bench --json > bench.json   the whole report as one JSON object")]
    Bench(bench::BenchArgs),
    /// Key figures live from every service's /metrics: request rate, p99, errors, breaker state,
    /// outbox backlog, consumer lag, ledger lag, DLQ (the terminal's Grafana on the native runtime).
    #[command(after_help = "Examples:
  payctl top                         refresh every 2 s until Ctrl-C
  payctl top --once --interval 5     one refresh, rates over 5 s
  payctl top --json                  one refresh as JSON")]
    Top(top::TopArgs),
    /// The dead-letter queue: inject poison, tail it, replay records once their cause is fixed.
    #[command(after_help = "Examples:
  payctl dlq inject invalid-json     poison the consumer must dead-letter
  payctl dlq tail -n 5 --json
  payctl dlq replay --id 0:3         send one record back once its cause is fixed")]
    Dlq(dlq::DlqArgs),
    /// The mock acquirer the platform settles with: outages, latency and failures, statements.
    #[command(after_help = "Examples:
  payctl acquirer outage --for 30s   refuse every settlement call for 30 s
  payctl acquirer statement --date 2026-12-05 --inject drop=1,unknown=2 --seed 7")]
    Acquirer(acquirer::AcquirerArgs),
    /// This payctl's version and git commit, and those of the running API and consumer.
    Version(version::VersionArgs),
    /// Print a shell completion script: payctl completions bash > /etc/bash_completion.d/payctl
    #[command(after_help = "Examples:
  payctl completions bash > /etc/bash_completion.d/payctl
  payctl completions zsh > \"${fpath[1]}/_payctl\"")]
    Completions(completions::CompletionsArgs),
}

/// Runs one subcommand with the state directory `home`.
pub async fn exec(home: &Path, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) => up::exec(home, args).await,
        Command::Down(args) => down::exec(home, args).await,
        Command::Compose(args) => compose::exec(&args),
        Command::K8s(args) => k8s::exec(&args),
        Command::Status(args) => status::exec(home, args).await,
        Command::Env(args) => env::exec(home, args),
        Command::Open(args) => open::exec(home, args),
        Command::Logs(args) => logs::exec(home, args).await,
        Command::Stop(args) => lifecycle::stop(home, args).await,
        Command::Start(args) => lifecycle::start(home, args).await,
        Command::Restart(args) => lifecycle::restart(home, args).await,
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
        Command::Settle(args) => settle::exec(home, args).await,
        Command::Chaos(args) => chaos::exec(home, args).await,
        Command::Cb(args) => cb::exec(home, args).await,
        Command::Doctor(args) => doctor::exec(home, args).await,
        Command::Load(args) => load::exec(home, args).await,
        Command::Bench(args) => bench::exec(home, args).await,
        Command::Top(args) => top::exec(home, args).await,
        Command::Dlq(args) => dlq::exec(args).await,
        Command::Acquirer(args) => acquirer::exec(args).await,
        Command::Version(args) => version::exec(home, args).await,
        Command::Completions(args) => completions::exec(args),
    }
}
