//! Per-merchant, per-action rate limits in Redis with GCRA (the generic cell rate algorithm).
//!
//! One Lua script reads and updates the merchant's "theoretical arrival time" atomically, using Redis'
//! own clock so several ingest instances agree. GCRA has no window boundaries: `capacity` requests may
//! arrive at once, and after that one more every `window / capacity`, so no interval ever sees the 2x
//! burst a fixed window allows at its edge. Refused requests do not count. The key expires on its own when
//! the merchant is idle, so a lost write can never throttle anyone forever.
//!
//! When Redis is slow or down the limiter fails open after a short timeout and counts it
//! (`ratelimit_fail_open_total`): refusing payments because a cache is down would be the worse outage.

use crate::config::RateLimitConfig;
use crate::metrics::Metrics;
use crate::redis_client::RedisClient;
use payctl_domain::MerchantId;

const GCRA: &str = r#"
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

    pub async fn check(
        &self,
        merchant: &MerchantId,
        action: Action,
        metrics: &Metrics,
    ) -> Decision {
        let (capacity, window_secs) = self.limits(action);
        if capacity == 0 || window_secs == 0 {
            return Decision::Unlimited;
        }
        let window_us = i64::from(window_secs) * 1_000_000;
        let interval_us = (window_us / i64::from(capacity)).max(1);
        let key = self.redis.key(&["rl", action.as_str(), merchant.as_str()]);
        let reply: Option<(i64, i64, i64)> = self
            .redis
            .eval(&self.script, &[&key], &[interval_us, window_us])
            .await;
        match reply {
            None => {
                metrics.ratelimit_fail_open.inc();
                Decision::FailedOpen
            }
            Some((1, _, backlog_us)) => Decision::Allowed {
                limit: capacity,
                remaining: ((window_us - backlog_us).max(0) / interval_us) as u32,
                reset_secs: (backlog_us as u64).div_ceil(1_000_000),
            },
            Some((_, retry_us, _)) => {
                metrics
                    .rate_limited
                    .with_label_values(&[action.as_str()])
                    .inc();
                Decision::Limited {
                    limit: capacity,
                    retry_after_secs: (retry_us.max(1) as u64).div_ceil(1_000_000),
                }
            }
        }
    }
}
