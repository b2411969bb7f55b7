//! The payment API's client: where the API is, which key to use, and its errors in their
//! `{code, message}` shape.

use crate::stack::health::require_running;
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Where the API is and which key to use.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "API")]
pub struct Target {
    /// Base URL of the payment API (through the gateway: …/api).
    #[arg(
        long,
        global = true,
        env = "PAYCTL_API_URL",
        default_value = "http://127.0.0.1:8080/api"
    )]
    pub api_url: String,
    /// Merchant API key; defaults to the dev merchant's key that `payctl up` created.
    #[arg(long, global = true, env = "PAYCTL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// An error answer of the API, in its `{code, message}` shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (HTTP {})", self.code, self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

pub struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(home: &Path, target: &Target) -> anyhow::Result<Self> {
        require_api(&target.api_url)?;
        let key = match &target.api_key {
            Some(k) => k.clone(),
            None => std::fs::read_to_string(home.join("secrets/dev-merchant.key"))
                .map(|k| k.trim().to_owned())
                .with_context(|| {
                    format!(
                        "no API key: pass --api-key, set PAYCTL_API_KEY, or run `payctl up` (which writes {})",
                        home.join("secrets/dev-merchant.key").display()
                    )
                })?,
        };
        Ok(Self {
            base: target.api_url.trim_end_matches('/').to_owned(),
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// Calls the API; a non-2xx answer becomes an [`ApiError`].
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        Ok(self
            .call_replayed(method, path, body, idempotency_key)
            .await?
            .0)
    }

    /// Like [`Api::call`], with whether the answer is a replay (`Idempotent-Replayed: true`).
    pub async fn call_replayed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(Value, bool)> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.with_context(|| {
            format!(
                "cannot reach the API at {} (is the platform up? `payctl up`)",
                self.base
            )
        })?;
        let status = res.status().as_u16();
        let replayed = res
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = res.bytes().await?;
        let value = payment_api_json(&content_type, &bytes)
            .ok_or_else(|| not_the_api(&url, &self.base, &content_type, status))?;
        if !(200..300).contains(&status) {
            let mut message = value["message"]
                .as_str()
                .unwrap_or("unexpected answer")
                .to_owned();
            if let Some(details) = value["details"].as_array() {
                let fields: Vec<String> = details
                    .iter()
                    .map(|d| {
                        format!(
                            "{}: {}",
                            d["field"].as_str().unwrap_or("?"),
                            d["reason"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                message = format!("{message} ({})", fields.join("; "));
            }
            return Err(ApiError {
                status,
                code: value["code"].as_str().unwrap_or("HTTP_ERROR").to_owned(),
                message,
            }
            .into());
        }
        Ok((value, replayed))
    }

    pub async fn post(&self, path: &str, body: Value, key: Option<&str>) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body), key)
            .await
    }

    /// POSTs with the Idempotency-Key `key`; the answer and whether it is a replay.
    pub async fn post_idempotent(
        &self,
        path: &str,
        body: Value,
        key: &str,
    ) -> anyhow::Result<(Value, bool)> {
        self.call_replayed(reqwest::Method::POST, path, Some(body), Some(key))
            .await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None, None).await
    }
}

/// Fails at once, as every command does, when the API at `url` is on this machine and nothing
/// answers there.
pub fn require_api(url: &str) -> anyhow::Result<()> {
    match local_port(url) {
        Some(port) => require_running(port),
        None => Ok(()),
    }
}

/// The port of `url` when it is on this machine (where `payctl up` runs the platform).
pub fn local_port(url: &str) -> Option<u16> {
    let url = reqwest::Url::parse(url).ok()?;
    let local = match url.host_str()? {
        "localhost" | "[::1]" => true,
        ip => ip
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
    };
    local.then(|| url.port_or_known_default()).flatten()
}

/// The body when it is the payment API's JSON (`application/json`, an object), else None: a gateway's
/// HTML page, the store, a proxy's error are not answers of the API.
fn payment_api_json(content_type: &str, body: &[u8]) -> Option<Value> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return None;
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
}

/// The error for an answer that is not the API's JSON, with a hint when `base` lacks `/api`.
fn not_the_api(url: &str, base: &str, content_type: &str, status: u16) -> anyhow::Error {
    let what = match content_type.split(';').next().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => "no content type".to_owned(),
    };
    let hint = if base.ends_with("/api") {
        String::new()
    } else {
        "; is --api-url missing /api?".to_owned()
    };
    anyhow::anyhow!("{url} answered {what} (HTTP {status}), not the payment API's JSON{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_is_probed_only_on_this_machine() {
        assert_eq!(local_port("http://127.0.0.1:8080/api"), Some(8080));
        assert_eq!(local_port("http://localhost/api"), Some(80));
        assert_eq!(local_port("http://[::1]:9/api"), Some(9));
        assert_eq!(local_port("https://pay.example.com/api"), None);
        assert_eq!(local_port("not a url"), None);
    }

    #[test]
    fn only_the_apis_json_is_an_answer() {
        assert!(payment_api_json("application/json", br#"{"data":[]}"#).is_some());
        assert!(payment_api_json("application/json; charset=utf-8", b"{}").is_some());
        assert!(payment_api_json("text/html", b"<!doctype html><html></html>").is_none());
        assert!(payment_api_json("application/json", b"<!doctype html>").is_none());
        assert!(payment_api_json("application/json", b"[1]").is_none());
        assert!(payment_api_json("", b"{}").is_none());
    }

    #[test]
    fn the_error_names_the_url_and_what_answered() {
        let e = not_the_api(
            "http://127.0.0.1:8080/payments",
            "http://127.0.0.1:8080",
            "text/html; charset=utf-8",
            200,
        )
        .to_string();
        assert_eq!(
            e,
            "http://127.0.0.1:8080/payments answered text/html (HTTP 200), not the payment API's JSON; is --api-url missing /api?"
        );
        let e = not_the_api("http://h/api/payments", "http://h/api", "", 502).to_string();
        assert!(!e.contains("missing /api"), "{e}");
        assert!(e.contains("no content type (HTTP 502)"), "{e}");
    }
}
