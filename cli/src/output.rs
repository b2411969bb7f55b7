//! Output for people (tables, ✓/✗ marks, colour only on a terminal) and for machines (`--json`).

use serde::Serialize;
use std::io::IsTerminal;
use tabled::builder::Builder;
use tabled::settings::Style;

/// Colour only when stdout is a terminal and NO_COLOR is not set.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn green(s: &str) -> String {
    if colour() {
        format!("\x1b[32m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

pub fn red(s: &str) -> String {
    if colour() {
        format!("\x1b[31m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

/// A JSON value for a table cell: strings without their quotes, anything else as JSON.
pub fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// A service's health for a table: green when "healthy", red otherwise.
pub fn health(health: &str) -> String {
    if health == "healthy" {
        green(health)
    } else {
        red(health)
    }
}

pub fn mark(ok: bool) -> String {
    if ok {
        green("✓")
    } else {
        red("✗")
    }
}

/// A table with a header row.
pub fn table<I, R>(header: &[&str], rows: I) -> String
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = String>,
{
    let mut b = Builder::default();
    b.push_record(header.iter().map(|h| h.to_string()));
    for r in rows {
        b.push_record(r);
    }
    b.build().with(Style::sharp()).to_string()
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
