//! `payctl chaos` against a real native stack: a short schedule (every service killed once, one freeze)
//! finds no violation, and the verdict fails — naming what — when an acknowledged payment or a ledger
//! leg is removed behind the platform's back. Each test runs its own stack.

mod common;

use common::free_ports;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn payctl(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_payctl"));
    c.arg("--home")
        .arg(home)
        .env_remove("PAYCTL_API_KEY")
        .env_remove("PAYCTL_API_URL")
        .env("PAYCTL_RUNTIME", "native");
    c
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A stack of its own: a state directory and free ports for every service.
struct Stack {
    home: PathBuf,
    flags: Vec<String>,
    mariadb_port: u16,
}

impl Stack {
    fn up(name: &str) -> Self {
        let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("payctl-chaos-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let (ports, flags) = free_ports();
        let o = payctl(&home).arg("up").args(&flags).output().unwrap();
        assert!(o.status.success(), "up: {}", text(&o));
        Self {
            home,
            flags,
            mariadb_port: ports[0],
        }
    }

    fn chaos(&self, args: &[&str]) -> Command {
        let mut c = payctl(&self.home);
        c.arg("chaos").args(args).args(&self.flags);
        c
    }

    /// Runs SQL as the platform's database user; the rows, tab-separated.
    fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        let password = std::fs::read_to_string(self.home.join("secrets/db-password")).unwrap();
        let o = Command::new("mariadb")
            .args([
                "-h127.0.0.1",
                &format!("-P{}", self.mariadb_port),
                "-upayctl",
                &format!("-p{}", password.trim()),
                "-N",
                "-B",
                "payments",
                "-e",
                sql,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{sql}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = payctl(&self.home)
            .args(["down", "--volumes", "--yes"])
            .args(&self.flags)
            .output();
    }
}

#[test]
fn a_schedule_killing_every_service_and_freezing_one_finds_no_violation() {
    let stack = Stack::up("clean");
    // Seed 7 draws a kill of each of the five services, then a freeze, within 66 s.
    let started = Instant::now();
    let o = stack
        .chaos(&["--seed", "7", "--duration", "66s", "--rate", "30", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("chaos --json printed no report ({e}): {}", text(&o)));
    eprintln!(
        "chaos took {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{report:#}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["violations"], Value::Array(vec![]));
    let faults = report["faults"].as_array().unwrap();
    let killed: std::collections::BTreeSet<&str> = faults
        .iter()
        .filter(|f| f["kind"] == "kill")
        .map(|f| f["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        killed.into_iter().collect::<Vec<_>>(),
        ["consumer", "ingest", "kafka", "mariadb", "redis"],
        "{report:#}"
    );
    let done: Vec<&Value> = faults.iter().filter(|f| f["skipped"] == false).collect();
    assert!(done.iter().any(|f| f["kind"] == "pause"), "{report:#}");
    for f in done {
        assert!(f["backMs"].is_u64(), "every service came back: {f}");
        assert!(f["firstSuccessMs"].is_u64(), "{f}");
        assert!(f["error"].is_null(), "{f}");
    }
    // Not only payctl's word: the database holds one payment per flow, each captured and half refunded.
    let load = &report["load"];
    let flows = load["flowsStarted"].as_u64().unwrap();
    assert!(flows >= 1900, "{load}");
    assert_eq!(load["gaveUp"], 0, "{load}");
    let rows = stack.sql(
        "SELECT COUNT(*), SUM(captured_amount = amount), SUM(refunded_amount = FLOOR(amount / 2)) \
         FROM payments WHERE merchant_id LIKE 'chaos-%'",
    );
    assert_eq!(
        rows[0],
        vec![flows.to_string(), flows.to_string(), flows.to_string()]
    );
    let reconcile = payctl(&stack.home)
        .arg("reconcile")
        .args(&stack.flags)
        .output()
        .unwrap();
    assert!(reconcile.status.success(), "{}", text(&reconcile));
}

#[test]
fn the_verdict_fails_naming_a_payment_or_a_ledger_leg_removed_behind_its_back() {
    let stack = Stack::up("tamper");
    let junit = stack.home.join("reports/chaos.xml");
    let child = stack
        .chaos(&[
            "--seed",
            "1",
            "--duration",
            "12s",
            "--rate",
            "20",
            "--services",
            "none",
            "--json",
            "--junit",
            &junit.display().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two finished flows (captured and partly refunded, so their answers are in): delete the first
    // payment outright, and one ledger leg of the second.
    let deadline = Instant::now() + Duration::from_secs(30);
    let victims = loop {
        let rows = stack.sql(
            "SELECT HEX(payment_id) FROM payments WHERE merchant_id LIKE 'chaos-%' \
             AND status = 'PARTIALLY_REFUNDED' ORDER BY payment_id LIMIT 2",
        );
        if rows.len() == 2 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no finished chaos flow to tamper with"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (gone, short) = (&victims[0][0], &victims[1][0]);
    // The ledger legs must be in first, or the consumer would write them after the deletion.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.sql(&format!(
        "SELECT COUNT(*) FROM ledger_entries WHERE payment_id IN (UNHEX('{gone}'), UNHEX('{short}'))"
    ))[0][0]
        != "16"
    {
        assert!(Instant::now() < deadline, "the victims' legs never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    stack.sql(&format!(
        "DELETE FROM ledger_entries WHERE payment_id = UNHEX('{gone}'); \
         DELETE FROM outbox_events WHERE payment_id = UNHEX('{gone}'); \
         DELETE FROM payments WHERE payment_id = UNHEX('{gone}'); \
         DELETE FROM ledger_entries WHERE payment_id = UNHEX('{short}') \
           AND event_type = 'PAYMENT_REFUNDED' AND leg = 0"
    ));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["passed"], false);
    let violations = report["violations"].as_array().unwrap();
    let as_uuid = |hex: &str| {
        let h = hex.to_lowercase();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    };
    let about = |id: &str, says: &str| {
        violations.iter().any(|v| {
            v["subject"] == format!("payment {}", as_uuid(id))
                && v["detail"].as_str().unwrap().contains(says)
        })
    };
    assert!(
        about(gone, "does not exist"),
        "the deleted payment is named: {violations:#?}"
    );
    assert!(
        about(short, "the ledger owes the merchant"),
        "the payment missing a ledger leg is named: {violations:#?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v["detail"].as_str().unwrap().starts_with("reconcile: ")),
        "reconcile's own checks fail too: {violations:#?}"
    );
    // CI's view: the exactly-once case fails, naming the deleted payment.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let case = xml
        .split("<testcase ")
        .find(|c| c.contains("name=\"every acknowledged operation exactly once"))
        .unwrap_or_else(|| panic!("{xml}"));
    assert!(
        case.contains("<failure message=") && case.contains(&as_uuid(gone)),
        "{xml}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("replay: payctl chaos --seed 1 "),
        "the failure says how to replay it: {stderr}"
    );
}
