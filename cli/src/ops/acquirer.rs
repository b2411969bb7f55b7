//! The mock acquirer's client (`pay-acquirer` on --acquirer-port): its admin endpoints (outage,
//! latency and failure settings) and its settlement statements, with its errors in their
//! `{code, message}` shape.

use crate::stack::health::require_running;
use crate::stack::Ports;
use anyhow::Context;
use payctl_domain::settlement::{Injected, Injection};
use serde_json::Value;
use std::time::Duration;

pub struct Acquirer {
    base: String,
    http: reqwest::Client,
}

impl Acquirer {
    /// The acquirer of the stack on `ports`; fails at once, saying so, when nothing listens there.
    pub fn new(ports: &Ports) -> anyhow::Result<Self> {
        require_running(ports.acquirer_port)?;
        Ok(Self {
            base: format!("http://127.0.0.1:{}", ports.acquirer_port),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<String> {
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the acquirer at {} ({what})", self.base))?;
        self.body(res, what).await
    }

    /// The body of a 2xx answer; otherwise the acquirer's `{code, message}` as an error.
    async fn body(&self, res: reqwest::Response, what: &str) -> anyhow::Result<String> {
        let status = res.status();
        let body = res.text().await?;
        if status.is_success() {
            return Ok(body);
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match (v["code"].as_str(), v["message"].as_str()) {
            (Some(code), Some(message)) => {
                anyhow::bail!("the acquirer refused {what}: {code}: {message} (HTTP {status})")
            }
            _ => anyhow::bail!("the acquirer answered {what} with HTTP {status}"),
        }
    }

    async fn json(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let body = self.send(req, what).await?;
        serde_json::from_str(&body)
            .with_context(|| format!("the acquirer's answer to {what} is not JSON"))
    }

    /// Starts an outage of `duration` (zero ends one); the answer names when it ends.
    pub async fn outage(&self, duration: Duration) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(format!("{}/v1/admin/outage", self.base))
            .json(&serde_json::json!({ "seconds": duration.as_secs() }));
        self.json(req, "the outage").await
    }

    /// Its latency range and failure rate.
    pub async fn settings(&self) -> anyhow::Result<Value> {
        let req = self.http.get(format!("{}/v1/admin/settings", self.base));
        self.json(req, "reading its settings").await
    }

    /// Changes its latency range ("a-b" ms) and/or failure rate; the answer has the new settings.
    pub async fn set_settings(
        &self,
        latency_ms: Option<&str>,
        failure_rate: Option<f64>,
    ) -> anyhow::Result<Value> {
        let mut body = serde_json::Map::new();
        if let Some(l) = latency_ms {
            body.insert("latencyMs".into(), l.into());
        }
        if let Some(f) = failure_rate {
            body.insert("failureRate".into(), f.into());
        }
        let req = self
            .http
            .put(format!("{}/v1/admin/settings", self.base))
            .json(&body);
        self.json(req, "the new settings").await
    }

    /// The statement CSV of business date `date`, with `injection`'s discrepancies (seeded), and
    /// what was injected.
    pub async fn statement(
        &self,
        date: time::Date,
        injection: Option<(&Injection, u64)>,
    ) -> anyhow::Result<(String, Vec<Injected>)> {
        let date = date_text(date);
        let query: Vec<(&str, String)> = injection
            .map(|(i, seed)| {
                vec![
                    ("drop", i.drop.to_string()),
                    ("amount", i.amount.to_string()),
                    ("duplicate", i.duplicate.to_string()),
                    ("unknown", i.unknown.to_string()),
                    ("seed", seed.to_string()),
                ]
            })
            .unwrap_or_default();
        let what = format!("the statement of {date}");
        let res = self
            .http
            .get(format!("{}/v1/statements/{date}", self.base))
            .query(&query)
            .send()
            .await
            .with_context(|| format!("cannot reach the acquirer at {} ({what})", self.base))?;
        // What was injected is asked for at the version this statement was read at, so that it
        // describes this very statement even if settlements land meanwhile.
        let version = res
            .headers()
            .get("statement-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let csv = self.body(res, &what).await?;
        let injected = if injection.is_some() {
            let version = version.context("the acquirer's statement has no Statement-Version")?;
            let v = self
                .json(
                    self.http
                        .get(format!("{}/v1/statements/{date}/discrepancies", self.base))
                        .query(&query)
                        .query(&[("version", version)]),
                    &what,
                )
                .await?;
            serde_json::from_value(v).context("the acquirer's list of discrepancies")?
        } else {
            Vec::new()
        };
        Ok((csv, injected))
    }
}

/// YYYY-MM-DD.
pub fn date_text(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// clap's parser for a business date: YYYY-MM-DD, or `today` / `yesterday` in the cutoff time zone
/// (`PAYCTL_TIME_ZONE`, default Asia/Seoul — the acquirer's).
pub fn parse_date(s: &str) -> Result<time::Date, String> {
    let back = match s {
        "today" => Some(0),
        "yesterday" => Some(1),
        _ => None,
    };
    if let Some(days) = back {
        let name = std::env::var("PAYCTL_TIME_ZONE")
            .unwrap_or_else(|_| payctl_domain::settlement::DEFAULT_TIME_ZONE.to_owned());
        let zone = payctl_domain::settlement::parse_time_zone(&name).map_err(|e| e.to_string())?;
        let today =
            payctl_domain::settlement::business_date(time::OffsetDateTime::now_utc(), &zone);
        return today
            .checked_sub(time::Duration::days(days))
            .ok_or_else(|| format!("no day before {today}"));
    }
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("{s:?} is not a date as YYYY-MM-DD, today or yesterday"))
}
