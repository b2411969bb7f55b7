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

use clap::{CommandFactory, FromArgMatches, Parser};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "payctl",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PAYCTL_GIT_COMMIT"), ")"),
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
  payctl acquirer outage --for 30s        the acquirer refuses every settlement call for 30 s
  payctl logs ingest -f                   follow the API's log
  payctl down --volumes                   stop everything and delete its data

Exit codes:
  0  success
  1  failure: an API error, a failed check, a violation
  2  usage error: an unknown argument or a value out of range
  3  `payctl status` found a service that is not healthy"
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
    commands::completions::complete_if_asked();
    let home = match given_home(&std::env::args_os().collect::<Vec<_>>()) {
        Some(home) => home,
        None => match std::env::current_dir() {
            Ok(here) => stack::find_home(&here),
            Err(_) => PathBuf::from(".payctl"),
        },
    };
    // One configuration per project: a port flag (or PAYCTL_*_PORT, --api-url) not given means the
    // port of the stack `up` saved, for every command (and in its --help); one given wins.
    let cmd = match stack::saved(&home) {
        Some(saved) => with_defaults(
            Cli::command(),
            &defaults_of(&stack::Ports::default().of(&saved)),
        ),
        None => Cli::command(),
    };
    let cli = match cmd
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
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
    match commands::exec(&home, cli.command).await {
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

/// The --home (or PAYCTL_HOME) of a command line, read before it is parsed for real: which saved
/// stack gives the defaults depends on it. Clap reads it, leniently; for --help, which clap answers
/// first, the command line is scanned.
fn given_home(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    if let Ok(m) = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
    {
        return m.get_one::<PathBuf>("home").cloned();
    }
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--home" {
            return args.next().map(PathBuf::from);
        }
        if let Some(home) = arg.to_str().and_then(|a| a.strip_prefix("--home=")) {
            return Some(PathBuf::from(home));
        }
    }
    std::env::var_os("PAYCTL_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The defaults of the port flags and of --api-url for a stack on `ports`, by argument id.
fn defaults_of(ports: &stack::Ports) -> Vec<(&'static str, String)> {
    vec![
        ("mariadb_port", ports.mariadb_port.to_string()),
        ("redis_port", ports.redis_port.to_string()),
        ("kafka_port", ports.kafka_port.to_string()),
        ("ingest_port", ports.ingest_port.to_string()),
        ("consumer_port", ports.consumer_port.to_string()),
        ("acquirer_port", ports.acquirer_port.to_string()),
        ("settlement_port", ports.settlement_port.to_string()),
        ("prometheus_port", ports.prometheus_port.to_string()),
        ("gateway_port", ports.gateway_port.to_string()),
        ("grafana_port", ports.grafana_port.to_string()),
        (
            "api_url",
            format!("http://127.0.0.1:{}/api", ports.gateway_port),
        ),
    ]
}

/// `cmd` and all its subcommands with these defaults for the arguments of these ids.
fn with_defaults(cmd: clap::Command, defaults: &[(&'static str, String)]) -> clap::Command {
    cmd.mut_args(|arg| {
        match defaults.iter().find(|(id, _)| arg.get_id() == *id) {
            // Leaked once per run: clap keeps defaults for the life of the program.
            Some((_, value)) => arg.default_value(&*Box::leak(value.clone().into_boxed_str())),
            None => arg,
        }
    })
    .mut_subcommands(|sub| with_defaults(sub, defaults))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each command under `cmd` (itself included) with its path, e.g. "payctl cb test".
    fn every_command(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.to_owned(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            every_command(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn help_teaches_examples_on_every_command_and_a_description_of_every_argument() {
        let mut all = Vec::new();
        every_command(&Cli::command(), "payctl", &mut all);
        let mut missing = Vec::new();
        for (path, cmd) in &all {
            let after = cmd
                .get_after_help()
                .or(cmd.get_after_long_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !after.contains("Examples:") {
                missing.push(format!("{path}: no examples"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) || arg.is_global_set() && path != "payctl" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: {id} has no description"));
                }
            }
        }
        assert!(all.len() > 30, "{}", all.len());
        assert!(missing.is_empty(), "\n{}", missing.join("\n"));
    }

    #[test]
    fn the_home_is_read_before_parsing_even_for_help() {
        let home = |args: &[&str]| given_home(&args.iter().map(Into::into).collect::<Vec<_>>());
        assert_eq!(home(&["payctl", "--home", "a", "status"]), Some("a".into()));
        assert_eq!(
            home(&["payctl", "status", "--home", "b", "--json"]),
            Some("b".into())
        );
        assert_eq!(
            home(&["payctl", "--home", "c", "dlq", "tail", "--help"]),
            Some("c".into())
        );
        assert_eq!(
            home(&["payctl", "--home=d", "status", "-h"]),
            Some("d".into())
        );
        assert_eq!(
            home(&["payctl", "get", "--", "--home", "e"]).as_deref(),
            std::env::var_os("PAYCTL_HOME")
                .as_deref()
                .map(std::path::Path::new)
        );
    }

    #[test]
    fn flags_not_given_take_the_saved_stacks_ports_and_given_ones_win() {
        let saved = stack::Ports {
            kafka_port: 29092,
            gateway_port: 28080,
            mariadb_port: 23306,
            ..stack::Ports::default()
        };
        // What the command was parsed to, as its Debug shows it.
        let parsed = |args: &[&str]| {
            let m = with_defaults(Cli::command(), &defaults_of(&saved))
                .try_get_matches_from(args)
                .unwrap();
            format!("{:?}", Cli::from_arg_matches(&m).unwrap().command)
        };
        for (args, expected) in [
            (&["payctl", "reconcile"][..], "mariadb_port: 23306"),
            (&["payctl", "dlq", "tail"], "kafka_port: 29092"),
            (
                &["payctl", "dlq", "tail", "--kafka-port", "1234"],
                "kafka_port: 1234",
            ),
            (&["payctl", "list"], "\"http://127.0.0.1:28080/api\""),
            (
                &["payctl", "list", "--api-url", "http://h/api"],
                "\"http://h/api\"",
            ),
            (&["payctl", "status"], "gateway_port: 28080"),
            (
                &["payctl", "status", "--gateway-port", "9999"],
                "gateway_port: 9999",
            ),
            (&["payctl", "status"], "redis_port: 16379"),
        ] {
            let c = parsed(args);
            assert!(c.contains(expected), "{args:?}: {c}");
        }
    }
}
