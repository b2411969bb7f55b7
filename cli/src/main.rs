//! `payctl`: runs the payment platform on this machine and operates it.
//!
//! Errors print as one line (`error: …`) with exit code 1; usage errors exit with 2 (clap).

mod native;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "payctl",
    version,
    about = "Run, drive and check the payctl payment platform",
    after_help = "Examples:\n  payctl up                 start MariaDB, Redis, Kafka (tansu) and the API natively\n  payctl status --json      what runs where, as JSON\n  payctl down --volumes     stop everything and delete its data"
)]
struct Cli {
    /// Where the native stack keeps its data, logs and pid files.
    #[arg(long, global = true, env = "PAYCTL_HOME", default_value = ".payctl")]
    home: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the platform (native processes) and wait until every part is healthy.
    Up(native::Ports),
    /// Stop what `payctl up` started. Data is kept unless --volumes.
    Down {
        /// Also delete the databases, queues and logs.
        #[arg(long)]
        volumes: bool,
    },
    /// Show each service: pid, address, health.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: native::Ports,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(ports) => native::up(&cli.home, &ports).await,
        Command::Down { volumes } => native::down(&cli.home, volumes),
        Command::Status { json, ports } => native::status(&cli.home, &ports, json).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
