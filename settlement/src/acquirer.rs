//! The acquirer as the worker sees it: one trait ([`Acquirer`]) and its HTTP client ([`HttpAcquirer`],
//! `POST /v1/settlements` of `pay-acquirer`, and `GET /v1/settlements?eventId=` to find out whether a
//! call whose answer was lost had settled). Every failure is sorted here, once, into "try again
//! later" and "never": the dispatcher only asks [`AcquirerError::is_permanent`].

use async_trait::async_trait;
use payctl_domain::settlement::SettlementType;
use payctl_domain::{Currency, EventId, MerchantId, PaymentId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One settlement as submitted. The idempotency key is the event id: a retry of the same event, from
/// any worker, after any crash, is the same request to the acquirer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementRequest {
    #[serde(rename = "type")]
    pub kind: SettlementType,
    pub merchant_id: MerchantId,
    pub payment_id: PaymentId,
    pub event_id: EventId,
    /// Minor units, positive (checked when the event was read).
    pub amount: i64,
    pub currency: Currency,
}

impl SettlementRequest {
    pub fn idempotency_key(&self) -> String {
        self.event_id.to_string()
    }
}

/// The acquirer's answer to a settled request (first time or replayed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    pub reference: String,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: SettlementType,
    pub merchant_id: String,
    pub payment_id: PaymentId,
    pub event_id: EventId,
    pub amount: i64,
    pub fee: i64,
    pub net: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub settled_at: time::OffsetDateTime,
    #[serde(with = "iso_date")]
    pub business_date: time::Date,
    /// `Idempotent-Replayed: true`: an earlier call (perhaps answered 503 or lost) had settled it.
    #[serde(skip)]
    pub replayed: bool,
}

// `time`'s own serde form of a Date is not ISO 8601 without its human-readable feature; the acquirer
// writes `2026-01-31`.
time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

#[derive(Debug, thiserror::Error)]
pub enum AcquirerError {
    /// 4xx: the acquirer will never accept this request (e.g. 422 idempotency_key_reused, 400).
    #[error("acquirer refused the settlement: HTTP {status} {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// 5xx (503 acquirer_unavailable, also during an outage with `Retry-After`).
    #[error("acquirer unavailable: HTTP {status} {code}")]
    Unavailable {
        status: u16,
        code: String,
        retry_after: Option<Duration>,
    },
    #[error("acquirer call timed out")]
    Timeout,
    /// Could not connect, or the connection broke mid-call.
    #[error("acquirer unreachable: {0}")]
    Connection(String),
    /// A 2xx whose body is not a settlement, or one for another request: something is badly wrong
    /// between us and the acquirer; retrying the same call would get the same answer.
    #[error("acquirer answered something unexpected: {0}")]
    Protocol(String),
}

impl AcquirerError {
    /// Never going to succeed with the same key: FAILED at once, no retries.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::Protocol(_))
    }

    /// For the breaker: did the acquirer fail (rather than refuse the request)?
    pub fn is_acquirer_failure(&self) -> bool {
        !self.is_permanent()
    }

    /// The label of `settlement_acquirer_requests_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout => "timeout",
            Self::Connection(_) => "connection_error",
            Self::Protocol(_) => "protocol_error",
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Something that settles: the real acquirer over HTTP in production and in the tests.
#[async_trait]
pub trait Acquirer: Send + Sync + 'static {
    async fn settle(&self, request: &SettlementRequest) -> Result<Settled, AcquirerError>;

    /// The acquirer's settlement for this request's event, if it holds one (`None`: it settled
    /// nothing for it), verified against the request exactly as [`Acquirer::settle`]'s answer is: one
    /// for another request is a `Protocol` error. Asked before giving up after transient failures,
    /// since a call answered 5xx or cut off may have settled.
    async fn lookup(&self, request: &SettlementRequest) -> Result<Option<Settled>, AcquirerError>;
}

pub struct HttpAcquirer {
    client: reqwest::Client,
    url: String,
}

impl HttpAcquirer {
    /// `base_url` without the path (`http://127.0.0.1:18095`); each call is cut off after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            // Many calls in flight at once: keep their connections for the next ones.
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            client,
            url: format!("{}/v1/settlements", base_url.trim_end_matches('/')),
        })
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[async_trait]
impl Acquirer for HttpAcquirer {
    async fn settle(&self, request: &SettlementRequest) -> Result<Settled, AcquirerError> {
        let response = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", request.idempotency_key())
            .json(request)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let retry_after = retry_after(&response);
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            let mut settled: Settled = serde_json::from_slice(&body)
                .map_err(|e| AcquirerError::Protocol(format!("HTTP {status}: {e}")))?;
            settled.replayed = replayed;
            check_answer(request, &settled)?;
            return Ok(settled);
        }
        Err(failure(status, &body, retry_after))
    }

    async fn lookup(&self, request: &SettlementRequest) -> Result<Option<Settled>, AcquirerError> {
        let response = self
            .client
            .get(&self.url)
            .query(&[("eventId", request.event_id.to_string())])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(failure(status, &body, retry_after));
        }
        let found: Vec<Settled> = serde_json::from_slice(&body)
            .map_err(|e| AcquirerError::Protocol(format!("lookup HTTP {status}: {e}")))?;
        let mut ours = None;
        for mut settled in found {
            // Settled by an earlier call: what a POST with the same key would replay.
            settled.replayed = true;
            check_answer(request, &settled)?;
            ours.get_or_insert(settled);
        }
        Ok(ours)
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A non-2xx answer, sorted into "never" and "not now".
fn failure(
    status: reqwest::StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> AcquirerError {
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        AcquirerError::Rejected {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        }
    } else {
        // 5xx, and the 4xx that mean "not now" (408 request timeout, 429 too many requests).
        AcquirerError::Unavailable {
            status: status.as_u16(),
            code: error.code,
            retry_after,
        }
    }
}

fn transport(e: reqwest::Error) -> AcquirerError {
    if e.is_timeout() {
        AcquirerError::Timeout
    } else {
        AcquirerError::Connection(e.to_string())
    }
}

/// A settlement answer for another event, amount or merchant must never be recorded as ours.
fn check_answer(request: &SettlementRequest, s: &Settled) -> Result<(), AcquirerError> {
    let same = s.event_id == request.event_id
        && s.payment_id == request.payment_id
        && s.kind == request.kind
        && s.merchant_id == request.merchant_id.as_str()
        && s.amount == request.amount
        && s.currency == request.currency.code()
        && s.status == "SETTLED"
        // A fee outside 0..=gross is no fee rule of ours: paying it out would pay the merchant less
        // than nothing, or pay the acquirer's rebate as if it were ours.
        && (0..=s.amount).contains(&s.fee)
        && s.net == s.amount - s.fee;
    if same {
        Ok(())
    } else {
        Err(AcquirerError::Protocol(format!(
            "the answer {} (event {}, {} {} {}, fee {}, net {}, status {}) does not match the request",
            s.reference, s.event_id, s.kind, s.amount, s.currency, s.fee, s.net, s.status
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SettlementRequest {
        SettlementRequest {
            kind: SettlementType::Capture,
            merchant_id: MerchantId::parse("m", "M1").unwrap(),
            payment_id: PaymentId::new(),
            event_id: EventId::new(),
            amount: 10_000,
            currency: Currency::parse("c", "KRW").unwrap(),
        }
    }

    #[test]
    fn the_request_is_the_acquirers_camel_case_body() {
        let r = request();
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "amount",
                "currency",
                "eventId",
                "merchantId",
                "paymentId",
                "type"
            ]
        );
        assert_eq!(v["type"], "CAPTURE");
        assert_eq!(r.idempotency_key(), r.event_id.to_string());
    }

    #[test]
    fn an_answer_for_another_request_is_refused() {
        let r = request();
        let good = Settled {
            reference: "ACQ-1".into(),
            status: "SETTLED".into(),
            kind: r.kind,
            merchant_id: r.merchant_id.to_string(),
            payment_id: r.payment_id,
            event_id: r.event_id,
            amount: r.amount,
            fee: 250,
            net: 9_750,
            currency: r.currency.to_string(),
            settled_at: time::OffsetDateTime::UNIX_EPOCH,
            business_date: time::macros::date!(2026 - 01 - 01),
            replayed: false,
        };
        assert!(check_answer(&r, &good).is_ok());
        type Change = Box<dyn Fn(&mut Settled)>;
        let cases: [(&str, Change); 6] = [
            ("other event", Box::new(|s| s.event_id = EventId::new())),
            ("other amount", Box::new(|s| s.amount += 1)),
            ("net ≠ gross − fee", Box::new(|s| s.net += 1)),
            ("not settled", Box::new(|s| s.status = "PENDING".into())),
            (
                "fee above the gross",
                Box::new(|s| {
                    s.fee = s.amount + 1;
                    s.net = -1;
                }),
            ),
            (
                "negative fee",
                Box::new(|s| {
                    s.fee = -1;
                    s.net = s.amount + 1;
                }),
            ),
        ];
        for (why, change) in cases {
            let mut bad = good.clone();
            change(&mut bad);
            let e = check_answer(&r, &bad).unwrap_err();
            assert!(e.is_permanent(), "{why}: {e}");
        }
    }

    #[test]
    fn only_refusals_and_nonsense_are_permanent() {
        let rejected = AcquirerError::Rejected {
            status: 422,
            code: "idempotency_key_reused".into(),
            message: String::new(),
        };
        assert!(rejected.is_permanent());
        assert!(!rejected.is_acquirer_failure());
        for transient in [
            AcquirerError::Unavailable {
                status: 503,
                code: "acquirer_unavailable".into(),
                retry_after: None,
            },
            AcquirerError::Timeout,
            AcquirerError::Connection("refused".into()),
        ] {
            assert!(!transient.is_permanent(), "{transient}");
            assert!(transient.is_acquirer_failure(), "{transient}");
        }
    }
}
