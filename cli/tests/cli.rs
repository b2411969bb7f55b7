//! payctl as a user runs it: the real binary, real services, real exit codes.

mod common;

use common::free_ports;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn payctl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payctl"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("PAYCTL_API_KEY")
        .env_remove("PAYCTL_API_URL")
        // These tests are about the native runtime, whether or not a Docker engine answers here.
        .env("PAYCTL_RUNTIME", "native")
        .output()
        .expect("payctl runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn temp_home(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("payctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn usage_errors_exit_2_and_help_teaches_with_examples() {
    let home = temp_home("usage");
    let o = payctl(&home, &["get"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("<ID>"));
    assert_eq!(payctl(&home, &["frobnicate"]).status.code(), Some(2));
    for bad_scale in ["web=2", "ingest=0", "ingest=many"] {
        let o = payctl(&home, &["up", "--scale", bad_scale]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "--scale {bad_scale}: {:?}",
            text(&o)
        );
    }
    // No engine at DOCKER_HOST: one clear line naming it, nothing started; with --runtime auto too
    // (the user configured that engine: no silent fall-back to native).
    for runtime in ["docker", "auto"] {
        let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
            .arg("--home")
            .arg(&home)
            .args(["up", "--runtime", runtime])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{runtime}: {:?}", text(&o));
        let (_, err) = text(&o);
        assert!(
            err.starts_with("error: the Docker engine does not answer"),
            "{runtime}: {err}"
        );
        assert!(
            err.contains("unix:///nonexistent/docker.sock (DOCKER_HOST)"),
            "{runtime}: {err}"
        );
        assert!(!home.join("mariadb").exists());
    }
    assert_eq!(
        payctl(&home, &["authorize", "--amount", "ten"])
            .status
            .code(),
        Some(2)
    );
    let help = payctl(&home, &["--help"]);
    assert!(help.status.success());
    let (out, _) = text(&help);
    assert!(
        out.contains("Examples:") && out.contains("payctl smoke"),
        "{out}"
    );
}

#[test]
fn k8s_writes_the_manifests_and_check_names_a_stale_file() {
    let home = temp_home("k8s");
    let out = home.join("k8s");
    let out_arg = out.to_str().unwrap();
    let o = payctl(&home, &["k8s", "--out", out_arg]);
    assert!(o.status.success(), "{:?}", text(&o));
    for overlay in ["dev", "production"] {
        assert!(out
            .join("overlays")
            .join(overlay)
            .join("kustomization.yaml")
            .is_file());
    }
    let o = payctl(&home, &["k8s", "--check", "--out", out_arg]);
    assert!(o.status.success(), "{:?}", text(&o));
    // The repository's own manifests are what this payctl renders.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .args(["k8s", "--check"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(o.status.success(), "deploy/k8s is stale: {:?}", text(&o));
    // kubectl (when here) renders every overlay of what was written.
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
    {
        for overlay in ["dev", "production"] {
            let o = Command::new("kubectl")
                .arg("kustomize")
                .arg(out.join("overlays").join(overlay))
                .output()
                .unwrap();
            assert!(o.status.success(), "{overlay}: {:?}", text(&o));
            assert!(String::from_utf8_lossy(&o.stdout).contains("kind: Deployment"));
        }
    }
    // A changed file: exit 1 and one line naming it.
    let stale = out.join("base/ingest.yaml");
    std::fs::write(&stale, "changed by hand\n").unwrap();
    let o = payctl(&home, &["k8s", "--check", "--out", out_arg]);
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout} {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("base/ingest.yaml"),
        "{err}"
    );
    assert!(!err.contains("consumer.yaml"), "{err}");
    let (help, _) = text(&payctl(&home, &["k8s", "--help"]));
    assert!(
        help.contains("Examples:") && help.contains("payctl k8s --check"),
        "{help}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn usage_mistakes_exit_2_in_one_line_before_any_network() {
    let home = temp_home("usage2");
    for args in [
        &["logs", "foo"][..],
        &["list", "--status", "refunded"],
        &["list", "--limit", "0"],
        &["list", "--limit", "101"],
        &["authorize", "--amount", "0"],
        &["authorize", "--amount", "-5"],
        &["capture", "pay_1", "--amount", "0"],
        &["load", "--duration", "abc"],
        &["void", "pay_1", "--amount", "5"],
        &["capture", "pay_1", "--reason", "why"],
        &["down", "--volumes", "--yes", "--project", "payctl-image"],
        &["up", "--runtime", "docker", "--project", "my stack"],
    ] {
        let o = payctl(&home, args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("k6"), "{args:?} ran k6: {err}");
    }
    let (_, err) = text(&payctl(&home, &["authorize", "--amount", "-5"]));
    assert!(err.contains("amount must be ≥ 1"), "{err}");
    let (out, _) = text(&payctl(&home, &["--help"]));
    assert!(
        out.contains("Exit codes:") && out.contains("2  usage error"),
        "{out}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    let home = temp_home("completions");
    for shell in ["bash", "zsh", "fish"] {
        let o = payctl(&home, &["completions", shell]);
        assert!(o.status.success(), "{shell}");
        assert!(text(&o).0.contains("payctl"), "{shell} script names payctl");
    }
}

#[test]
fn doctor_reports_programs_ports_disk_and_memory_as_json() {
    let home = temp_home("doctor");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let o = payctl(&home, &["doctor", "--json", "--redis-port", &port]);
    // A port held by another process is a failed check: exit 1, naming the port in one line.
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("port {port} (redis)")), "{err}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_camel_case(&r);
    // Every port of the stack definition, the gateway's and Prometheus' included.
    let services: Vec<&str> = r["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["service"].as_str().unwrap())
        .collect();
    for s in [
        "mariadb",
        "redis",
        "kafka",
        "ingest",
        "consumer",
        "prometheus",
        "gateway",
    ] {
        assert!(services.contains(&s), "{s} missing from {services:?}");
    }
    let mariadb = r["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mariadbd")
        .unwrap();
    assert!(
        mariadb["version"].as_str().unwrap().contains("MariaDB"),
        "{mariadb}"
    );
    let redis = r["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == "redis")
        .unwrap();
    assert_eq!(redis["free"], false);
    assert!(redis["holder"]
        .as_str()
        .unwrap()
        .contains(&format!("pid {}", std::process::id())));
    assert!(r["diskFreeBytes"].as_u64().unwrap() > 0);
    assert!(r["memoryAvailableBytes"].as_u64().unwrap() > 0);
}

#[test]
fn up_with_no_install_names_the_exact_commands_for_what_is_missing() {
    let home = temp_home("noinstall");
    // A machine without tansu: no cargo bin directory anywhere on the search path.
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .args(["--home", &home.display().to_string(), "up", "--no-install"])
        .env("PATH", "/usr/bin:/bin")
        .env("PAYCTL_RUNTIME", "native")
        .env("HOME", "/nonexistent")
        .env("CARGO_HOME", "/nonexistent")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("missing tansu"), "{err}");
    assert!(
        err.contains("cargo install tansu --version 0.6.0 --locked --features dynostore,libsql"),
        "{err}"
    );
    assert!(!home.join("mariadb").exists(), "nothing started");
}

#[test]
fn api_commands_without_a_key_fail_in_one_line() {
    let home = temp_home("nokey");
    // Something answers, so that the missing key is what stops it.
    let url = html_server();
    let o = payctl(&home, &["authorize", "--amount", "1000", "--api-url", &url]);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(err.starts_with("error: no API key"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn up_refuses_a_busy_port_before_starting_anything() {
    let home = temp_home("busy");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let o = payctl(&home, &["up", "--mariadb-port", &port]);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(
        err.contains(&format!("port {port}")) && err.contains("mariadb"),
        "{err}"
    );
    let me = format!("(pid {})", std::process::id());
    assert!(err.contains(&me), "the holder (this test) is named: {err}");
    assert!(!home.join("mariadb").exists(), "nothing was started");
}

#[test]
fn a_service_that_fails_to_start_shows_its_log_and_up_stops_what_it_started() {
    let home = temp_home("fail");
    let (_, args) = free_ports();
    let mut up = vec![
        "--home".to_string(),
        home.display().to_string(),
        "up".to_string(),
    ];
    up.extend(args.iter().cloned());
    // A configuration mistake the API refuses at start-up.
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .args(&up)
        .env("APP_RATE_LIMIT_AUTHORIZE_CAPACITY", "lots")
        .env("PAYCTL_RUNTIME", "native")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    let _cleanup = Stack {
        home: &home,
        ports: args.clone(),
    };
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("ingest did not become ready"), "{err}");
    assert!(
        err.contains("lots"),
        "the service's own log lines are shown: {err}"
    );
    let mut status = vec!["status", "--json"];
    status.extend(args.iter().map(String::as_str));
    let o = payctl(&home, &status);
    assert_eq!(o.status.code(), Some(3));
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = status["services"].as_array().unwrap();
    assert!(
        rows.iter().all(|r| r["health"] == "stopped"),
        "everything this run started was stopped: {rows:#?}"
    );
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every PromQL expression of the Grafana dashboard and of the alert rules.
fn monitoring_exprs() -> Vec<String> {
    let mut exprs = dashboard_exprs();
    exprs.extend(alert_exprs());
    exprs
}

/// Every PromQL expression of the Grafana dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let dash: Value = serde_json::from_str(&repo_file(
        "monitoring/grafana/dashboards/payment-overview.json",
    ))
    .unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() > 20, "the dashboard has its queries");
    exprs
}

/// Every alert rule's expression.
fn alert_exprs() -> Vec<String> {
    let mut exprs = Vec::new();
    // alerts.yml: `expr: <one line>` or `expr: |` followed by more-indented lines.
    let alerts = repo_file("monitoring/prometheus/alerts.yml");
    let lines: Vec<&str> = alerts.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        rules += 1;
        let rest = rest.trim();
        if rest == "|" {
            let body: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.len() - l.trim_start().len() > indent.len())
                .map(|l| l.trim())
                .collect();
            exprs.push(body.join(" "));
        } else {
            exprs.push(rest.to_owned());
        }
    }
    assert_eq!(rules, 16, "every alert rule was read");
    exprs
}

/// The metric names a PromQL expression reads: identifiers that are not functions, keywords, label
/// names (inside braces or by/without lists) or durations.
fn promql_metric_names(expr: &str) -> Vec<String> {
    const WORDS: [&str; 12] = [
        "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "and", "or",
        "unless",
    ];
    // Drop label matchers, range selectors, strings and grouping lists.
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut in_range = false;
    for c in expr.chars() {
        match c {
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => in_range = true,
            ']' => in_range = false,
            _ if depth_brace > 0 || in_range => {}
            c => cleaned.push(c),
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            cleaned.push(' ');
        }
    }
    let mut names = Vec::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        if chars[i].is_ascii_alphabetic() || chars[i] == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let is_call = next == Some(&'(');
            if word == "by" || word == "without" {
                after_grouping = true;
            } else if !is_call && !WORDS.contains(&word.as_str()) && !after_grouping {
                names.push(word);
            }
        } else {
            if chars[i] == ')' {
                after_grouping = false;
            }
            if chars[i].is_ascii_digit() || chars[i] == '.' {
                // Skip numbers (and their exponent/unit letters) whole.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                continue;
            }
            i += 1;
        }
    }
    names
}

#[test]
fn promql_names_are_read_from_expressions() {
    assert_eq!(
        promql_metric_names(
            "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{job=\"ingest\"}[1m]))) * 1000"
        ),
        ["http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        promql_metric_names(
            "sum(rate(a_total{status=~\"5..\"}[5m])) / sum(rate(b_total[5m])) > 0.01"
        ),
        ["a_total", "b_total"]
    );
    assert_eq!(
        promql_metric_names("up{job=~\"ingest|consumer\"} == 0"),
        ["up"]
    );
}

/// The settlement worker's figures on the dashboard and in the alerts (issue 15) name metrics it
/// registers — checked against its registry, without a stack. A payout is recorded first: the
/// per-currency payout series exist only once a currency has one.
#[test]
fn settlement_panels_and_alerts_read_metrics_the_settlement_worker_registers() {
    let metrics = pay_settlement::metrics::Metrics::new();
    metrics.set_payouts(&pay_settlement::gauges::Payouts {
        by_currency: vec![("KRW".into(), 1, 9750)],
        unpaid_settled: 0,
    });
    let exported: std::collections::BTreeSet<String> = metrics
        .render()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    for expr in monitoring_exprs() {
        for name in promql_metric_names(&expr) {
            if name.starts_with("settlement_") {
                assert!(
                    exported.contains(&name),
                    "{name} (in: {expr}) is not a settlement worker metric"
                );
            }
        }
    }
    let on_dashboard: Vec<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| promql_metric_names(e))
        .collect();
    let alerted: Vec<String> = alert_exprs()
        .iter()
        .flat_map(|e| promql_metric_names(e))
        .collect();
    for (name, alert) in [
        ("settlement_records", false),
        ("settlement_oldest_pending_age_seconds", true),
        ("settlement_acquirer_requests_total", true),
        ("settlement_acquirer_request_duration_seconds_bucket", true),
        ("settlement_breaker_state", true),
        ("settlement_dlq_total", true),
        ("settlement_payouts", false),
        ("settlement_payout_net", false),
        ("settlement_unpaid_settled_records", true),
    ] {
        assert!(
            on_dashboard.iter().any(|n| n == name),
            "no dashboard panel shows {name}"
        );
        assert!(
            !alert || alerted.iter().any(|n| n == name),
            "no alert rule reads {name}"
        );
    }
}

/// What a dashboard or alert names must be exported by a service; Prometheus scrapes every service and
/// has loaded the alert rules.
fn monitoring_matches_the_running_services(ports: &[u16]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut exported = std::collections::BTreeSet::new();
        // The API, the consumer, the acquirer and the settlement worker.
        for port in [ports[3], ports[4], ports[7], ports[8]] {
            let body = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            for line in body
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
            {
                let name = line.split(['{', ' ']).next().unwrap();
                exported.insert(name.to_owned());
            }
        }
        let mut missing = std::collections::BTreeSet::new();
        for expr in monitoring_exprs() {
            for name in promql_metric_names(&expr) {
                // `up` is written by Prometheus itself for every target. The payout series have a
                // currency label and appear with the first payout, which this stack has not made
                // (settlement_panels_and_alerts_read_metrics_the_settlement_worker_registers checks
                // their names).
                let appears_with_data = ["settlement_payouts", "settlement_payout_net"];
                if name != "up"
                    && !appears_with_data.contains(&name.as_str())
                    && !exported.contains(&name)
                {
                    missing.insert(format!("{name} (in: {expr})"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "dashboard/alert queries name metrics no service exports:\n{}",
            missing.into_iter().collect::<Vec<_>>().join("\n")
        );

        let prometheus = format!("http://127.0.0.1:{}", ports[6]);
        let get = |path: String| {
            let http = http.clone();
            async move {
                let v: Value = http.get(path).send().await.unwrap().json().await.unwrap();
                v
            }
        };
        // The jobs whose every target Prometheus reports up.
        let jobs_up = |up: &Value| -> Vec<String> {
            up["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["value"][1] == "1")
                .filter_map(|r| r["metric"]["job"].as_str().map(str::to_owned))
                .collect()
        };
        let mut up = Value::Null;
        for _ in 0..100 {
            up = get(format!("{prometheus}/api/v1/query?query=up")).await;
            let jobs = jobs_up(&up);
            if ["ingest", "consumer", "acquirer", "settlement"]
                .iter()
                .all(|job| jobs.iter().any(|j| j == job))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let jobs = jobs_up(&up);
        assert!(
            ["ingest", "consumer", "acquirer", "settlement"]
                .iter()
                .all(|job| jobs.iter().any(|j| j == job)),
            "Prometheus scrapes every service: {up:#}"
        );
        let rules = get(format!("{prometheus}/api/v1/rules")).await;
        // Every group's: the payments' and the settlement's.
        let loaded: usize = rules["data"]["groups"].as_array().map_or(0, |groups| {
            groups
                .iter()
                .map(|g| g["rules"].as_array().map_or(0, Vec::len))
                .sum()
        });
        assert_eq!(loaded, 16, "alert rules loaded: {rules:#}");
    });
}

#[test]
fn monitoring_files_pass_promtool_and_the_alert_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring/prometheus");
    let promtool = payctl_stack::install::require("promtool").expect("promtool (apt: prometheus)");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let o = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "promtool {args:?}: {:?}", text(&o));
    }
}

/// The Jenkinsfile: braces balance, the stages come in the documented order, and every payctl command
/// it runs parses with this payctl (`--help` after the arguments makes clap check each one, then exit 0).
#[test]
fn jenkinsfile_stages_run_real_payctl_commands() {
    let jf = repo_file("Jenkinsfile");
    let code: String = jf
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in code.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{') => depth += 1,
            (None, '}') => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "unbalanced braces");
    }
    assert_eq!((depth, quote), (0, None), "braces and quotes balance");
    let stages: Vec<&str> = jf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("stage('"))
        .filter_map(|l| l.split('\'').next())
        .collect();
    assert_eq!(
        stages,
        [
            "Checkout",
            "Test",
            "Build",
            "Up",
            "Smoke",
            "Circuit breaker",
            "Load",
            "Chaos",
            "Settle",
            "Reconcile"
        ]
    );
    assert!(
        jf.contains("sh './scripts/test.sh'"),
        "the README's test command"
    );
    assert!(jf.contains("githubPush()") && jf.contains("AUTO_CLEANUP"));
    let calls: Vec<Vec<&str>> = jf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sh '$PAYCTL "))
        // The command itself, without a shell `|| …` tail (diagnostics in `post { failure }`) or a
        // redirection of its output.
        .map(|l| {
            let command = l.trim_end_matches('\'').split("||").next().unwrap();
            let command = command.split('>').next().unwrap();
            command.split_whitespace().collect()
        })
        .collect();
    let subcommands: Vec<&str> = calls.iter().map(|c| c[0]).collect();
    for needed in [
        "up",
        "smoke",
        "cb",
        "load",
        "chaos",
        "settle",
        "reconcile",
        "down",
    ] {
        assert!(
            subcommands.contains(&needed),
            "Jenkinsfile runs payctl {needed}"
        );
    }
    let home = temp_home("jenkinsfile");
    for call in &calls {
        let mut args = call.clone();
        args.push("--help");
        let o = payctl(&home, &args);
        assert!(
            o.status.success(),
            "payctl {}: {:?}",
            call.join(" "),
            text(&o)
        );
    }
}

/// Stops the stack even when an assertion fails half-way.
struct Stack<'a> {
    home: &'a Path,
    ports: Vec<String>,
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        let _ = payctl(self.home, &["down", "--volumes", "--yes"]);
    }
}

impl Stack<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.ports.iter().map(String::as_str));
        payctl(self.home, &all)
    }

    /// `payctl up` with extra environment for the services (they inherit payctl's).
    fn up_with_env(&self, env: &[(&str, &std::ffi::OsStr)]) -> Output {
        let mut all = vec![
            "--home".to_string(),
            self.home.display().to_string(),
            "up".to_string(),
        ];
        all.extend(self.ports.iter().cloned());
        Command::new(env!("CARGO_BIN_EXE_payctl"))
            .args(&all)
            .env("PAYCTL_RUNTIME", "native")
            .envs(env.iter().copied())
            .output()
            .expect("payctl runs")
    }

    /// Waits until `payctl reconcile` is clean (changes still on their way to the ledger settle), or
    /// returns its last report.
    fn reconciled_within(&self, timeout: std::time::Duration) -> Result<(), String> {
        let started = std::time::Instant::now();
        loop {
            let o = self.run(&["reconcile", "--settle-seconds", "0"]);
            if o.status.success() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(text(&o).0);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// `payctl up` with a breaker that reacts in seconds rather than the production half-minute; the
/// services inherit these variables.
fn up_fast_breaker(stack: &Stack) -> Output {
    stack.up_with_env(&[
        ("APP_CB_KAFKA_WAIT_DURATION", "2000".as_ref()),
        ("APP_KAFKA_DELIVERY_TIMEOUT_MS", "2000".as_ref()),
    ])
}

#[test]
fn bench_in_miniature_reports_every_part_and_its_driver_keeps_the_schedule() {
    let home = temp_home("bench");
    let (ports, port_args) = free_ports();
    let stack = Stack {
        home: &home,
        ports: port_args.clone(),
    };
    let o = stack.up_with_env(&[]);
    assert!(o.status.success(), "up failed: {:?}", text(&o));
    let api_url = format!("http://127.0.0.1:{}/api", ports[5]);

    // Every part runs and reports (the figures themselves are not asserted): the builtin driver steps,
    // k6 cross-checks the sustained rate, and each step shows the API's commits and the generator's CPU.
    let o = stack.run(&[
        "bench",
        "--baseline-seconds",
        "1",
        "--step",
        "2s",
        "--rates",
        "10",
        "--full-rates",
        "5",
        "--broker-messages",
        "200",
        // Generous: a debug build on a loaded 2-core CI machine; speed is measured by benchmarks.
        "--p99-ms",
        "2000",
        "--api-url",
        &api_url,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "bench failed:\n{out}\n{err}");
    // The tables in the test's log: what a reader of a CI run can compare with BENCHMARKS.md's.
    eprintln!("{out}");
    for figure in [
        "database baseline",
        "broker alone",
        "authorize sustained",
        "full flow sustained",
        "ledger catch-up",
        "peak RSS ingest",
        "reconcile: clean",
        // The step tables: commits next to requests, the generator's CPU apart from the rest.
        "requests/s",
        "commits/s",
        "batch p50",
        "batch p99",
        "generator",
        "other",
        "cross-check: k6 at 10/s",
        "cross-check: k6 at 5/s",
    ] {
        assert!(out.contains(figure), "bench output lacks {figure}:\n{out}");
    }
    assert!(
        out.lines().any(|l| l.contains("│ k6 ")),
        "no k6 row in the step tables:\n{out}"
    );

    // The driver itself, as JSON: 50 flows/s held for 2 s after k6's 1 s ramp from 5/s is 127 flows
    // (27 in the ramp, 100 at the rate), every one started on schedule and answered.
    let o = stack.run(&[
        "bench",
        "--json",
        "--baseline-seconds",
        "1",
        "--broker-messages",
        "0",
        "--step",
        "2s",
        "--rates",
        "50",
        "--full-rates",
        "5",
        "--no-cross-check",
        "--p99-ms",
        "2000",
        "--api-url",
        &api_url,
    ]);
    assert!(o.status.success(), "bench --json failed: {:?}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {:?}", text(&o)));
    assert_camel_case(&report);
    let step = &report["authorize"]["steps"][0];
    assert_eq!(
        (
            step["driver"].as_str(),
            step["rate"].as_u64(),
            step["flows"].as_f64(),
            step["errorPct"].as_f64(),
            step["dropped"].as_f64(),
            step["passed"].as_bool(),
        ),
        (
            Some("builtin"),
            Some(50),
            Some(127.0),
            Some(0.0),
            Some(0.0),
            Some(true)
        ),
        "{step:#}"
    );
    assert_eq!(step["latency"][0]["request"], "authorize", "{step:#}");
    assert_eq!(step["latency"][0]["count"], 127, "{step:#}");
    let full = &report["full"]["steps"][0];
    let requests: Vec<&str> = full["latency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["request"].as_str().unwrap())
        .collect();
    assert_eq!(requests, ["authorize", "capture", "refund"], "{full:#}");
    assert_eq!(full["errorPct"].as_f64(), Some(0.0), "{full:#}");
    // The figures are there whatever their values: the API's commits (null from a server without
    // group commit) and the CPU per flow with the generator apart.
    assert!(step.get("batches").is_some(), "{step:#}");
    let processes: Vec<&str> = step["cpuPerFlow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["process"].as_str().unwrap())
        .collect();
    assert!(
        processes.ends_with(&["generator", "other"]) && processes.contains(&"ingest"),
        "{processes:?}"
    );
    assert_eq!(report["authorize"]["sustained"], 50, "{report:#}");
    assert_eq!(report["authorize"]["crossCheck"], Value::Null);
    assert_eq!(report["reconcile"]["clean"], true, "{report:#}");
}

#[test]
fn up_smoke_reconcile_down_end_to_end_on_the_native_runtime() {
    let home = temp_home("e2e");
    let (ports, port_args) = free_ports();
    let stack = Stack {
        home: &home,
        ports: port_args.clone(),
    };

    let o = up_fast_breaker(&stack);
    let (out, err) = text(&o);
    assert!(o.status.success(), "up failed:\n{out}\n{err}");
    assert!(out.contains("API key:") && out.contains("sk_"), "{out}");

    let o = stack.run(&["status", "--json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_camel_case(&status);
    let services: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "mariadb",
            "redis",
            "kafka",
            "acquirer",
            "ingest",
            "consumer",
            "settlement",
            "prometheus",
            "gateway"
        ]
    );
    assert!(status["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["health"] == "healthy" && s["pid"].is_u64()));

    let api = [
        "--api-url".to_string(),
        format!("http://127.0.0.1:{}/api", ports[5]),
    ];
    let api: Vec<&str> = api.iter().map(String::as_str).collect();
    let smoke = payctl(&home, &[&["smoke"], &api[..]].concat());
    let (out, err) = text(&smoke);
    assert!(smoke.status.success(), "smoke failed:\n{out}\n{err}");
    assert!(out.contains("smoke passed"), "{out}");
    // For scripts and CI: the steps as JSON and as JUnit.
    let junit = home.join("smoke.xml");
    let junit_arg = junit.display().to_string();
    let smoke = payctl(
        &home,
        &[&["smoke", "--json", "--junit", &junit_arg], &api[..]].concat(),
    );
    assert!(smoke.status.success(), "{:?}", text(&smoke));
    let report: Value = serde_json::from_slice(&smoke.stdout).unwrap();
    assert_camel_case(&report);
    assert_eq!(report["passed"], true, "{report:#}");
    let names: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 9, "{report:#}");
    assert_eq!(
        names[6..],
        [
            "settlement: capture and refunds settled",
            "settle today twice: paid out once",
            "reconcile: today's statement matches"
        ],
        "{report:#}"
    );
    assert!(report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ok"] == true && s["seconds"].is_f64()));
    assert!(report["paymentId"].is_string());
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"payctl smoke\" tests=\"9\" failures=\"0\""),
        "{xml}"
    );

    let junit = home.join("cb.xml");
    let junit_arg = junit.display().to_string();
    let cb = stack.run(
        &[
            &["cb", "test", "--payments", "10", "--junit", &junit_arg],
            &api[..],
        ]
        .concat(),
    );
    let (out, err) = text(&cb);
    assert!(cb.status.success(), "cb test failed:\n{out}\n{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"10\" failures=\"0\""), "{xml}");
    assert!(xml.contains("name=\"6. breaker OPEN\""), "{xml}");
    eprintln!("{out}");
    for step in [
        "breaker OPEN",
        "HALF_OPEN → CLOSED",
        "outbox drained",
        "one event, its ledger legs",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with('✓') && l.contains(step)),
            "step {step} not passed:\n{out}"
        );
    }
    assert!(!out.contains('✗'), "{out}");

    for kind in ["invalid-json", "unknown-payment"] {
        let o = stack.run(&["dlq", "inject", kind]);
        assert!(o.status.success(), "inject {kind}: {:?}", text(&o));
    }
    let mut dead: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let o = stack.run(&["dlq", "tail", "--json"]);
        assert!(o.status.success(), "{:?}", text(&o));
        dead = serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap();
        if dead.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kinds: Vec<&str> = dead
        .iter()
        .map(|d| d["record"]["errorType"].as_str().unwrap_or("?"))
        .collect();
    assert!(
        kinds.contains(&"InvalidJson") && kinds.contains(&"UnknownPayment"),
        "{dead:#?}"
    );
    assert!(text(&stack.run(&["dlq", "tail"])).0.contains("InvalidJson"));
    assert_camel_case(&Value::from(dead.clone()));

    // A short real k6 run through the gateway: figures printed, summary written, ledger reconciled.
    let summary = home.join("summary.json");
    let mut load = vec![
        "load".to_string(),
        "--rate".into(),
        "20".into(),
        "--duration".into(),
        "3s".into(),
        "--flow".into(),
        "full".into(),
        "--merchants".into(),
        "3".into(),
        // Generous: a debug build on a loaded 2-core CI machine; speed is measured by benchmarks.
        "--p99-ms".into(),
        "2000".into(),
        "--summary".into(),
        summary.display().to_string(),
        "--api-url".into(),
        format!("http://127.0.0.1:{}/api", ports[5]),
    ];
    load.extend(port_args.iter().cloned());
    let load: Vec<&str> = load.iter().map(String::as_str).collect();
    let o = payctl(&home, &load);
    let (out, err) = text(&o);
    assert!(o.status.success(), "load failed:\n{out}\n{err}");
    for figure in [
        "achieved rate",
        "p99 ms",
        "dropped iterations",
        "ledger caught up",
        "reconcile: no new violations",
    ] {
        assert!(out.contains(figure), "load output lacks {figure}:\n{out}");
    }
    let k6: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert!(
        k6["metrics"]["payment_flows_completed"]["count"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(k6["metrics"]["payment_errors"]["value"].as_f64(), Some(0.0));

    monitoring_matches_the_running_services(&ports);

    let o = stack.run(&["top", "--json", "--interval", "0.5"]);
    assert!(o.status.success(), "top: {:?}", text(&o));
    let top: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_camel_case(&top);
    assert_eq!(
        top["breaker"][0],
        serde_json::json!(["ingest", "CLOSED"]),
        "{top:#}"
    );
    assert_eq!(
        top["settlement"]["breaker"][0][0], "settlement",
        "the settlement worker's figures: {top:#}"
    );
    // The broker's figures: the DLQ's records as `dlq tail` lists them, and no lag once all is applied.
    let tailed =
        serde_json::from_slice::<Vec<Value>>(&stack.run(&["dlq", "tail", "--json"]).stdout)
            .unwrap()
            .len();
    assert_eq!(top["dlqRecords"].as_u64(), Some(tailed as u64), "{top:#}");
    assert!(tailed >= 2, "the two injected");
    let mut lag = Value::Null;
    for _ in 0..50 {
        let o = stack.run(&["top", "--json", "--interval", "0.2"]);
        lag = serde_json::from_slice::<Value>(&o.stdout).unwrap()["consumerLag"].clone();
        if lag == 0 {
            break;
        }
    }
    assert_eq!(
        lag, 0,
        "the consumer group's lag once everything is applied"
    );
    assert_eq!(top["unreachable"], serde_json::json!([]), "{top:#}");
    let o = stack.run(&["top", "--once", "--interval", "0.5"]);
    let (out, _) = text(&o);
    assert!(
        o.status.success() && out.contains("outbox backlog") && out.contains("API p99"),
        "{out}"
    );

    // After the checks that read the first consumer's metrics: this restarts it.
    load_counts_only_what_it_adds(&stack, &ports);

    let o = payctl(
        &home,
        &[&["authorize", "--amount", "1234", "--json"], &api[..]].concat(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (p["status"].as_str(), p["amount"].as_i64()),
        (Some("AUTHORIZED"), Some(1234))
    );
    let id = p["paymentId"].as_str().unwrap();
    let o = payctl(
        &home,
        &[&["capture", id, "--amount", "99999"], &api[..]].concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.starts_with("error: AMOUNT_EXCEEDS_REMAINING"),
        "{:?}",
        text(&o)
    );
    let o = payctl(
        &home,
        &[&["list", "--json", "--limit", "1"], &api[..]].concat(),
    );
    let page: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(page["data"][0]["paymentId"], id);

    // Scripting: -q is the id alone; piped, list is tab-separated with a header unless --no-headers.
    let o = payctl(
        &home,
        &[&["authorize", "--amount", "500", "-q"], &api[..]].concat(),
    );
    let quiet = text(&o).0.trim().to_owned();
    assert!(
        o.status.success() && quiet.len() == 36 && !quiet.contains(char::is_whitespace),
        "{:?}",
        text(&o)
    );
    let o = payctl(&home, &[&["list", "--limit", "2", "-q"], &api[..]].concat());
    assert_eq!(text(&o).0.lines().next(), Some(quiet.as_str()));
    assert_eq!(text(&o).0.lines().count(), 2);
    let o = payctl(&home, &[&["list", "--limit", "2"], &api[..]].concat());
    let out = text(&o).0;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "payment\tstatus\tamount\tcaptured\trefunded\tcurrency\tcreated"
    );
    assert_eq!(lines.len(), 3, "{out}");
    let row: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(
        (row[0], row[1], row[2]),
        (quiet.as_str(), "AUTHORIZED", "500")
    );
    let o = payctl(
        &home,
        &[&["list", "--limit", "2", "--no-headers"], &api[..]].concat(),
    );
    assert!(
        text(&o).0.starts_with(&format!("{quiet}\t")),
        "{:?}",
        text(&o)
    );
    // --watch shows it again until stopped.
    let status: Vec<&str> = ["status", "--watch"]
        .into_iter()
        .chain(port_args.iter().map(String::as_str))
        .collect();
    assert_repeats(&home, &status);
    assert_repeats(&home, &[&["get", &quiet, "--watch"], &api[..]].concat());

    // The authorize just made may still be on its way to the ledger; reconcile must be clean once it lands.
    if let Err(report) = stack.reconciled_within(std::time::Duration::from_secs(10)) {
        panic!("reconcile reported violations: {report}");
    }
    let o = stack.run(&["reconcile", "--json"]);
    let verdict: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_camel_case(&verdict);
    assert_eq!(
        (o.status.code(), &verdict["clean"], &verdict["violations"]),
        (Some(0), &Value::Bool(true), &Value::from(0)),
        "{verdict:#}"
    );
    assert!(verdict["checks"].as_array().unwrap().len() >= 7);

    let logs = payctl(&home, &["logs", "ingest", "-n", "5"]);
    assert!(logs.status.success() && !logs.stdout.is_empty());
    // Stored as plain text: no colour codes in a log file.
    let logs = payctl(&home, &["logs", "ingest", "-n", "1000"]);
    assert!(
        !logs.stdout.contains(&0x1b),
        "colour codes in the stored log: {}",
        String::from_utf8_lossy(&logs.stdout)
    );
    // Every service's log, each line named; the gateway's holds its access log; --since cuts by time.
    let all = payctl(&home, &["logs", "-n", "3"]);
    let (out, err) = text(&all);
    assert!(all.status.success(), "{err}");
    for service in ["mariadb", "kafka", "ingest", "consumer", "gateway"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{service:<10} | "))),
            "no {service} lines in:\n{out}"
        );
    }
    let gateway = payctl(&home, &["logs", "gateway", "--since", "10m"]);
    let (out, _) = text(&gateway);
    assert!(
        out.lines()
            .any(|l| l.contains("\"POST /api/payments/authorize HTTP/1.1\" 200")),
        "no access log lines:\n{out}"
    );
    let future = payctl(&home, &["logs", "ingest", "--since", "2099-01-01T00:00:00"]);
    assert!(
        future.status.success() && future.stdout.is_empty(),
        "{:?}",
        text(&future)
    );
    let o = payctl(&home, &["logs", "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));

    let o = payctl(&home, &["down"]);
    assert!(o.status.success());
    let o = stack.run(&["status"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "everything stopped: {:?}",
        text(&o)
    );
    assert!(home.join("mariadb/data").exists(), "down keeps the data");
    // Not at a terminal and no --yes: refused in one line, exit 2, nothing deleted.
    let o = payctl(&home, &["down", "--volumes"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("--yes"), "{err}");
    assert!(home.join("mariadb/data").exists(), "nothing deleted");
    let o = payctl(&home, &["down", "--volumes", "--yes"]);
    assert!(o.status.success());
    assert!(!home.exists(), "--volumes deletes it");
}

/// Runs a `--watch` command until it has shown its view twice (each under an "Every 2s" line), then
/// stops it.
fn assert_repeats(home: &Path, args: &[&str]) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (mut rounds, mut seen) = (0, Vec::new());
    while rounds < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                rounds += usize::from(line.starts_with("Every 2.0s: payctl "));
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(rounds, 2, "{args:?} showed:\n{}", seen.join("\n"));
    assert!(seen.len() > 4, "{args:?} showed:\n{}", seen.join("\n"));
}

/// One JSON style across every command: every key camelCase (a lower-case start, no `_` or `-`).
fn assert_camel_case(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                assert!(
                    k.starts_with(|c: char| c.is_ascii_lowercase()) && !k.contains(['_', '-']),
                    "key {k:?} is not camelCase in {m:?}"
                );
                assert_camel_case(v);
            }
        }
        Value::Array(a) => a.iter().for_each(assert_camel_case),
        _ => {}
    }
}

/// Runs SQL in the stack's database as its own user (MariaDB's command-line client).
fn sql(home: &Path, mariadb_port: u16, statement: &str) {
    let password = std::fs::read_to_string(home.join("secrets/db-password")).unwrap();
    let o = Command::new("mariadb")
        .args(["-h127.0.0.1", "-upayctl", "payments", "-e", statement])
        .arg(format!("-P{mariadb_port}"))
        .env("MYSQL_PWD", password.trim())
        .output()
        .expect("the mariadb client runs");
    assert!(o.status.success(), "{statement}: {:?}", text(&o));
}

/// `payctl load` reports what the run did: violations from before it apart (not failing it), a ledger
/// that does not catch up as such (failing it), and with --no-reconcile k6's verdict alone.
fn load_counts_only_what_it_adds(stack: &Stack, ports: &[u16]) {
    let api = format!("http://127.0.0.1:{}/api", ports[5]);
    let load = |extra: &[&str]| {
        let args = [
            &[
                "load",
                "--rate",
                "10",
                "--duration",
                "2s",
                "--merchants",
                "2",
            ][..],
            &["--p99-ms", "2000", "--api-url", &api],
            extra,
        ]
        .concat();
        stack.run(&args)
    };
    let o = payctl(
        stack.home,
        &["authorize", "--amount", "1000", "--json", "--api-url", &api],
    );
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["paymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    stack
        .reconciled_within(std::time::Duration::from_secs(10))
        .unwrap();
    let payment = format!("payment_id = UNHEX(REPLACE('{id}', '-', ''))");
    // A hold the ledger no longer matches, as if from a minute ago (not a change still settling).
    sql(
        stack.home,
        ports[0],
        &format!(
            "UPDATE payments SET amount = amount + 1, \
             updated_at = updated_at - INTERVAL 1 MINUTE WHERE {payment}"
        ),
    );
    let o = load(&[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("ledger caught up") && out.contains("reconcile: no new violations"),
        "{out}"
    );
    assert!(
        err.contains("note: 1 violation(s) existed before the run"),
        "{err}"
    );
    sql(
        stack.home,
        ports[0],
        &format!(
            "UPDATE payments SET amount = amount - 1, updated_at = updated_at WHERE {payment}"
        ),
    );

    let o = stack.run(&["stop", "consumer"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(text(&o).0.trim(), "consumer stopped");
    let o = load(&["--catch-up-seconds", "2"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("ledger did not catch up within 2 s of the run") && !out.contains("caught up"),
        "{out}"
    );
    assert!(err.contains("new violation(s)"), "{err}");
    let o = load(&["--no-reconcile"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        !out.contains("reconcile") && !out.contains("ledger"),
        "{out}"
    );

    let o = stack.run(&["restart", "consumer"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.starts_with("consumer healthy"), "{:?}", text(&o));
    stack
        .reconciled_within(std::time::Duration::from_secs(30))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn three_ingest_instances_behind_the_gateway_lose_nothing_when_one_dies() {
    let home = temp_home("scale");
    let (ports, port_args) = free_ports();
    let stack = Stack {
        home: &home,
        ports: port_args.clone(),
    };
    let mut up = vec!["up", "--scale", "ingest=3"];
    up.extend(port_args.iter().map(String::as_str));
    let o = payctl(&home, &up);
    assert!(o.status.success(), "up failed: {:?}", text(&o));
    let key = std::fs::read_to_string(home.join("secrets/dev-merchant.key")).unwrap();
    let url = format!("http://127.0.0.1:{}/api/payments/authorize", ports[5]);
    let http = reqwest::Client::new();

    // A stream of payments through the gateway; ingest-2 is killed a third of the way in.
    let (mut ok, mut failed) = (0, 0);
    for i in 0..150 {
        if i == 50 {
            let pid: i32 = std::fs::read_to_string(home.join("ingest-2/pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            // SAFETY: kill(2) on the pid payctl recorded for ingest-2.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let r = http
            .post(&url)
            .bearer_auth(key.trim())
            .header("Idempotency-Key", format!("scale-{i}"))
            .json(&serde_json::json!({"amount": 100, "currency": "KRW"}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => ok += 1,
            _ => failed += 1,
        }
    }
    // Requests go one at a time, so at most the one in flight at the kill may fail.
    assert!(failed <= 1, "{failed} of 150 failed");
    eprintln!("scale: {ok} of 150 payments succeeded with ingest-2 killed after 50");

    let o = stack.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(3), "status reports the dead instance");
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = status["services"].as_array().unwrap();
    let health = |name: &str| rows.iter().find(|r| r["service"] == name).unwrap()["health"].clone();
    assert_eq!(health("ingest-2"), "stopped");
    assert_eq!(health("ingest"), "healthy");
    assert_eq!(health("ingest-3"), "healthy");

    // Every instance has its own breaker: cb force-open and reset reach each live one.
    let o = stack.run(&["cb", "force-open"]);
    let (out, _) = text(&o);
    assert!(o.status.success(), "{out}");
    let forced: Vec<&str> = out.lines().filter(|l| l.contains("FORCED_OPEN")).collect();
    assert_eq!(forced.len(), 2, "both live instances forced open:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("ingest-2") && l.contains("unreachable")),
        "{out}"
    );
    let o = stack.run(&["cb", "reset"]);
    assert_eq!(
        text(&o).0.lines().filter(|l| l.contains("CLOSED")).count(),
        2,
        "{:?}",
        text(&o)
    );

    // Rows the killed instance had claimed wait for its lease (delivery timeout + 10 s) to run out;
    // then a surviving relay publishes them.
    let waited = std::time::Instant::now();
    let reconciled = stack.reconciled_within(std::time::Duration::from_secs(90));
    assert!(
        reconciled.is_ok(),
        "reconcile is clean after the instance died: {reconciled:?}"
    );
    eprintln!(
        "scale: reconcile clean {:.1?} after the stream",
        waited.elapsed()
    );

    // `up` again starts only what died, and then every service is healthy.
    let o = payctl(&home, &up);
    let (_, err) = text(&o);
    assert!(o.status.success(), "up after the kill: {err}");
    let started: Vec<&str> = err.lines().filter(|l| l.contains(" ready on ")).collect();
    assert!(
        started.len() == 1 && started[0].contains("ingest-2"),
        "only ingest-2 is started: {err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("already running"))
            .count(),
        10,
        "{err}"
    );
    let o = stack.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "all healthy: {:?}", text(&o));
}

/// The store (frontend/) in real headless Chromium against a running native stack: buy → captured →
/// ledger lines → refunds, a double-click makes one payment, a lost answer retried makes one payment,
/// keyboard use, no console errors; phone-viewport screenshots kept as artifacts.
#[test]
fn store_in_headless_chromium_against_the_native_stack() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let frontend = repo.join("frontend");
    assert!(
        frontend.join("dist/index.html").exists() && frontend.join("node_modules").exists(),
        "the store is not built: cd frontend && npm ci && npm run build (scripts/test.sh does this)"
    );
    let chromium = payctl_stack::install::require("chromium").expect("chromium (apt)");
    let home = temp_home("store");
    let (ports, port_args) = free_ports();
    let stack = Stack {
        home: &home,
        ports: port_args.clone(),
    };
    let o = stack.up_with_env(&[("PAYCTL_STORE_DIR", frontend.join("dist").as_os_str())]);
    assert!(o.status.success(), "up: {:?}", text(&o));

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let o = Command::new("node")
        .args(["--test", "--test-reporter=spec", "e2e/store.e2e.mjs"])
        .current_dir(&frontend)
        .env("STORE_URL", format!("http://127.0.0.1:{}", ports[5]))
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let (out, err) = text(&o);
    eprintln!("{out}\n{err}");
    assert!(o.status.success(), "store e2e failed:\n{out}\n{err}");
    assert!(
        out.contains("pass 4") && out.contains("fail 0"),
        "all four browser tests ran: {out}"
    );
    for shot in [
        "iphone-cart.png",
        "iphone-order-captured.png",
        "iphone-order-refunded.png",
        "galaxy-order.png",
    ] {
        let size = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "screenshot {shot} saved ({size} bytes)");
    }
    eprintln!("screenshots: {}", shots.display());

    // What the browser did left the books right.
    if let Err(report) = stack.reconciled_within(std::time::Duration::from_secs(10)) {
        panic!("reconcile after the store run: {report}");
    }
}

/// A local HTTP server that answers every request with the store's HTML page, like the gateway at `/`;
/// its base URL.
fn html_server() -> String {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "<!doctype html><html><body>the store</body></html>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn an_api_url_that_answers_html_is_an_error_not_an_empty_answer() {
    let home = temp_home("html-api");
    let url = html_server();
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["get", "0190aaaa-0000-7000-8000-000000000000"],
        vec!["get", "0190aaaa-0000-7000-8000-000000000000", "--json"],
        vec!["ledger", "0190aaaa-0000-7000-8000-000000000000"],
        vec!["ledger", "0190aaaa-0000-7000-8000-000000000000", "--json"],
    ] {
        let mut all = args.clone();
        all.extend(["--api-url", &url, "--api-key", "k"]);
        let o = payctl(&home, &all);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out} {err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: {url}/payments"))
                && err.contains("answered text/html (HTTP 200), not the payment API's JSON; is --api-url missing /api?"),
            "{args:?}: {err}"
        );
    }
}

/// The one line every command gives when nothing answers on `port`.
fn not_running_line(port: u16) -> String {
    format!(
        "error: the platform is not running (no answer on 127.0.0.1:{port}); start it with: payctl up"
    )
}

/// Runs payctl and asserts it fails at once (well before any client timeout) with `line` alone.
fn fails_fast_with(home: &Path, args: &[&str], line: &str) {
    let started = std::time::Instant::now();
    let o = payctl(home, args);
    let took = started.elapsed();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {out} {err}");
    assert_eq!(err.trim_end(), line, "{args:?}: {out}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "{args:?} took {took:?}"
    );
}

#[test]
fn without_a_platform_every_command_fails_at_once_in_the_same_line() {
    let home = temp_home("not-up");
    let (ports, flags) = free_ports();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (mariadb, kafka, gateway) = (ports[0], ports[2], ports[5]);
    let with = |args: &[&'static str]| [args, &flags[..]].concat();
    fails_fast_with(&home, &with(&["reconcile"]), &not_running_line(mariadb));
    fails_fast_with(&home, &with(&["dlq", "tail"]), &not_running_line(kafka));
    fails_fast_with(
        &home,
        &with(&["dlq", "inject", "invalid-json"]),
        &not_running_line(kafka),
    );
    fails_fast_with(&home, &with(&["dlq", "replay"]), &not_running_line(kafka));
    fails_fast_with(&home, &with(&["load"]), &not_running_line(mariadb));
    fails_fast_with(&home, &with(&["bench"]), &not_running_line(mariadb));
    fails_fast_with(&home, &with(&["top"]), &not_running_line(ports[3]));
    fails_fast_with(&home, &with(&["chaos"]), &not_running_line(mariadb));
    let url = format!("http://127.0.0.1:{gateway}/api");
    fails_fast_with(
        &home,
        &["list", "--api-url", &url],
        &not_running_line(gateway),
    );
    fails_fast_with(
        &home,
        &["get", "x", "--api-url", &url, "--api-key", "k"],
        &not_running_line(gateway),
    );
    for cb in ["status", "reset"] {
        fails_fast_with(
            &home,
            &["cb", "--api-url", &url, cb],
            &not_running_line(gateway),
        );
    }
}

#[test]
fn from_a_subfolder_payctl_finds_the_projects_home() {
    let project = temp_home("subfolder-project");
    let sub = project.join("cli/src");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(project.join(".payctl")).unwrap();
    std::fs::write(project.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    // Something answers, so that the home's missing key is what the error names.
    let url = html_server();
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .current_dir(&sub)
        .args(["list", "--api-url", &url])
        .env_remove("PAYCTL_HOME")
        .env_remove("PAYCTL_API_KEY")
        .env_remove("PAYCTL_API_URL")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let key = project.join(".payctl/secrets/dev-merchant.key");
    assert!(
        err.contains(&format!("(which writes {})", key.display())),
        "{err}"
    );
    // --home still wins.
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .current_dir(&sub)
        .args(["--home", "elsewhere", "list", "--api-url", &url])
        .env_remove("PAYCTL_HOME")
        .env_remove("PAYCTL_API_KEY")
        .output()
        .unwrap();
    assert!(
        text(&o)
            .1
            .contains("(which writes elsewhere/secrets/dev-merchant.key)"),
        "{:?}",
        text(&o)
    );
}

/// Saves a plan as `payctl up` does (`stack.json`: the services in start order with their ports).
fn save_plan_as_up_would(home: &Path, ports: &[(&str, &str, u16)]) {
    let stack: Vec<Value> = ports
        .iter()
        .map(|(name, kind, port)| serde_json::json!({"name": name, "kind": kind, "port": port}))
        .collect();
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(
        home.join("stack.json"),
        serde_json::to_vec_pretty(&stack).unwrap(),
    )
    .unwrap();
}

#[test]
fn commands_use_the_saved_stacks_ports_unless_a_flag_says_otherwise() {
    let home = temp_home("saved-ports");
    let (p, _) = free_ports();
    let (mariadb, kafka, gateway, other) = (p[0], p[2], p[5], p[6]);
    save_plan_as_up_would(
        &home,
        &[
            ("mariadb", "MariaDb", mariadb),
            ("redis", "Redis", p[1]),
            ("kafka", "Kafka", kafka),
            ("ingest", "Ingest", p[3]),
            ("consumer", "Consumer", p[4]),
            ("prometheus", "Prometheus", other),
            ("gateway", "Gateway", gateway),
        ],
    );
    fails_fast_with(&home, &["reconcile"], &not_running_line(mariadb));
    fails_fast_with(&home, &["dlq", "tail"], &not_running_line(kafka));
    fails_fast_with(
        &home,
        &["dlq", "inject", "bad-version"],
        &not_running_line(kafka),
    );
    fails_fast_with(&home, &["list"], &not_running_line(gateway));
    // An explicit flag wins.
    let flag = other.to_string();
    fails_fast_with(
        &home,
        &["dlq", "tail", "--kafka-port", &flag],
        &not_running_line(other),
    );
    // status shows the saved ports, or the one a flag gives.
    let gateway_address = |args: &[&str]| {
        let o = payctl(&home, args);
        let status: Value = serde_json::from_slice(&o.stdout).unwrap();
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"] == "gateway")
            .map(|r| r["address"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(
        gateway_address(&["status", "--json"]),
        format!("127.0.0.1:{gateway}")
    );
    assert_eq!(
        gateway_address(&["status", "--json", "--gateway-port", &flag]),
        format!("127.0.0.1:{other}")
    );
}

#[test]
fn help_shows_the_saved_stacks_ports_as_the_defaults() {
    let home = temp_home("saved-help");
    save_plan_as_up_would(
        &home,
        &[("kafka", "Kafka", 29092), ("gateway", "Gateway", 28080)],
    );
    let o = payctl(&home, &["dlq", "tail", "--help"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("[default: 29092]"), "{out}");
    let o = payctl(&home, &["list", "--help"]);
    assert!(
        text(&o).0.contains("[default: http://127.0.0.1:28080/api]"),
        "{:?}",
        text(&o)
    );
}

/// payctl with extra environment (and PAYCTL_HOME, the API's URL and key unset as in `payctl`).
fn payctl_with(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payctl"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("PAYCTL_API_KEY")
        .env_remove("PAYCTL_API_URL")
        .env_remove("PAYCTL_HOME")
        .env_remove("BROWSER")
        .env("PAYCTL_RUNTIME", "native")
        .envs(env.iter().copied())
        .output()
        .expect("payctl runs")
}

/// What dynamic completion (`COMPLETE=bash`) offers for the last of `words` (the command line being
/// typed, starting with `payctl`).
fn completions_for(words: &[&str]) -> Vec<String> {
    let index = (words.len() - 1).to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .arg("--")
        .args(words)
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", &index)
        .env_remove("PAYCTL_API_KEY")
        .env_remove("PAYCTL_API_URL")
        .env_remove("PAYCTL_HOME")
        .output()
        .expect("payctl runs");
    assert!(o.status.success(), "{words:?}: {:?}", text(&o));
    // Values only: on an empty word clap also offers the flags.
    text(&o)
        .0
        .lines()
        .filter(|l| !l.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// The git commit of this checkout.
fn head_commit() -> String {
    let o = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn new_subcommands_teach_with_examples_in_their_help() {
    let home = temp_home("new-help");
    for args in [
        &["status", "--help"][..],
        &["env", "--help"],
        &["open", "--help"],
        &["version", "--help"],
        &["merchant", "--help"],
        &["merchant", "create", "--help"],
        &["merchant", "list", "--help"],
        &["merchant", "rotate-key", "--help"],
        &["down", "--help"],
        &["completions", "--help"],
    ] {
        let o = payctl(&home, args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(
            out.contains("Examples:\n  payctl")
                || out.contains("Examples:\n  eval")
                || out.contains("Examples:\n  KEY"),
            "{args:?}:\n{out}"
        );
    }
}

#[test]
fn env_without_a_saved_stack_fails_in_one_line() {
    let home = temp_home("env-none");
    for args in [&["env"][..], &["env", "--json"]] {
        let o = payctl(&home, args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: no stack saved under ") && err.contains("payctl up"),
            "{err}"
        );
    }
}

#[test]
fn version_without_a_stack_shows_payctls_build_and_no_service() {
    let home = temp_home("version-none");
    let (_, flags) = free_ports();
    let mut args = vec!["version", "--json"];
    args.extend(flags.iter().map(String::as_str));
    let o = payctl(&home, &args);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["payctl"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["payctl"]["commit"], head_commit().as_str());
    let services = v["services"].as_array().unwrap();
    assert_eq!(
        services
            .iter()
            .map(|s| s["service"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ingest", "consumer"]
    );
    assert!(services
        .iter()
        .all(|s| s["running"] == false && s["version"].is_null() && s["commit"].is_null()));
    args.retain(|a| *a != "--json");
    let o = payctl(&home, &args);
    let (out, _) = text(&o);
    assert!(out.contains(&head_commit()), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("consumer") && l.contains("not running")),
        "{out}"
    );
    // --version says the commit too.
    let (out, _) = text(&payctl(&home, &["--version"]));
    assert_eq!(
        out.trim(),
        format!("payctl {} ({})", env!("CARGO_PKG_VERSION"), head_commit())
    );
}

#[test]
fn open_prints_or_opens_the_saved_stacks_urls() {
    let home = temp_home("open");
    save_plan_as_up_would(
        &home,
        &[
            ("mariadb", "MariaDb", 23306),
            ("prometheus", "Prometheus", 29090),
            ("gateway", "Gateway", 28080),
        ],
    );
    for (args, url) in [
        (&["open", "--print"][..], "http://127.0.0.1:28080/"),
        (&["open", "api", "--print"], "http://127.0.0.1:28080/api"),
        (
            &["open", "prometheus", "--print"],
            "http://127.0.0.1:29090/",
        ),
        (
            &["open", "store", "--print", "--gateway-port", "1234"],
            "http://127.0.0.1:1234/",
        ),
    ] {
        let o = payctl(&home, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {:?}", text(&o));
        assert_eq!(text(&o).0, format!("{url}\n"), "{args:?}");
    }
    // No Grafana on the native runtime: one line, exit 1.
    let o = payctl(&home, &["open", "grafana", "--print"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty() && err.lines().count() == 1, "{out} {err}");
    assert!(err.contains("Docker runtime"), "{err}");
    // A usage mistake: exit 2.
    assert_eq!(payctl(&home, &["open", "kibana"]).status.code(), Some(2));

    // $BROWSER is run with the URL, and nothing is printed.
    let stub = home.join("browser.sh");
    let opened = home.join("opened");
    std::fs::write(
        &stub,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let stub_path = stub.display().to_string();
    let o = payctl_with(&home, &["open", "prometheus"], &[("BROWSER", &stub_path)]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        std::fs::read_to_string(&opened).unwrap(),
        "http://127.0.0.1:29090/"
    );
    // --print wins over $BROWSER.
    std::fs::remove_file(&opened).unwrap();
    let o = payctl_with(&home, &["open", "--print"], &[("BROWSER", &stub_path)]);
    assert_eq!(text(&o).0, "http://127.0.0.1:28080/\n");
    assert!(!opened.exists(), "the browser was not run");
    // Nothing to open with (no $BROWSER, no xdg-open on PATH): the URL is printed.
    let o = payctl_with(
        &home,
        &["open"],
        &[("PATH", "/nonexistent"), ("HOME", "/nonexistent")],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(text(&o).0, "http://127.0.0.1:28080/\n");
}

#[test]
fn down_volumes_asks_at_a_terminal_and_refuses_a_script_without_yes() {
    let home = temp_home("down-ask");
    std::fs::create_dir_all(home.join("mariadb/data")).unwrap();
    std::fs::create_dir_all(home.join("secrets")).unwrap();
    // Not a terminal, no --yes: exit 2 in one line, nothing deleted.
    let o = payctl(&home, &["down", "--volumes"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("add --yes"), "{err}");
    assert!(home.join("mariadb/data").exists());
    // At a terminal (script(1) gives payctl one): "n" keeps everything, "y" deletes.
    let at_terminal = |answer: &str| {
        let command = format!(
            "'{}' --home '{}' down --volumes",
            env!("CARGO_BIN_EXE_payctl"),
            home.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("PAYCTL_RUNTIME", "native")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) (util-linux)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, shown) = at_terminal("n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("delete the stack's data (database, Kafka") && shown.contains("[y/N]"),
        "{shown}"
    );
    assert!(shown.contains("nothing stopped or deleted"), "{shown}");
    assert!(home.join("mariadb/data").exists(), "kept after n");
    let (code, shown) = at_terminal("y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(!home.exists(), "deleted after y: {shown}");
}

#[test]
fn completion_knows_services_and_statuses_without_a_stack() {
    let home = temp_home("complete-none");
    let h = home.display().to_string();
    let services = completions_for(&["payctl", "--home", &h, "logs", ""]);
    assert_eq!(
        services,
        [
            "mariadb",
            "redis",
            "kafka",
            "acquirer",
            "ingest",
            "consumer",
            "settlement",
            "prometheus",
            "gateway"
        ]
    );
    assert_eq!(
        completions_for(&["payctl", "--home", &h, "logs", "in"]),
        ["ingest"]
    );
    let statuses = completions_for(&["payctl", "list", "--status", ""]);
    assert!(
        statuses.contains(&"CAPTURED".to_owned()) && statuses.contains(&"VOIDED".to_owned()),
        "{statuses:?}"
    );
    // No API: no ids, quickly and quietly.
    let started = std::time::Instant::now();
    assert!(completions_for(&["payctl", "--home", &h, "get", ""]).is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // The stack under --home: its services (a second API instance too); an API that accepts and
    // never answers costs the short timeout, then nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway = silent.local_addr().unwrap().port();
    save_plan_as_up_would(
        &home,
        &[
            ("mariadb", "MariaDb", 23306),
            ("ingest", "Ingest", 28081),
            ("ingest-2", "Ingest", 28082),
            ("gateway", "Gateway", gateway),
        ],
    );
    std::fs::create_dir_all(home.join("secrets")).unwrap();
    std::fs::write(home.join("secrets/dev-merchant.key"), "sk_test").unwrap();
    assert_eq!(
        completions_for(&["payctl", "--home", &h, "logs", ""]),
        ["mariadb", "ingest", "ingest-2", "gateway"]
    );
    let started = std::time::Instant::now();
    assert!(completions_for(&["payctl", "--home", &h, "capture", ""]).is_empty());
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(700) && took < std::time::Duration::from_secs(3),
        "{took:?}"
    );
    drop(silent);
    // The static scripts still come.
    let o = payctl(&home, &["completions", "bash"]);
    assert!(o.status.success() && text(&o).0.contains("_payctl"));
}

#[test]
fn merchant_commands_without_a_platform_fail_at_once() {
    let home = temp_home("merchant-none");
    let (ports, flags) = free_ports();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let with = |args: &[&'static str]| [args, &flags[..]].concat();
    let line = not_running_line(ports[0]);
    fails_fast_with(&home, &with(&["merchant", "list"]), &line);
    fails_fast_with(&home, &with(&["merchant", "create", "Acme"]), &line);
    fails_fast_with(&home, &with(&["merchant", "rotate-key", "acme"]), &line);
    // Bad input is a usage error before any network.
    for args in [
        &["merchant", "create", "Acme", "--id", "not ok"][..],
        &["merchant", "create", "   "],
        &["merchant", "create", "!!!"],
        &["merchant", "rotate-key", "a/b"],
        &["merchant"],
    ] {
        let o = payctl(&home, &with(args));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        if args.len() > 1 {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }
}

/// The daily-tool commands against one native stack: where things are (`status`, `env`), which build
/// runs (`version`), merchants and their keys (`merchant create | list | rotate-key`, the keys used
/// through `payctl authorize`), and completion of payment ids from the API.
#[test]
fn daily_commands_against_a_native_stack() {
    let home = temp_home("daily");
    let (ports, port_args) = free_ports();
    let stack = Stack {
        home: &home,
        ports: port_args.clone(),
    };
    // A key cache of 3 s instead of 60, so that a rotation takes effect within the test.
    let o = stack.up_with_env(&[("APP_AUTH_KNOWN_KEY_TTL_SECONDS", "3".as_ref())]);
    assert!(o.status.success(), "up: {:?}", text(&o));
    let (mariadb, gateway, prometheus) = (ports[0], ports[5], ports[6]);
    let abs = home.canonicalize().unwrap();
    let dev_key = std::fs::read_to_string(abs.join("secrets/dev-merchant.key")).unwrap();
    let db_password = std::fs::read_to_string(abs.join("secrets/db-password")).unwrap();

    // status: the services, then where things are; never a secret.
    let o = stack.run(&["status"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for line in [
        format!("store:      http://127.0.0.1:{gateway}/"),
        format!("API:        http://127.0.0.1:{gateway}/api"),
        format!("Prometheus: http://127.0.0.1:{prometheus}/"),
        "Grafana:    needs the Docker runtime".to_owned(),
        format!(
            "dev key:    {}",
            abs.join("secrets/dev-merchant.key").display()
        ),
        format!(
            "database:   mysql://payctl@127.0.0.1:{mariadb}/payments   (password in {})",
            abs.join("secrets/db-password").display()
        ),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
    assert!(out.contains("│ gateway"), "the services come first:\n{out}");
    assert!(!out.contains(dev_key.trim()) && !out.contains(db_password.trim()));
    let o = stack.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["services"].as_array().unwrap().len(), 9, "{s:#}");
    assert_eq!(s["storeUrl"], format!("http://127.0.0.1:{gateway}/"));
    assert_eq!(s["apiUrl"], format!("http://127.0.0.1:{gateway}/api"));
    assert_eq!(
        s["prometheusUrl"],
        format!("http://127.0.0.1:{prometheus}/")
    );
    assert!(s["grafanaUrl"].is_null(), "{s:#}");
    assert_eq!(
        s["devKeyFile"],
        abs.join("secrets/dev-merchant.key").display().to_string()
    );
    assert_eq!(
        s["databaseUrl"],
        format!("mysql://payctl@127.0.0.1:{mariadb}/payments")
    );
    assert_eq!(
        s["databasePasswordFile"],
        abs.join("secrets/db-password").display().to_string()
    );

    // env: shell lines that point another shell, in another folder, at this stack.
    let o = payctl(&home, &["env"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "export PAYCTL_API_URL='http://127.0.0.1:{gateway}/api'\nexport PAYCTL_API_KEY='{}'\nexport PAYCTL_HOME='{}'\n",
            dev_key.trim(),
            abs.display()
        )
    );
    let script = format!(
        "eval \"$('{bin}' --home '{home}' env)\" && cd / && '{bin}' list --limit 1 --json",
        bin = env!("CARGO_BIN_EXE_payctl"),
        home = home.display()
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .env_remove("PAYCTL_HOME")
        .env_remove("PAYCTL_API_KEY")
        .env_remove("PAYCTL_API_URL")
        .output()
        .unwrap();
    assert!(o.status.success(), "eval \"$(payctl env)\": {:?}", text(&o));
    let page: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(page["data"].is_array(), "{page}");
    let o = payctl(&home, &["env", "--json"]);
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["apiUrl"], format!("http://127.0.0.1:{gateway}/api"));
    assert_eq!(e["apiKey"], dev_key.trim());
    assert_eq!(e["home"], abs.display().to_string());

    // version: the running services are this build.
    let o = stack.run(&["version", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let commit = head_commit();
    assert_eq!(v["payctl"]["commit"], commit.as_str());
    // The services' commit is a real one (their own unit tests check it is their build's). It is
    // not compared with HEAD: the native runtime runs the pay-server and pay-consumer binaries beside
    // payctl, which `cargo test -p payctl` does not rebuild after a commit (that is what `version`
    // is there to show).
    let ingest_commit = v["services"][0]["commit"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        ingest_commit.len() == 40 && ingest_commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{v:#}"
    );
    for service in v["services"].as_array().unwrap() {
        assert_eq!(service["running"], true, "{v:#}");
        assert_eq!(service["commit"], ingest_commit.as_str(), "{v:#}");
        assert_eq!(service["version"], env!("CARGO_PKG_VERSION"), "{v:#}");
    }
    let (out, _) = text(&stack.run(&["version"]));
    assert!(
        out.lines()
            .any(|l| l.contains("ingest") && l.contains(&ingest_commit)),
        "{out}"
    );

    // merchant create: the key once on stdout, a note on stderr; it pays through the API.
    let o = stack.run(&["merchant", "create", "Daily Test Shop", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("not shown again"), "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["merchantId"], "daily-test-shop");
    assert_eq!(created["name"], "Daily Test Shop");
    let key = created["apiKey"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk_") && key.len() == 43, "{key}");
    assert_eq!(created["keyPrefix"], &key[..10]);
    let authorize = |key: &str| {
        payctl(
            &home,
            &[
                "authorize",
                "--amount",
                "1234",
                "--json",
                "--api-key",
                key,
                "--api-url",
                &format!("http://127.0.0.1:{gateway}/api"),
            ],
        )
    };
    let o = authorize(&key);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let paid: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(paid["merchantId"], "daily-test-shop", "{paid:#}");
    let payment_id = paid["paymentId"].as_str().unwrap().to_owned();
    // The same id again: exit 1, one line, the key untouched.
    let o = stack.run(&["merchant", "create", "Daily Test Shop"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty() && err.lines().count() == 1, "{out} {err}");
    assert!(err.contains("'daily-test-shop' exists"), "{err}");
    assert_eq!(authorize(&key).status.code(), Some(0), "still the same key");
    // Plain output: the key alone on stdout, for KEY=$(payctl merchant create …).
    let o = stack.run(&["merchant", "create", "Second", "--id", "second_2"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.trim().starts_with("sk_") && out.lines().count() == 1,
        "{out}"
    );

    // merchant list: ids, names, created, the key's first characters; never a key.
    let o = stack.run(&["merchant", "list", "--json"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        !out.contains(&key) && !out.contains(dev_key.trim()),
        "{out}"
    );
    let list: Value = serde_json::from_str(&out).unwrap();
    let ours = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["merchantId"] == "daily-test-shop")
        .unwrap_or_else(|| panic!("{list:#}"));
    assert_eq!(ours["name"], "Daily Test Shop");
    assert_eq!(ours["keyPrefix"], &key[..10]);
    assert!(ours["createdAt"].as_str().unwrap().ends_with('Z'), "{ours}");
    for m in ["dev-merchant", "store-merchant", "second_2"] {
        assert!(out.contains(&format!("\"{m}\"")), "{m} in {out}");
    }
    let (table, _) = text(&stack.run(&["merchant", "list"]));
    assert!(
        table
            .lines()
            .any(|l| l.contains("daily-test-shop") && l.contains(&format!("{}…", &key[..10]))),
        "{table}"
    );
    assert!(!table.contains(&key));

    // rotate-key: a new key that works at once; the old one is refused once the cache lets it go.
    let o = stack.run(&["merchant", "rotate-key", "daily-test-shop", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("within 3 s"), "{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rotated["oldKeyValidForSeconds"], 3);
    let new_key = rotated["apiKey"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(
        authorize(&new_key).status.code(),
        Some(0),
        "the new key works"
    );
    let rotated_at = std::time::Instant::now();
    let refused = loop {
        let o = authorize(&key);
        if o.status.code() == Some(1) {
            break text(&o).1;
        }
        assert!(
            rotated_at.elapsed() < std::time::Duration::from_secs(30),
            "the old key still works 30 s after rotation: {:?}",
            text(&o)
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(refused.contains("UNAUTHORIZED"), "{refused}");
    eprintln!(
        "old key refused {:.1?} after rotation",
        rotated_at.elapsed()
    );
    // Unknown merchant, the store's key: one line, exit 1.
    for (args, says) in [
        (
            &["merchant", "rotate-key", "nobody"][..],
            "no merchant 'nobody'",
        ),
        (
            &["merchant", "rotate-key", "store-merchant"],
            "gateway's config",
        ),
    ] {
        let o = stack.run(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.lines().count() == 1 && err.contains(says), "{err}");
    }
    // The dev merchant's key file follows its rotation, so payctl's own commands go on working.
    let o = stack.run(&["merchant", "rotate-key", "dev-merchant"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(abs.join("secrets/dev-merchant.key")).unwrap(),
        out.trim()
    );
    let o = payctl(&home, &["list", "--limit", "1"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // Completion offers the payments the API lists (with the key of the environment).
    let h = home.display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .args(["--", "payctl", "--home", &h, "get", ""])
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "4")
        .env("PAYCTL_API_KEY", &new_key)
        .output()
        .unwrap();
    let ids = text(&o).0;
    assert!(
        ids.lines().any(|l| l == payment_id),
        "{payment_id} in {ids:?}"
    );
    let services = completions_for(&["payctl", "--home", &h, "logs", ""]);
    assert_eq!(services.len(), 9, "{services:?}");

    acquirer_commands(&stack, gateway, ports[7]);
    settlement_under_load_with_failures_and_an_outage(&stack, gateway);
}

/// Issue 15: the real stack under load with the acquirer failing 5 % of its calls (half of those after
/// settling) and refusing everything for 30 s: afterwards every capture and refund is settled exactly
/// once — the day's statement has one line per settlement of ours and nothing else, no settlement is late
/// or FAILED, the ledger balances — and paying the day out twice makes one payout per merchant.
fn settlement_under_load_with_failures_and_an_outage(stack: &Stack, gateway: u16) {
    let o = stack.run(&[
        "acquirer",
        "settings",
        "--latency-ms",
        "20-100",
        "--failure-rate",
        "0.05",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let api = format!("http://127.0.0.1:{gateway}/api");
    let started = std::time::Instant::now();
    let load = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            stack.run(&[
                "load",
                "--rate",
                "15",
                "--duration",
                "45s",
                "--flow",
                "full",
                "--merchants",
                "3",
                "--p99-ms",
                "5000",
                "--api-url",
                &api,
            ])
        });
        std::thread::sleep(std::time::Duration::from_secs(5));
        let o = stack.run(&["acquirer", "outage", "--for", "30s"]);
        assert!(o.status.success(), "outage: {:?}", text(&o));
        load.join().unwrap()
    });
    assert!(load.status.success(), "load: {:?}", text(&load));
    // Everything booked is settled (nothing late, nothing FAILED in the DLQ), within 3 minutes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let clean = loop {
        let o = stack.run(&[
            "reconcile",
            "--settle-seconds",
            "0",
            "--settled-within",
            "0",
            "--json",
        ]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        if o.status.success() || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    assert_eq!(clean["clean"], true, "{clean:#}");
    eprintln!(
        "settlement under load: all settled {:.0} s after the load began",
        started.elapsed().as_secs_f64()
    );
    // Exactly once at the acquirer: its statement of today against our records.
    let o = stack.run(&["reconcile", "--date", "today", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(
        (o.status.code(), &v["clean"]),
        (Some(0), &Value::Bool(true)),
        "{v:#}"
    );
    assert!(v["matched"].as_u64().unwrap() > 400, "a real load: {v:#}");
    assert_eq!(v["lines"], v["ours"], "{v:#}");
    // Paid out: twice is once.
    let settle = || -> Value {
        let o = stack.run(&["settle", "--date", "today", "--json"]);
        assert!(o.status.success(), "settle: {:?}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let first = settle();
    let again = settle();
    assert!(!first["made"].as_array().unwrap().is_empty(), "{first:#}");
    assert_eq!(again["made"], json!([]), "{again:#}");
    assert_eq!(again["payouts"], first["payouts"], "{again:#}");
    let o = stack.run(&[
        "reconcile",
        "--settle-seconds",
        "0",
        "--settled-within",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "after the payouts: {:?}", text(&o));
}

/// `payctl acquirer` and `payctl reconcile --statement/--date` against the stack's real acquirer and
/// settlement worker: payments settle, a clean statement reconciles (exit 0), each injected discrepancy is
/// reported exactly (kind and ids) and nothing else, the same seed gives the same statement, and an
/// outage refuses the acquirer's API until it ends.
fn acquirer_commands(stack: &Stack, gateway: u16, acquirer_port: u16) {
    use payctl_domain::settlement::{business_date, parse_statement, parse_time_zone};
    let o = stack.run(&[
        "acquirer",
        "settings",
        "--latency-ms",
        "0",
        "--failure-rate",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let settings: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(settings["failureRate"], 0.0, "{settings}");

    // Two smoke runs: two captures and four refunds, each settled by the worker.
    let api = format!("http://127.0.0.1:{gateway}/api");
    for _ in 0..2 {
        let o = payctl(stack.home, &["smoke", "--api-url", &api]);
        assert!(o.status.success(), "smoke: {:?}", text(&o));
    }
    let zone = parse_time_zone("Asia/Seoul").unwrap();
    let date = business_date(time::OffsetDateTime::now_utc(), &zone);
    let date = format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    let dir = stack.home.join("statements");
    std::fs::create_dir_all(&dir).unwrap();
    let clean = dir.join("clean.csv");
    let statement = |args: &[&str]| -> Value {
        let mut all = vec!["acquirer", "statement", "--date", &date, "--json"];
        all.extend(args);
        let o = stack.run(&all);
        assert!(o.status.success(), "{:?}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while statement(&["--out", clean.to_str().unwrap()])["lines"] != 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "6 settlements within 60 s: {}",
            std::fs::read_to_string(&clean).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let reconcile = |args: &[&str]| -> (Option<i32>, Value) {
        let mut all = vec!["reconcile", "--json"];
        all.extend(args);
        let o = stack.run(&all);
        (
            o.status.code(),
            serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
        )
    };
    let (code, v) = reconcile(&["--date", &date]);
    assert_eq!(
        (code, &v["clean"], &v["matched"]),
        (Some(0), &Value::Bool(true), &json!(6)),
        "{v:#}"
    );
    let (code, v) = reconcile(&["--statement", clean.to_str().unwrap()]);
    assert_eq!((code, &v["matched"]), (Some(0), &json!(6)), "{v:#}");

    let injected = |file: &str, seed: &str| -> (Value, String) {
        let path = dir.join(file);
        let v = statement(&[
            "--inject",
            "drop=1,amount=1,duplicate=1,unknown=2",
            "--seed",
            seed,
            "--out",
            path.to_str().unwrap(),
        ]);
        (v, std::fs::read_to_string(path).unwrap())
    };
    let (v, first) = injected("a.csv", "9");
    assert_eq!(v["lines"], 6 - 1 + 1 + 2, "{v}");
    assert_eq!(parse_statement(&first).unwrap().len(), 8);
    assert_eq!(
        injected("b.csv", "9").1,
        first,
        "the same seed, the same statement"
    );
    assert_ne!(
        injected("c.csv", "10").1,
        first,
        "another seed, other lines"
    );

    // Reconciled: each discrepancy exactly as injected, and nothing else; the exceptions as CSV too.
    let exceptions = dir.join("exceptions.csv");
    let (code, r) = reconcile(&[
        "--statement",
        dir.join("a.csv").to_str().unwrap(),
        "--exceptions",
        exceptions.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{r:#}");
    let kind_of = |k: &str| match k {
        "drop" => "missing_at_acquirer",
        "amount" => "amount_mismatch",
        "duplicate" => "duplicate",
        "unknown" => "missing_at_us",
        other => panic!("{other}"),
    };
    let mut expected: Vec<(String, String)> = v["injected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                kind_of(i["kind"].as_str().unwrap()).to_owned(),
                i["eventId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut reported: Vec<(String, String)> = r["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["eventId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort();
    reported.sort();
    assert_eq!(reported, expected, "{r:#}");
    assert_eq!(r["matched"], 4, "{r:#}");
    let csv = std::fs::read_to_string(&exceptions).unwrap();
    assert_eq!(csv.lines().count(), 1 + 5, "{csv}");

    // More discrepancies than lines: a one-line error, exit 1.
    let o = stack.run(&[
        "acquirer",
        "statement",
        "--date",
        &date,
        "--inject",
        "drop=7",
        "--out",
        "-",
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // An outage refuses the acquirer's API until it ends.
    let health = || -> u16 {
        let url = format!("http://127.0.0.1:{acquirer_port}/v1/statements/{date}");
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { reqwest::get(url).await.unwrap().status().as_u16() })
    };
    let o = stack.run(&["acquirer", "outage", "--for", "30s"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("refuses every settlement call until"));
    assert_eq!(health(), 503);
    let o = stack.run(&["acquirer", "outage", "--for", "0s"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(health(), 200);
}

/// Review (issue 17): `--junit` to a path that cannot be written is found only after the run, and its
/// error then replaces the run's own: here the platform is not up, yet the one line says only that
/// the report could not be written (after a real `smoke` the `--json` document is lost the same way,
/// and after a `chaos` run its whole report and violations). An unwritable --junit should be refused
/// before anything runs, or at least not hide the outcome.
#[test]
fn an_unwritable_junit_path_does_not_hide_why_smoke_failed() {
    let home = temp_home("junit-unwritable");
    std::fs::create_dir_all(&home).unwrap();
    // A folder that cannot be made, even by root: its parent is a file.
    std::fs::write(home.join("file"), "").unwrap();
    let junit = home.join("file/reports/smoke.xml");
    let (ports, _) = free_ports();
    let url = format!("http://127.0.0.1:{}/api", ports[5]);
    let o = payctl(
        &home,
        &[
            "smoke",
            "--api-url",
            &url,
            "--api-key",
            "k",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    assert_ne!(o.status.code(), Some(0), "{out} {err}");
    assert!(
        err.contains(&not_running_line(ports[5])) || o.status.code() == Some(2),
        "the reason smoke failed is gone: {err}"
    );
}

/// Review (issue 17): `payctl logs` with no stack (or none of its services ever started) prints a "no
/// log" line per service and nothing else, then exits 0: a script (or `payctl logs | grep`) cannot tell
/// "no such logs" from "nothing matched". When no service's log can be read it is a failure (exit 1),
/// as `payctl logs ingest` already says.
#[test]
fn logs_of_every_service_when_none_has_a_log_is_a_failure() {
    let home = temp_home("logs-none");
    let o = payctl(&home, &["logs"]);
    let (out, err) = text(&o);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no log for"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
}

/// Review (issue 17): `--since` takes any text with a date somewhere in its first 64 bytes (the log
/// line scanner is used as the value parser), so a typo is accepted and some unrelated time is used.
#[test]
fn logs_since_refuses_text_around_a_time() {
    let home = temp_home("logs-since-junk");
    for since in ["yesterday,2026-11-25T10:00:00", "x 2026-11-25 10:00:00 y"] {
        let o = payctl(&home, &["logs", "ingest", "--since", since]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "--since {since:?}: {err}");
    }
}

/// Review (issue 17): `--since` means "all lines from then on" (`-n` defaults to all), but a native
/// log is read through `log_tail`, which only looks at the file's last 64 KiB: older lines that are
/// after --since are silently lost (an hour of the API's log under `payctl load` is megabytes).
#[test]
fn logs_since_shows_every_line_after_the_time_not_only_the_last_64_kib() {
    let home = temp_home("logs-since-64k");
    std::fs::create_dir_all(home.join("ingest")).unwrap();
    let lines: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "2026-11-25T10:{:02}:{:02}.000000Z  INFO pay_server: request {i:05} served in 1 ms",
                i / 60 % 60,
                i % 60
            )
        })
        .collect();
    std::fs::write(home.join("ingest/ingest.log"), lines.join("\n") + "\n").unwrap();
    assert!(lines.iter().map(|l| l.len() + 1).sum::<usize>() > 100 * 1024);
    let o = payctl(&home, &["logs", "ingest", "--since", "2026-11-25T09:00:00"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        out.lines().count(),
        2000,
        "first shown: {:?}",
        out.lines().next()
    );
}

/// Review (issue 17): the same 64 KiB window starts wherever it falls, possibly inside a multi-byte
/// character; the first (partial) line is then not UTF-8, `lines().map_while(Result::ok)` stops there,
/// and `payctl logs ingest` prints nothing at all (exit 0), whatever -n or --since says.
#[test]
fn logs_show_lines_when_the_tail_window_starts_inside_a_character() {
    let home = temp_home("logs-utf8-cut");
    std::fs::create_dir_all(home.join("ingest")).unwrap();
    let line = "2026-11-25T10:00:00.000000Z  INFO pay_server: authorized ₩50,000 → AUTHORIZED\n";
    let mut text_ = String::new();
    while text_.len() < 200 * 1024 {
        text_.push_str(line);
    }
    // Then a few ASCII bytes at the end, until the byte 64 KiB before the end is inside a character.
    while (text_.as_bytes()[text_.len() - 64 * 1024] & 0xC0) != 0x80 {
        text_.push_str("x\n");
    }
    std::fs::write(home.join("ingest/ingest.log"), &text_).unwrap();
    let o = payctl(&home, &["logs", "ingest", "-n", "5"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.lines().count(), 5, "{out:?}");
}

/// A /metrics endpoint that answers every request with `body`, on a thread of its own.
fn metrics_server(port: u16, body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Review (issue 17): `top` now refuses to run unless the *first* API instance answers. With
/// `up --scale ingest=3` and `payctl stop ingest` (the new command), the gateway, ingest-2, ingest-3
/// and the consumer still serve, yet `top` says "the platform is not running … start it with: payctl
/// up" — though it was written to list an instance that does not answer under "unreachable".
#[test]
fn top_runs_while_one_api_instance_is_stopped() {
    let home = temp_home("top-one-stopped");
    let (ports, _) = free_ports();
    // API instances after the first are on the next ports (as `up --scale` places them).
    let ingest2 = metrics_server(ports[3] + 1, "http_requests_total{status=\"200\"} 5\n");
    let consumer = metrics_server(0, "consumer_events_consumed_total 3\n");
    save_plan_as_up_would(
        &home,
        &[
            ("kafka", "Kafka", ports[2]),
            // Stopped: nothing listens on its port.
            ("ingest", "Ingest", ports[3]),
            ("ingest-2", "Ingest", ingest2),
            ("consumer", "Consumer", consumer),
        ],
    );
    let o = payctl(&home, &["top", "--once", "--json", "--interval", "0.2"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unreachable"], serde_json::json!(["ingest"]), "{v}");
}

/// Issue 15: `top` shows the settlement worker's backlog, acquirer calls, breaker and payouts, in its
/// table and in its JSON; without a settlement worker in the stack it says so in one line.
#[test]
fn top_shows_the_settlement_worker() {
    let home = temp_home("top-settlement");
    let (ports, _) = free_ports();
    let ingest = metrics_server(ports[3], "http_requests_total{status=\"200\"} 5\n");
    let settlement = metrics_server(
        0,
        "settlement_records{status=\"PENDING\"} 12\n\
         settlement_records{status=\"SUBMITTED\"} 4\n\
         settlement_records{status=\"FAILED\"} 2\n\
         settlement_oldest_pending_age_seconds 7.5\n\
         settlement_breaker_state{state=\"closed\"} 0\n\
         settlement_breaker_state{state=\"open\"} 1\n\
         settlement_payouts{currency=\"KRW\"} 3\n\
         settlement_unpaid_settled_records 5\n",
    );
    save_plan_as_up_would(
        &home,
        &[
            ("kafka", "Kafka", ports[2]),
            ("ingest", "Ingest", ingest),
            ("settlement", "Settlement", settlement),
        ],
    );
    let o = payctl(&home, &["top", "--once", "--json", "--interval", "0.2"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_camel_case(&v);
    let s = &v["settlement"];
    assert_eq!(s["pending"], 12.0, "{v:#}");
    assert_eq!(s["submitted"], 4.0, "{v:#}");
    assert_eq!(s["failed"], 2.0, "{v:#}");
    assert_eq!(s["oldestPendingAgeSeconds"], 7.5, "{v:#}");
    assert_eq!(s["breaker"], json!([["settlement", "OPEN"]]), "{v:#}");
    assert_eq!(s["payouts"], 3.0, "{v:#}");
    assert_eq!(s["unpaidSettledRecords"], 5.0, "{v:#}");
    assert_eq!(s["acquirerErrorShare"], Value::Null, "no calls: {v:#}");

    let o = payctl(&home, &["top", "--once", "--interval", "0.2"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for line in [
        "12 pending, 4 submitted, 2 failed",
        "oldest pending",
        "acquirer calls",
        "settlement OPEN",
        "3 made, 5 settled records of past days not paid out",
    ] {
        assert!(out.contains(line), "{line} not in:\n{out}");
    }

    save_plan_as_up_would(
        &home,
        &[("kafka", "Kafka", ports[2]), ("ingest", "Ingest", ingest)],
    );
    let o = payctl(&home, &["top", "--once", "--interval", "0.2"]);
    let (out, _) = text(&o);
    assert!(out.contains("no settlement worker answers"), "{out}");
}

/// Review (issue 17): a duration too large for `Duration` or for a date panics (exit 101, a Rust
/// backtrace hint) instead of being a usage error in one line (exit 2): `--since 300000000h`,
/// `--since 99999999999999999999h`, `load --duration 9999999999999999999999h`.
#[test]
fn huge_durations_are_usage_errors_not_panics() {
    let home = temp_home("huge-durations");
    for args in [
        &["logs", "ingest", "--since", "300000000h"][..],
        &["logs", "ingest", "--since", "99999999999999999999h"],
        &["load", "--duration", "9999999999999999999999h"],
    ] {
        let o = payctl(&home, args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Review (issue 17): `payctl start SERVICE` after `payctl down` (the saved plan stays) starts that
/// service alone without its dependencies: `start ingest` waits 90 s for an API whose database is
/// down, fails, and leaves the pay-server it spawned running (detached, retrying the database
/// forever; `status` then shows it). It should fail at once, naming the dependency that is not
/// running, and never leave what it started behind.
#[test]
fn start_without_its_dependencies_fails_fast_and_leaves_nothing_running() {
    let home = temp_home("start-no-deps");
    let (ports, _) = free_ports();
    save_plan_as_up_would(
        &home,
        &[
            ("mariadb", "MariaDb", ports[0]),
            ("redis", "Redis", ports[1]),
            ("kafka", "Kafka", ports[2]),
            ("ingest", "Ingest", ports[3]),
        ],
    );
    let started = std::time::Instant::now();
    let o = payctl(&home, &["start", "ingest"]);
    let took = started.elapsed();
    let (_, err) = text(&o);
    let left = std::fs::read_to_string(home.join("ingest/pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|pid| unsafe { libc::kill(*pid, 0) } == 0);
    if let Some(pid) = left {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(left, None, "start left the ingest it spawned running");
    assert!(
        took < std::time::Duration::from_secs(10),
        "took {took:?}: {err}"
    );
}

/// `down --volumes` deletes a state directory, never a folder a `--home` or `PAYCTL_HOME` pointed at by
/// mistake (a checkout, a folder payctl never wrote to).
#[test]
fn down_volumes_never_deletes_a_checkout_or_an_unknown_folder() {
    for (name, marker) in [
        ("home-checkout", "Cargo.toml"),
        ("home-unknown", "notes.txt"),
    ] {
        let home = temp_home(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(marker), "keep me").unwrap();
        if marker == "Cargo.toml" {
            std::fs::create_dir_all(home.join("secrets")).unwrap();
        }
        let o = payctl(&home, &["down", "--volumes", "--yes"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("not deleted"), "{err}");
        assert!(home.join(marker).exists(), "{name}: deleted");
    }
}
