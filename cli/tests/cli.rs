//! payctl as a user runs it: the real binary, real services, real exit codes.

use payctl_stack::free_port;
use serde_json::Value;
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
        .output()
        .expect("payctl runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const PORT_FLAGS: [&str; 6] = [
    "--mariadb-port",
    "--redis-port",
    "--kafka-port",
    "--ingest-port",
    "--consumer-port",
    "--gateway-port",
];

/// Free ports for every service (the ingest range gets room for 3 instances), as flags.
fn free_ports() -> (Vec<u16>, Vec<String>) {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < PORT_FLAGS.len() {
        let p = free_port().unwrap();
        // Keep p+1 and p+2 free too, for --scale ingest=3.
        let room = (1..3).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok());
        if room && !ports.iter().any(|q| q.abs_diff(p) < 3) {
            ports.push(p);
        }
    }
    let flags = PORT_FLAGS
        .iter()
        .zip(&ports)
        .flat_map(|(f, p)| [f.to_string(), p.to_string()])
        .collect();
    (ports, flags)
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
    let o = payctl(&home, &["up", "--runtime", "docker"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o)
            .1
            .starts_with("error: the Docker runtime is not available yet"),
        "{:?}",
        text(&o)
    );
    assert!(!home.join("mariadb").exists());
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
    assert!(o.status.success(), "{:?}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
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
    assert!(r["disk_free_bytes"].as_u64().unwrap() > 0);
    assert!(r["memory_available_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn up_with_no_install_names_the_exact_commands_for_what_is_missing() {
    let home = temp_home("noinstall");
    // A machine without tansu: no cargo bin directory anywhere on the search path.
    let o = Command::new(env!("CARGO_BIN_EXE_payctl"))
        .args(["--home", &home.display().to_string(), "up", "--no-install"])
        .env("PATH", "/usr/bin:/bin")
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
    let o = payctl(&home, &["authorize", "--amount", "1000"]);
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
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        rows.iter().all(|r| r["health"] == "stopped"),
        "everything this run started was stopped: {rows:#?}"
    );
}

/// Stops the stack even when an assertion fails half-way.
struct Stack<'a> {
    home: &'a Path,
    ports: Vec<String>,
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        let _ = payctl(self.home, &["down", "--volumes"]);
    }
}

impl Stack<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.ports.iter().map(String::as_str));
        payctl(self.home, &all)
    }
}

/// `payctl up` with a breaker that reacts in seconds rather than the production half-minute; the
/// services inherit these variables.
fn up_fast_breaker(stack: &Stack) -> Output {
    let mut all = vec![
        "--home".to_string(),
        stack.home.display().to_string(),
        "up".to_string(),
    ];
    all.extend(stack.ports.iter().cloned());
    Command::new(env!("CARGO_BIN_EXE_payctl"))
        .args(&all)
        .env("APP_CB_KAFKA_WAIT_DURATION", "2000")
        .env("APP_KAFKA_DELIVERY_TIMEOUT_MS", "2000")
        .output()
        .expect("payctl runs")
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
    let services: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["mariadb", "redis", "kafka", "ingest", "consumer", "gateway"]
    );
    assert!(status
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

    let cb = stack.run(&[&["cb", "test", "--payments", "10"], &api[..]].concat());
    let (out, err) = text(&cb);
    assert!(cb.status.success(), "cb test failed:\n{out}\n{err}");
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
        "reconcile: clean",
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

    // bench in miniature: every part runs and reports (the figures themselves are not asserted).
    let mut bench = vec![
        "bench".to_string(),
        "--baseline-seconds".into(),
        "1".into(),
        "--step".into(),
        "2s".into(),
        "--rates".into(),
        "10".into(),
        "--full-rates".into(),
        "5".into(),
        "--broker-messages".into(),
        "200".into(),
        "--p99-ms".into(),
        "2000".into(),
        "--api-url".into(),
        format!("http://127.0.0.1:{}/api", ports[5]),
    ];
    bench.extend(port_args.iter().cloned());
    let bench: Vec<&str> = bench.iter().map(String::as_str).collect();
    let o = payctl(&home, &bench);
    let (out, err) = text(&o);
    assert!(o.status.success(), "bench failed:\n{out}\n{err}");
    for figure in [
        "database baseline",
        "broker alone",
        "authorize sustained",
        "ledger catch-up",
        "peak RSS ingest",
        "reconcile: clean",
    ] {
        assert!(out.contains(figure), "bench output lacks {figure}:\n{out}");
    }

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

    let o = stack.run(&["reconcile", "--settle-seconds", "0", "--json"]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    // The authorize just made may still be on its way to the ledger; reconcile must be clean once it lands.
    let mut clean = o.status.success();
    for _ in 0..50 {
        if clean {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        clean = stack
            .run(&["reconcile", "--settle-seconds", "0"])
            .status
            .success();
    }
    assert!(clean, "reconcile reported violations: {report}");

    let logs = payctl(&home, &["logs", "ingest", "-n", "5"]);
    assert!(logs.status.success() && !logs.stdout.is_empty());

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
    let o = payctl(&home, &["down", "--volumes"]);
    assert!(o.status.success());
    assert!(!home.exists(), "--volumes deletes it");
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
            Ok(r) if r.status() == 201 => ok += 1,
            _ => failed += 1,
        }
    }
    // Requests go one at a time, so at most the one in flight at the kill may fail.
    assert!(failed <= 1, "{failed} of 150 failed");
    eprintln!("scale: {ok} of 150 payments succeeded with ingest-2 killed after 50");

    let o = stack.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(3), "status reports the dead instance");
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
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
    let mut clean = false;
    while waited.elapsed() < std::time::Duration::from_secs(90) {
        if stack
            .run(&["reconcile", "--settle-seconds", "0"])
            .status
            .success()
        {
            clean = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let o = stack.run(&["reconcile", "--settle-seconds", "0"]);
    assert!(
        clean,
        "reconcile is clean after the instance died: {}",
        text(&o).0
    );
    eprintln!(
        "scale: reconcile clean {:.1?} after the stream",
        waited.elapsed()
    );
}
