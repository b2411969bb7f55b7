//! The payment API's client: where the API is, which key to use, and its errors in their
//! `{code, message}` shape.

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Where the API is and which key to use.
#[derive(Debug, Clone, Args)]
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
        let bytes = res.bytes().await?;
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
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
