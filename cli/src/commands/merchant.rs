//! `payctl merchant create | list | rotate-key`: merchants and their API keys, straight in the stack's
//! database. A key is printed once, when it is made (only its hash is stored); `list` shows the first
//! characters of each key, never the key.

use crate::ops::merchants;
use crate::output;
use crate::stack::Ports;
use clap::{Args, Subcommand};
use payctl_domain::MerchantId;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl merchant create \"Acme Shop\"                    id acme-shop; prints its API key once
  KEY=$(payctl merchant create Acme --id acme-2)
  payctl authorize --amount 1000 --api-key \"$KEY\"      pay as that merchant
  payctl merchant list
  payctl merchant rotate-key acme-shop                  a new key; the old one stops working")]
pub struct MerchantArgs {
    #[command(subcommand)]
    command: MerchantCommand,
}

#[derive(Debug, Subcommand)]
enum MerchantCommand {
    /// Add a merchant with a fresh API key, printed once on stdout (only its hash is stored).
    #[command(after_help = "Examples:
  payctl merchant create \"Acme Shop\"            id acme-shop
  payctl merchant create Acme --id acme-eu --json")]
    Create {
        /// The merchant's name (up to 128 characters); its id is made from it unless --id.
        #[arg(value_parser = name)]
        name: String,
        /// The merchant's id: 1–32 of [A-Za-z0-9_-] [default: the name, lower-cased, other characters as -].
        #[arg(long, value_parser = merchant_id)]
        id: Option<MerchantId>,
        /// Print {merchantId, name, apiKey, keyPrefix} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Ports,
    },
    /// Every merchant: id, name, when it was created and its key's first characters.
    #[command(after_help = "Examples:
  payctl merchant list
  payctl merchant list --json | jq -r '.[].merchantId'")]
    List {
        /// Print [{merchantId, name, createdAt, keyPrefix}] as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Ports,
    },
    /// Give a merchant a new API key, printed once; the old key stops working (within the API's key
    /// cache time, which the output states).
    #[command(after_help = "Examples:
  payctl merchant rotate-key acme-shop
  payctl merchant rotate-key dev-merchant         also rewrites .payctl/secrets/dev-merchant.key")]
    RotateKey {
        /// The merchant's id.
        #[arg(value_parser = merchant_id)]
        id: MerchantId,
        /// Print {merchantId, apiKey, keyPrefix, oldKeyValidForSeconds} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Ports,
    },
}

fn merchant_id(s: &str) -> Result<MerchantId, String> {
    MerchantId::parse("id", s).map_err(|e| format!("a merchant id {}", e.reason))
}

fn name(s: &str) -> Result<String, String> {
    let s = s.trim();
    match s.chars().count() {
        0 => Err("the name is empty".into()),
        1..=128 => Ok(s.to_owned()),
        n => Err(format!("the name has {n} characters; at most 128")),
    }
}

/// The id a name gives: lower-case letters and digits, every other run of characters one `-`, at most
/// 32 long; None when nothing is left.
fn id_from(name: &str) -> Option<MerchantId> {
    let mut id = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    let id: String = id.chars().take(MerchantId::MAX_LEN).collect();
    MerchantId::parse("id", id.trim_end_matches('-')).ok()
}

pub async fn exec(home: &Path, a: MerchantArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        MerchantCommand::Create {
            name,
            id,
            json,
            ports,
        } => {
            let id = match id.or_else(|| id_from(&name)) {
                Some(id) => id,
                None => {
                    eprintln!(
                        "error: no id can be made from the name {name:?}; give one with --id (1–32 of A-Z a-z 0-9 _ -)"
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            let key = merchants::create(home, &ports, &id, &name).await?;
            eprintln!(
                "created merchant {id} ({name}); its API key is below: store it now, it is not shown again"
            );
            if json {
                output::json(&json!({
                    "merchantId": id.as_str(),
                    "name": name,
                    "apiKey": key.expose(),
                    "keyPrefix": key.prefix(),
                }))?;
            } else {
                println!("{}", key.expose());
            }
        }
        MerchantCommand::List { json, ports } => {
            let rows = merchants::list(home, &ports).await?;
            if json {
                output::json(&rows)?;
            } else {
                println!(
                    "{}",
                    output::table(
                        &["merchant", "name", "created", "key"],
                        rows.into_iter().map(|r| [
                            r.merchant_id,
                            r.name,
                            r.created_at,
                            format!("{}…", r.key_prefix)
                        ])
                    )
                );
            }
        }
        MerchantCommand::RotateKey { id, json, ports } => {
            let key = merchants::rotate(home, &ports, &id).await?;
            let grace = merchants::old_key_grace(home, &ports).await;
            let when = if grace == 0 {
                "at once (no API instance runs, so none has it cached)".to_owned()
            } else {
                format!(
                    "within {grace} s (each API instance trusts a key it has seen for that long: APP_AUTH_KNOWN_KEY_TTL_SECONDS)"
                )
            };
            eprintln!(
                "new API key for {id} below: store it now, it is not shown again; the old key stops working {when}"
            );
            if json {
                output::json(&json!({
                    "merchantId": id.as_str(),
                    "apiKey": key.expose(),
                    "keyPrefix": key.prefix(),
                    "oldKeyValidForSeconds": grace,
                }))?;
            } else {
                println!("{}", key.expose());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_made_from_the_name() {
        let id = |n: &str| id_from(n).map(|i| i.as_str().to_owned());
        assert_eq!(id("Acme Shop").as_deref(), Some("acme-shop"));
        assert_eq!(id("  Müller & Söhne!! ").as_deref(), Some("m-ller-s-hne"));
        assert_eq!(id("x".repeat(40).as_str()).map(|s| s.len()), Some(32));
        assert_eq!(id("a-b_c").as_deref(), Some("a-b-c"));
        assert_eq!(id("한글"), None);
        assert_eq!(id("!!!"), None);
    }

    #[test]
    fn bad_names_and_ids_are_refused() {
        assert!(name("   ").is_err());
        assert!(name(&"n".repeat(129)).is_err());
        assert_eq!(name(" Acme ").unwrap(), "Acme");
        assert!(merchant_id("bad id").is_err());
        assert!(merchant_id(&"a".repeat(33)).is_err());
        assert!(merchant_id("ok_id-1").is_ok());
    }
}
