//! A small YAML writer for the manifests `payctl k8s` renders: block style, keys in the order the
//! value holds them, strings plain when YAML reads them back as the same string and double-quoted
//! (JSON's syntax, which YAML accepts) otherwise, multi-line strings as literal blocks.
//!
//! Written by hand because the workspace has no YAML crate and the manifests need only this much:
//! objects, lists, strings, numbers and booleans, no anchors or tags.

use serde_json::Value;

/// One YAML document for `v` (an object), ending in a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(_) | Value::Array(_) => block(v, 0, &mut out),
        _ => {
            out += &scalar(v, 0);
            out.push('\n');
        }
    }
    out
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// `v` (a non-empty object or list) with its lines at `indent`.
fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, item) in m {
                out.push_str(&pad);
                out.push_str(&key(k));
                out.push(':');
                entry(item, indent, out);
            }
        }
        Value::Array(a) => {
            for item in a {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the others under it.
                        let mut inner = String::new();
                        block(item, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        block(item, indent + 2, out);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&scalar(item, indent + 2));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {}
    }
}

/// What follows `key:` — a scalar on the same line, or a block under it (a list at the key's own
/// indentation, as kubectl writes them).
fn entry(item: &Value, indent: usize, out: &mut String) {
    match item {
        Value::Object(_) if is_block(item) => {
            out.push('\n');
            block(item, indent + 2, out);
        }
        Value::Array(_) if is_block(item) => {
            out.push('\n');
            block(item, indent, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(item, indent + 2));
            out.push('\n');
        }
    }
}

fn key(k: &str) -> String {
    if plain(k) {
        k.to_owned()
    } else {
        Value::String(k.to_owned()).to_string()
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) if literal_block(s) => {
            let pad = " ".repeat(indent);
            let mut out = String::from("|");
            for line in s.lines() {
                out.push('\n');
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
            }
            out
        }
        Value::String(s) if plain(s) => s.clone(),
        Value::String(s) => Value::String(s.clone()).to_string(),
    }
}

/// A string that reads back the same as a literal block (`|`, one final newline kept): several lines,
/// exactly one newline at the end, no tabs or carriage returns, and a first line that does not start
/// with a space (the block's indentation is taken from it).
fn literal_block(s: &str) -> bool {
    s.ends_with('\n')
        && !s.ends_with("\n\n")
        && s.trim_end_matches('\n').contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.contains(['\t', '\r'])
        && !s.lines().any(|l| l.ends_with(' '))
}

/// A string YAML reads back as itself without quotes: letters, digits and `-_./`, starting with a
/// letter, digit or `/`, and not something YAML 1.1 or 1.2 would read as a number, boolean or null.
fn plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    let start_ok = first.is_ascii_alphanumeric() || first == '/';
    let lower = s.to_ascii_lowercase();
    let special = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf",
    ]
    .contains(&lower.as_str());
    let numeric = s.parse::<f64>().is_ok()
        || s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_digit() || "._".contains(c))
        || lower.starts_with("0x")
        || lower.starts_with("0o");
    chars_ok && start_ok && !special && !numeric
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_lists_and_scalars_are_written_in_block_style() {
        let v = json!({
            "kind": "Deployment",
            "metadata": {"name": "ingest", "labels": {"app.kubernetes.io/name": "ingest"}},
            "spec": {
                "replicas": 2,
                "args": ["--max-connections=1000", "yes", "8080", ""],
                "containers": [{"name": "a", "ports": [{"containerPort": 80}]}, {"name": "b"}],
                "empty": {},
                "none": [],
                "image": "mariadb:11.4",
                "conf": "line one\n  line two\n"
            }
        });
        let y = to_yaml(&v);
        let expected = [
            "kind: Deployment",
            "metadata:",
            "  labels:",
            "    app.kubernetes.io/name: ingest",
            "  name: ingest",
            "spec:",
            "  args:",
            "  - \"--max-connections=1000\"",
            "  - \"yes\"",
            "  - \"8080\"",
            "  - \"\"",
            "  conf: |",
            "    line one",
            "      line two",
            "  containers:",
            "  - name: a",
            "    ports:",
            "    - containerPort: 80",
            "  - name: b",
            "  empty: {}",
            "  image: \"mariadb:11.4\"",
            "  none: []",
            "  replicas: 2",
        ]
        .join("\n");
        // Keys in the order the value holds them: sorted, unless serde_json's preserve_order is on.
        let mut got: Vec<&str> = y.lines().collect();
        let mut want: Vec<&str> = expected.lines().collect();
        if got != want {
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{y}");
        }
    }

    #[test]
    fn strings_that_yaml_would_read_as_something_else_are_quoted() {
        for s in [
            "true", "No", "1", "1.5", "0x1F", "1_000", "", "a: b", "#x", "-x", "*a", "@x", "~",
        ] {
            assert!(!plain(s), "{s:?} must be quoted");
        }
        for s in [
            "payctl",
            "app.kubernetes.io/name",
            "/ready",
            "v1",
            "IfNotPresent",
            "10Gi",
            "250m",
        ] {
            assert!(plain(s), "{s:?} can be plain");
        }
    }
}
