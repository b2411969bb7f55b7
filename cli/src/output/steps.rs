//! The named, timed steps of a check (`smoke`, `cb test`, `chaos`'s verdict): printed as they end for
//! people, kept for `--json`, and written as JUnit XML (`--junit FILE`) so CI shows each step.

use super::mark;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug)]
pub struct Steps {
    /// The suite's name in JUnit (e.g. `payctl smoke`).
    suite: &'static str,
    /// Column the times start at in the printed lines.
    width: usize,
    /// Whether to print each step as it ends (not with --json, whose stdout is the document).
    print: bool,
    pub list: Vec<Step>,
}

impl Steps {
    pub fn new(suite: &'static str, width: usize, print: bool) -> Self {
        Steps {
            suite,
            width,
            print,
            list: Vec::new(),
        }
    }

    /// Records a step that began at `started` and ends now.
    pub fn record(&mut self, name: &str, started: Instant, ok: bool, detail: &str) {
        self.record_took(name, started.elapsed(), ok, detail);
    }

    pub fn record_took(&mut self, name: &str, took: Duration, ok: bool, detail: &str) {
        if self.print {
            println!(
                "{} {name:<width$} {took:>8.1?}  {detail}",
                mark(ok),
                width = self.width
            );
        }
        self.list.push(Step {
            name: name.to_owned(),
            ok,
            seconds: took.as_secs_f64(),
            detail: detail.to_owned(),
        });
    }

    pub fn failed(&self) -> bool {
        self.list.iter().any(|s| !s.ok)
    }

    /// The steps as one JUnit `<testsuite>`: a `<testcase>` each, a `<failure>` for each that failed;
    /// `error` (what stopped the run early) as one more failed case.
    pub fn junit(&self, error: Option<&str>) -> String {
        let mut cases = self.list.clone();
        if let Some(e) = error {
            cases.push(Step {
                name: "completed".into(),
                ok: false,
                seconds: 0.0,
                detail: e.to_owned(),
            });
        }
        let failures = cases.iter().filter(|s| !s.ok).count();
        let total: f64 = cases.iter().map(|s| s.seconds).sum();
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">\n",
            escape(self.suite),
            cases.len()
        );
        for s in &cases {
            xml.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(self.suite),
                escape(&s.name),
                s.seconds
            ));
            if s.ok {
                xml.push_str(&format!(
                    "><system-out>{}</system-out></testcase>\n",
                    escape(&s.detail)
                ));
            } else {
                xml.push_str(&format!(
                    "><failure message=\"{}\"/></testcase>\n",
                    escape(&s.detail)
                ));
            }
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }

    /// Writes [`Steps::junit`] to `path` when one is given (its folder made if missing). A failure is
    /// said on stderr and returned as `false`, never in place of the run's own outcome.
    pub fn junit_written(&self, path: Option<&Path>, error: Option<&str>) -> bool {
        match self.write_junit(path, error) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("error: {e:#}");
                false
            }
        }
    }

    /// Writes [`Steps::junit`] to `path` when one is given (its folder made if missing).
    pub fn write_junit(&self, path: Option<&Path>, error: Option<&str>) -> anyhow::Result<()> {
        if let Some(path) = path {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
            }
            std::fs::write(path, self.junit(error))
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Text for an XML attribute or element.
fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&apos;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_has_a_case_per_step_and_a_failure_for_each_that_failed() {
        let mut s = Steps::new("payctl smoke", 10, false);
        s.record_took(
            "authorize",
            Duration::from_millis(12),
            true,
            "id → AUTHORIZED",
        );
        s.record_took(
            "ledger <legs>",
            Duration::from_millis(30),
            false,
            "9 \"legs\" & no more",
        );
        let xml = s.junit(Some("capture: 503"));
        assert!(xml.contains("tests=\"3\" failures=\"2\""), "{xml}");
        assert!(
            xml.contains(
                "name=\"authorize\" time=\"0.012\"><system-out>id → AUTHORIZED</system-out>"
            ),
            "{xml}"
        );
        assert!(xml.contains("name=\"ledger &lt;legs&gt;\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"9 &quot;legs&quot; &amp; no more\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"completed\" time=\"0.000\"><failure message=\"capture: 503\"/>"),
            "{xml}"
        );
        assert!(s.failed());
    }
}
