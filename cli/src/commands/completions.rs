//! `payctl completions SHELL`: a shell completion script for the whole command line.

use clap::{Args, CommandFactory};
use std::process::ExitCode;

#[derive(Debug, Args)]
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
