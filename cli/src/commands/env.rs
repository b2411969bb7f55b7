//! `payctl env`: the shell variables that point other tools (and payctl from any folder) at the stack
//! `up` saved: `eval "$(payctl env)"`. Reads local state only (the saved plan and the dev key's file),
//! so it answers at once whether or not the stack runs.

use crate::ops::endpoints::{absolute, dev_key_file, Endpoints};
use crate::output;
use crate::stack;
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  eval \"$(payctl env)\"                    then curl \"$PAYCTL_API_URL/payments\" -H \"Authorization: Bearer $PAYCTL_API_KEY\"
  payctl env --json | jq -r .apiKey       the dev key alone")]
pub struct EnvArgs {
    /// Print {apiUrl, apiKey, home} as JSON instead of `export` lines.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Env {
    api_url: String,
    api_key: String,
    home: String,
}

pub fn exec(home: &Path, a: EnvArgs) -> anyhow::Result<ExitCode> {
    let home = absolute(home);
    let saved = stack::saved(&home).with_context(|| {
        format!(
            "no stack saved under {}; start one with: payctl up",
            home.display()
        )
    })?;
    let ports = stack::Ports::default().of(&saved);
    let key_file = dev_key_file(&home);
    let key = std::fs::read_to_string(&key_file)
        .with_context(|| format!("no dev API key in {} (run `payctl up`)", key_file.display()))?;
    let env = Env {
        api_url: Endpoints::of(&home, &ports).api_url,
        api_key: key.trim().to_owned(),
        home: home.display().to_string(),
    };
    if a.json {
        output::json(&env)?;
    } else {
        for (name, value) in [
            ("PAYCTL_API_URL", &env.api_url),
            ("PAYCTL_API_KEY", &env.api_key),
            ("PAYCTL_HOME", &env.home),
        ] {
            println!("export {name}={}", shell_quote(value));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `s` as one word for a POSIX shell: single-quoted, a quote inside written `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("sk_abc"), "'sk_abc'");
        assert_eq!(shell_quote("/a b/$HOME"), "'/a b/$HOME'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        // What a shell makes of it is the value again.
        let tricky = "it's $(rm -rf /) `x` \"y\"";
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(tricky)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), tricky);
    }
}
