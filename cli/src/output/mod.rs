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

/// Rows as tab-separated lines (tabs and newlines inside a cell become spaces), with the header line
/// first when `header` is set: for `cut`, `awk` and `sort`.
pub fn tsv<I, R>(names: &[&str], rows: I, header: bool) -> String
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = String>,
{
    let clean = |c: &str| c.replace(['\t', '\n', '\r'], " ");
    let mut out = String::new();
    if header {
        out.push_str(&names.join("\t"));
        out.push('\n');
    }
    for r in rows {
        out.push_str(
            &r.into_iter()
                .map(|c| clean(&c))
                .collect::<Vec<_>>()
                .join("\t"),
        );
        out.push('\n');
    }
    out
}

/// Runs `show` every `every`, on a cleared terminal under a title line (like watch(1)), until Ctrl-C;
/// the first error ends it. Piped, each round is printed after the last.
pub async fn watch<F, Fut>(
    every: std::time::Duration,
    title: &str,
    mut show: F,
) -> anyhow::Result<std::process::ExitCode>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let terminal = std::io::stdout().is_terminal();
    loop {
        if terminal {
            print!("\x1b[2J\x1b[H");
        }
        println!(
            "Every {:.1?}: {title}   {}   (Ctrl-C to quit)",
            every,
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
        show().await?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(std::process::ExitCode::SUCCESS),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text without its ANSI escape sequences (`ESC [ … letter`).
    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn coloured_cells_keep_the_table_aligned() {
        let t = table(
            &["check", "ok"],
            [
                vec!["port 8080".to_string(), "\x1b[31m✗\x1b[0m".to_string()],
                vec!["port 3306".to_string(), "✓".to_string()],
                vec!["disk".to_string(), "\x1b[32mhealthy\x1b[0m".to_string()],
            ],
        );
        let widths: Vec<usize> = t.lines().map(|l| strip_ansi(l).chars().count()).collect();
        assert!(
            widths.iter().all(|w| *w == widths[0]),
            "rows of unequal display width {widths:?}:\n{t}"
        );
        assert!(t.contains("\x1b[31m✗\x1b[0m"), "the colour is kept:\n{t}");
    }
}

pub mod steps;
