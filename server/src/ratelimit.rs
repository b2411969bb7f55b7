//! Per-merchant, per-action rate limits in Redis with GCRA (the generic cell rate algorithm).
//!
//! One Lua script reads and updates the merchant's "theoretical arrival time" atomically, using Redis'
//! own clock so several ingest instances agree. GCRA has no window boundaries: `capacity` requests may
//! arrive at once, and after that one more every `window / capacity`, so no interval ever sees the 2x
//! burst a fixed window allows at its edge. Refused requests do not count. The key expires on its own when
//! the merchant is idle, so a lost write can never throttle anyone forever.
//!
//! A keyed request asks for its cached response and its rate-limit verdict in the same script, so a
//! request costs one Redis round trip: a cached response is returned without counting against the limit
//! (a replay moves nothing), and otherwise the limit is applied as for any request.
//!
//! When Redis is slow or down the limiter fails open after a short timeout and counts it
//! (`ratelimit_fail_open_total`): refusing payments because a cache is down would be the worse outage.

use crate::config::RateLimitConfig;
use crate::metrics::Metrics;
use crate::redis_client::RedisClient;
use payctl_domain::MerchantId;

const GCRA: &str = r#"
if #KEYS > 1 then
  local cached = redis.call('GET', KEYS[2])
  if cached then
    return {2, cached}
  end
end
if tonumber(ARGV[1]) == 0 then
  return {3}
end
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return {0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, new_tat - now}
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Authorize,
    Capture,
    Refund,
    Void,
}

impl Action {
    pub const ALL: [Action; 4] = [Self::Authorize, Self::Capture, Self::Refund, Self::Void];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Refund => "refund",
            Self::Void => "void",
        }
    }
}

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        limit: u32,
        remaining: u32,
        reset_secs: u64,
    },
    Limited {
        limit: u32,
        retry_after_secs: u64,
    },
    /// No limit configured for this action.
    Unlimited,
    /// Redis did not answer in time: allowed, and counted.
    FailedOpen,
}

/// What one round trip to Redis said about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The response cached under the request's idempotency key (raw bytes; nothing counted).
    Cached(Vec<u8>),
    /// No cached response: the rate limit's decision.
    Decided(Decision),
}

pub struct RateLimiter {
    redis: RedisClient,
    config: RateLimitConfig,
    script: redis::Script,
}

impl RateLimiter {
    pub fn new(redis: RedisClient, config: RateLimitConfig) -> Self {
        Self {
            redis,
            config,
            script: redis::Script::new(GCRA),
        }
    }

    fn limits(&self, action: Action) -> (u32, u32) {
        let c = &self.config;
        match action {
            Action::Authorize => (c.authorize_capacity, c.authorize_window_seconds),
            Action::Capture => (c.capture_capacity, c.capture_window_seconds),
            Action::Refund => (c.refund_capacity, c.refund_window_seconds),
            Action::Void => (c.void_capacity, c.void_window_seconds),
        }
    }

    /// The rate-limit verdict for one `action` by `merchant`.
    pub async fn check(
        &self,
        merchant: &MerchantId,
        action: Action,
        metrics: &Metrics,
    ) -> Decision {
        match self.check_or_cached(merchant, action, None, metrics).await {
            Verdict::Decided(decision) => decision,
            // Not asked for a cached response, so none comes back.
            Verdict::Cached(_) => Decision::FailedOpen,
        }
    }

    /// The response cached under `cache_key` if there is one, else the rate-limit verdict; one round
    /// trip either way.
    pub async fn check_or_cached(
        &self,
        merchant: &MerchantId,
        action: Action,
        cache_key: Option<&str>,
        metrics: &Metrics,
    ) -> Verdict {
        let (capacity, window_secs) = self.limits(action);
        let limited = capacity != 0 && window_secs != 0;
        if !limited && cache_key.is_none() {
            return Verdict::Decided(Decision::Unlimited);
        }
        let window_us = i64::from(window_secs) * 1_000_000;
        let interval_us = if limited {
            (window_us / i64::from(capacity)).max(1)
        } else {
            0
        };
        let key = self.redis.key(&["rl", action.as_str(), merchant.as_str()]);
        let mut keys = vec![key.as_str()];
        keys.extend(cache_key);
        let reply: Option<redis::Value> = self
            .redis
            .eval(&self.script, &keys, &[interval_us, window_us])
            .await;
        let Some(reply) = reply else {
            if !limited {
                return Verdict::Decided(Decision::Unlimited);
            }
            metrics.ratelimit_fail_open.inc();
            return Verdict::Decided(Decision::FailedOpen);
        };
        match parse_reply(reply) {
            Reply::Cached(bytes) => Verdict::Cached(bytes),
            Reply::Unlimited => Verdict::Decided(Decision::Unlimited),
            Reply::Allowed { backlog_us } => Verdict::Decided(Decision::Allowed {
                limit: capacity,
                remaining: ((window_us - backlog_us).max(0) / interval_us) as u32,
                reset_secs: (backlog_us as u64).div_ceil(1_000_000),
            }),
            Reply::Limited { retry_us } => {
                metrics
                    .rate_limited
                    .with_label_values(&[action.as_str()])
                    .inc();
                Verdict::Decided(Decision::Limited {
                    limit: capacity,
                    retry_after_secs: (retry_us.max(1) as u64).div_ceil(1_000_000),
                })
            }
            Reply::Unreadable => {
                tracing::debug!("unreadable rate-limit reply");
                metrics.ratelimit_fail_open.inc();
                Verdict::Decided(Decision::FailedOpen)
            }
        }
    }
}

/// The script's answer: `{2, bytes}` cached, `{3}` no limit, `{1, 0, backlog}` allowed,
/// `{0, retry, backlog}` limited (times in µs).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Cached(Vec<u8>),
    Unlimited,
    Allowed { backlog_us: i64 },
    Limited { retry_us: i64 },
    Unreadable,
}

fn parse_reply(reply: redis::Value) -> Reply {
    use redis::Value;
    let Value::Array(items) = reply else {
        return Reply::Unreadable;
    };
    match items.as_slice() {
        [Value::Int(2), Value::BulkString(bytes)] => Reply::Cached(bytes.clone()),
        [Value::Int(3)] => Reply::Unlimited,
        [Value::Int(1), Value::Int(_), Value::Int(backlog)] => Reply::Allowed {
            backlog_us: *backlog,
        },
        [Value::Int(0), Value::Int(retry), Value::Int(_)] => Reply::Limited { retry_us: *retry },
        _ => Reply::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn script_replies_are_read_as_written() {
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        assert_eq!(
            parse_reply(Value::Array(vec![Value::Int(2), bulk(b"abc")])),
            Reply::Cached(b"abc".to_vec())
        );
        assert_eq!(
            parse_reply(Value::Array(vec![Value::Int(3)])),
            Reply::Unlimited
        );
        assert_eq!(
            parse_reply(Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(7)
            ])),
            Reply::Allowed { backlog_us: 7 }
        );
        assert_eq!(
            parse_reply(Value::Array(vec![
                Value::Int(0),
                Value::Int(9),
                Value::Int(7)
            ])),
            Reply::Limited { retry_us: 9 }
        );
        assert_eq!(parse_reply(Value::Nil), Reply::Unreadable);
        assert_eq!(
            parse_reply(Value::Array(vec![Value::Int(2)])),
            Reply::Unreadable
        );
    }
}
