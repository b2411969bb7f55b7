//! The published OpenAPI document is the contract, and the running server keeps it: schemathesis (PyPI)
//! generates requests from the `/openapi.json` the server serves (the examples, the coverage of every
//! boundary, random fuzzing, stateful scenarios following the document's links) and checks every answer
//! with all its checks: no 5xx, only documented statuses, content types, headers and bodies, schema-valid
//! requests accepted, invalid ones refused, authentication enforced, no merchant reading another's payment.
//!
//! Nothing is excluded. What the settings tune is said where it is done: server/tests/schemathesis/
//! (`schemathesis.toml`, and `hooks.py` for the rules OpenAPI cannot state).
//!
//! Without schemathesis the test is skipped with a loud message, except in CI (`CI=true`), where it fails;
//! `scripts/test.sh` installs it.

use crate::helpers::{blocking, spawn_app_with, TestApp};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The release `scripts/test.sh` installs; the flags below are schemathesis 4's.
const PINNED: &str = "4.32.5";
/// Fixed, so a run can be repeated case for case (with the same schemathesis release).
const SEED: &str = "1";
/// Per operation and phase: about 2,000 cases in all, well under a minute on a debug build.
const MAX_EXAMPLES: &str = "100";
/// Fewer cases than this means the run went wrong even if schemathesis is content.
const MIN_CASES: u64 = 1_000;
const TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn the_server_keeps_its_published_openapi_contract() {
    let Some(schemathesis) = find_schemathesis() else {
        return;
    };
    let app = spawn_app_with(|c| {
        // Limits high enough that ~2,000 requests in a minute never meet them (the limits themselves are
        // tested in rate_limit.rs and auth.rs), yet present, so the RateLimit-* headers are checked too.
        for capacity in [
            &mut c.rate_limit.authorize_capacity,
            &mut c.rate_limit.capture_capacity,
            &mut c.rate_limit.refund_capacity,
            &mut c.rate_limit.void_capacity,
        ] {
            *capacity = 1_000_000;
        }
        // schemathesis sends many made-up API keys (and must see 401 for each, not 429).
        c.auth.lookups_per_second = 1_000_000;
        c.admin_token = Some(format!("admin-{}", uuid::Uuid::new_v4().simple()));
    })
    .await;
    seed_a_payout(&app).await;

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("contract")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("a directory for the run");
    // Web Fuzzing Commons auth document: the identities schemathesis sends requests as.
    let identity = |name: &str, key: &str| {
        let header = serde_json::json!({"name": "Authorization", "value": format!("Bearer {key}")});
        serde_json::json!({"name": name, "fixedHeaders": [header]})
    };
    let auth = serde_json::json!({"auth": [
        identity("merchant", app.key()),
        identity("other-merchant", app.other_merchant.key.expose()),
    ]});
    let auth_file = dir.join("auth.json");
    std::fs::write(&auth_file, auth.to_string()).expect("the auth document");

    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let mut command = Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(settings.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", app.address))
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        // No example database: a run must not depend on what earlier runs found.
        .args(["--generation-database", "none"])
        .args(["--workers", "1", "--no-color"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&dir)
        .current_dir(&dir)
        .env("SCHEMATHESIS_HOOKS", settings.join("hooks.py"))
        .env("PAYCTL_CONTRACT_AUTH", &auth_file)
        .env("PAYCTL_CONTRACT_MERCHANT_ID", app.merchant.id.as_str())
        .env("PAYCTL_CONTRACT_MERCHANT_KEY", app.key())
        .env(
            "PAYCTL_CONTRACT_ADMIN_TOKEN",
            app.state.config.admin_token.as_deref().unwrap_or_default(),
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{command:?}");

    let started = Instant::now();
    let (status, output) = blocking(move || run_with_timeout(command, TIMEOUT)).await;
    let took = started.elapsed();
    let cases = generated_cases(&output);
    let summary = output
        .lines()
        .rev()
        .find(|l| l.contains(" generated"))
        .unwrap_or("(no summary)")
        .trim()
        .to_owned();
    assert!(
        status == Some(0) && cases.is_some_and(|n| n >= MIN_CASES),
        "schemathesis found the server and its OpenAPI document disagreeing, or tested too little \
         (exit {status:?}, {summary}, at least {MIN_CASES} cases expected, {took:.0?}); JUnit report \
         in {}\n\n{shown}\n\n{output}",
        dir.display()
    );
    loud(&format!(
        "contract: schemathesis {summary} in {took:.0?} against {}",
        app.address
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// No API call makes payouts (`payctl settle` does), so without one `GET /payouts/{id}` would only ever
/// answer 404 (a "missing test data" warning, which fails the run) and its 200 would go unchecked. One
/// captured payment, settled and paid out as the settlement worker and `payctl settle` would write it, in
/// a payout whose id is the document's example for the parameter, so the examples phase reads it.
async fn seed_a_payout(app: &TestApp) {
    let doc: serde_json::Value = serde_json::from_str(pay_server::OPENAPI).expect("the document");
    let example = doc["components"]["parameters"]["PayoutId"]["example"]
        .as_str()
        .expect("the payout id parameter has an example");
    let payout = uuid::Uuid::parse_str(example).expect("a payout id");
    let payment = app.authorized_payment(10_000).await;
    let r = app
        .post(
            &format!("/payments/capture/{payment}"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    sqlx::query(
        "INSERT INTO payouts (payout_id, merchant_id, currency, business_date, seq, captures, refunds, \
         gross_captured, gross_refunded, fees, net, time_zone, created_at) \
         VALUES (?, ?, 'KRW', '2026-12-05', 1, 1, 0, 10000, 0, 250, 9750, 'Asia/Seoul', UTC_TIMESTAMP(6))",
    )
    .bind(payout)
    .bind(app.merchant.id.as_str())
    .execute(&app.db)
    .await
    .expect("a payout");
    sqlx::query(
        "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, \
         attempts, acquirer_reference, fee, net, settled_at, business_date, payout_id, payout_event_id, \
         next_attempt_at, topic, kafka_partition, kafka_offset, payload, created_at, updated_at) \
         VALUES (?, ?, ?, 'CAPTURE', 10000, 'KRW', 'SETTLED', 1, 'ACQ-CONTRACT', 250, 9750, \
         UTC_TIMESTAMP(6), '2026-12-05', ?, ?, UTC_TIMESTAMP(6), 'payment.captured', 0, 0, \
         '{\"sequence\": 2}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::parse_str(&payment).expect("a payment id"))
    .bind(app.merchant.id.as_str())
    .bind(payout)
    .bind(uuid::Uuid::now_v7())
    .execute(&app.db)
    .await
    .expect("its settlement");
}

/// schemathesis on PATH or in pip's user directory; `None` (after saying so loudly) when it is missing
/// outside CI, a panic when it is missing in CI or is not the major release the flags are written for.
fn find_schemathesis() -> Option<PathBuf> {
    let user_bin = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".local/bin/schemathesis"))
        .filter(|p| p.is_file());
    let Some(path) = payctl_stack::install::which("schemathesis").or(user_bin) else {
        let install = format!("pip install 'schemathesis=={PINNED}' (scripts/test.sh does)");
        assert!(
            !in_ci(),
            "schemathesis is not installed and CI=true: the contract test must run in CI; {install}"
        );
        loud(&format!(
            "\n*** SKIPPED the_server_keeps_its_published_openapi_contract: schemathesis is not \
             installed; {install} ***\n"
        ));
        return None;
    };
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let found = version.trim().rsplit(' ').next().unwrap_or_default();
    assert!(
        found.starts_with("4."),
        "{} is schemathesis {found:?}; the contract test is written for 4.x (pip install \
         'schemathesis=={PINNED}')",
        path.display()
    );
    Some(path)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Written to the process's stderr itself, so it shows even when the test harness captures output.
fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Runs `command`, killing it after `timeout`; its exit code (None when killed) and stdout + stderr.
fn run_with_timeout(mut command: Command, timeout: Duration) -> (Option<i32>, String) {
    let mut child = command.spawn().expect("schemathesis starts");
    // Drain both pipes while it runs: a full pipe would stall it.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("waiting for schemathesis") {
            Some(status) => break status.code(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut output = out.join().unwrap_or_default();
    output.push_str(&err.join().unwrap_or_default());
    if status.is_none() {
        output.push_str(&format!("\n(killed after {timeout:?})"));
    }
    (status, output)
}

/// The "N generated" figure of schemathesis's summary.
fn generated_cases(output: &str) -> Option<u64> {
    output.lines().rev().find_map(|line| {
        let (n, _) = line.trim().split_once(" generated")?;
        n.trim().parse().ok()
    })
}
