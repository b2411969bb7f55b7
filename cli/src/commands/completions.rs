//! Shell completion. `payctl completions SHELL` prints a static script for the whole command line;
//! `source <(COMPLETE=bash payctl)` registers dynamic completion instead (clap_complete's
//! `CompleteEnv`), which asks payctl at each Tab and so also knows the stack's service names (from the
//! saved plan, `ingest-2` included), the payment statuses and recent payment ids (from the API's list:
//! best effort, a short timeout, nothing on failure).

use crate::stack::{saved_plan, saved_ports};
use clap::{Args, CommandFactory};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::CompleteEnv;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl completions bash > /etc/bash_completion.d/payctl    static: subcommands and flags
  source <(COMPLETE=bash payctl)                             dynamic (in ~/.bashrc): also services and payment ids
  COMPLETE=zsh payctl > ~/.zfunc/_payctl                     the same for zsh (or fish, elvish, powershell)")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    shell: clap_complete::Shell,
}

pub fn exec(a: CompletionsArgs) -> anyhow::Result<ExitCode> {
    clap_complete::generate(
        a.shell,
        &mut crate::Cli::command(),
        "payctl",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}

/// The subcommands whose `ID` is a payment's id.
const PAYMENT_ID_COMMANDS: [&str; 5] = ["get", "capture", "refund", "void", "ledger"];

/// How long a Tab may wait for the API's list of payments.
const LIST_TIMEOUT: Duration = Duration::from_millis(800);

/// Answers a completion request (`COMPLETE=<shell>` in the environment) and exits; returns at once
/// otherwise. Call first thing: nothing may be written to stdout before.
pub fn complete_if_asked() {
    if std::env::var_os("COMPLETE").is_none_or(|v| v.is_empty() || v == "0") {
        return;
    }
    // The words being completed come after `--`; a --home among them picks the stack.
    let words: Vec<OsString> = std::env::args_os()
        .skip_while(|a| a != "--")
        .skip(1)
        .collect();
    let home = crate::given_home(&words).unwrap_or_else(|| match std::env::current_dir() {
        Ok(here) => crate::stack::find_home(&here),
        Err(_) => PathBuf::from(".payctl"),
    });
    CompleteEnv::with_factory(move || with_completers(crate::Cli::command(), &home)).complete();
}

/// `cmd` with value completers: service names for every `service` argument, payment ids for the
/// payment commands' `ID`.
fn with_completers(cmd: clap::Command, home: &Path) -> clap::Command {
    let name = cmd.get_name().to_owned();
    cmd.mut_args(|arg| match arg.get_id().as_str() {
        "service" => {
            let home = home.to_owned();
            arg.add(ArgValueCandidates::new(move || service_candidates(&home)))
        }
        "id" if PAYMENT_ID_COMMANDS.contains(&name.as_str()) => {
            let home = home.to_owned();
            arg.add(ArgValueCandidates::new(move || payment_candidates(&home)))
        }
        _ => arg,
    })
    .mut_subcommands(|sub| with_completers(sub, home))
}

/// The services of the saved stack (or of the default plan), in start order.
fn service_candidates(home: &Path) -> Vec<CompletionCandidate> {
    saved_plan(home, &saved_ports(home))
        .into_iter()
        .map(|s| CompletionCandidate::new(s.name))
        .collect()
}

/// The newest payments' ids, with their status and amount as help; none when the API does not answer
/// in time or there is no key.
fn payment_candidates(home: &Path) -> Vec<CompletionCandidate> {
    let url = std::env::var("PAYCTL_API_URL")
        .unwrap_or_else(|_| format!("http://127.0.0.1:{}/api", saved_ports(home).gateway_port));
    let key = std::env::var("PAYCTL_API_KEY").ok().or_else(|| {
        std::fs::read_to_string(crate::ops::endpoints::dev_key_file(home))
            .ok()
            .map(|k| k.trim().to_owned())
    });
    let Some(key) = key else {
        return Vec::new();
    };
    // Its own thread and runtime: completion runs inside main's runtime, which cannot block on one.
    let page = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let res = reqwest::Client::new()
                .get(format!("{}/payments?limit=20", url.trim_end_matches('/')))
                .bearer_auth(key)
                .timeout(LIST_TIMEOUT)
                .send()
                .await
                .ok()?;
            res.json::<serde_json::Value>().await.ok()
        })
    })
    .join()
    .ok()
    .flatten();
    page.as_ref()
        .and_then(|p| p["data"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let id = p["paymentId"].as_str()?;
            let help = format!(
                "{} {} {}",
                p["status"].as_str().unwrap_or("?"),
                p["amount"],
                p["currency"].as_str().unwrap_or("")
            );
            Some(CompletionCandidate::new(id).help(Some(help.into())))
        })
        .collect()
}
