//! A circuit breaker with Resilience4j's semantics, shared by pay-server (around the Kafka publisher) and
//! pay-settlement (around the acquirer), so both behave and report alike.
//!
//! Written by hand because no maintained Rust crate offers Resilience4j's model (count-based window,
//! minimum calls, failure *and* slow-call rates, automatic OPEN→HALF_OPEN, limited probes, and the
//! DISABLED / FORCED_OPEN / METRICS_ONLY states the original's dashboards and runbooks speak of).
//!
//! A breaker guards a background worker, not requests: when it is OPEN the worker pauses and its queue
//! (the outbox, the settlements table) holds the work; nothing upstream notices.
//!
//! Each service maps its own settings (its own environment variables) into [`Settings`].

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state a breaker starts in (the operator's states; OPEN and HALF_OPEN are only ever reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialState {
    Closed,
    Disabled,
    ForcedOpen,
    MetricsOnly,
}

/// Resilience4j's settings for one breaker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What the breaker guards, for its log lines (`kafka-publisher`, `acquirer`).
    pub name: &'static str,
    /// Calls in the count-based sliding window.
    pub sliding_window_size: u32,
    /// Calls needed in the window before rates are computed.
    pub minimum_calls: u32,
    /// Failure rate (%) at or above which the breaker opens.
    pub failure_rate_threshold: f64,
    /// Slow-call rate (%) at or above which the breaker opens.
    pub slow_call_rate_threshold: f64,
    /// A call lasting at least this long is slow.
    pub slow_call_duration_ms: u64,
    /// Time in OPEN before probing (HALF_OPEN).
    pub wait_in_open_ms: u64,
    /// Probe calls permitted in HALF_OPEN.
    pub permitted_in_half_open: u32,
    pub initial_state: InitialState,
}

impl Settings {
    pub fn slow_call_duration(&self) -> Duration {
        Duration::from_millis(self.slow_call_duration_ms)
    }
    pub fn wait_in_open(&self) -> Duration {
        Duration::from_millis(self.wait_in_open_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
    Disabled,
    ForcedOpen,
    MetricsOnly,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ];

    /// Lower-case name, as Resilience4j's `state` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Disabled => "disabled",
            Self::ForcedOpen => "forced_open",
            Self::MetricsOnly => "metrics_only",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    failed: bool,
    slow: bool,
}

/// One state change, kept so an operator (or `payctl cb test`) can see transitions too brief to poll.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub from: State,
    pub to: State,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
}

const TRANSITIONS_KEPT: usize = 20;

#[derive(Debug)]
struct Inner {
    transitions: VecDeque<Transition>,
    state: State,
    window: VecDeque<Outcome>,
    opened_at: Instant,
    half_open_permits: u32,
    not_permitted: u64,
}

/// The breaker's figures, in the shape of the original's `GET /circuit-breaker/kafka-publisher`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub state: State,
    pub failure_rate: String,
    pub slow_call_rate: String,
    pub number_of_successful_calls: u32,
    pub number_of_failed_calls: u32,
    pub number_of_slow_calls: u32,
    pub number_of_slow_successful_calls: u32,
    pub number_of_slow_failed_calls: u32,
    pub number_of_buffered_calls: u32,
    pub number_of_not_permitted_calls: u64,
    /// The last state changes, oldest first.
    pub recent_transitions: Vec<Transition>,
    #[serde(skip)]
    pub failure_rate_value: f64,
    #[serde(skip)]
    pub slow_call_rate_value: f64,
}

/// Where the breaker reads the time: the monotonic clock, or a test's own (so the wait in OPEN is
/// tested without sleeping).
pub type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

pub struct CircuitBreaker {
    config: Settings,
    inner: Mutex<Inner>,
    clock: Clock,
}

impl CircuitBreaker {
    pub fn new(config: Settings) -> Self {
        Self::with_clock(config, Box::new(Instant::now))
    }

    pub fn with_clock(config: Settings, clock: Clock) -> Self {
        let now = clock();
        let state = match config.initial_state {
            InitialState::Closed => State::Closed,
            InitialState::Disabled => State::Disabled,
            InitialState::ForcedOpen => State::ForcedOpen,
            InitialState::MetricsOnly => State::MetricsOnly,
        };
        Self {
            config,
            clock,
            inner: Mutex::new(Inner {
                transitions: VecDeque::new(),
                state,
                window: VecDeque::new(),
                opened_at: now,
                half_open_permits: 0,
                not_permitted: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters inconsistent in a harmful way.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        let mut inner = self.lock();
        self.maybe_half_open(&mut inner);
        inner.state
    }

    /// Asks to make one call. `false` means "not permitted" (and is counted).
    pub fn try_acquire(&self) -> bool {
        let mut inner = self.lock();
        self.maybe_half_open(&mut inner);
        let permitted = match inner.state {
            State::Closed | State::Disabled | State::MetricsOnly => true,
            State::Open | State::ForcedOpen => false,
            State::HalfOpen => {
                if inner.half_open_permits > 0 {
                    inner.half_open_permits -= 1;
                    true
                } else {
                    false
                }
            }
        };
        if !permitted {
            inner.not_permitted += 1;
        }
        permitted
    }

    /// How many calls may start now without being refused (for sizing a relay batch), and, if none, how
    /// long until that may change.
    pub fn capacity(&self, wanted: u32) -> (u32, Option<Duration>) {
        let mut inner = self.lock();
        self.maybe_half_open(&mut inner);
        match inner.state {
            State::Closed | State::Disabled | State::MetricsOnly => (wanted, None),
            State::HalfOpen => (inner.half_open_permits.min(wanted), None),
            State::Open => {
                let left = self
                    .config
                    .wait_in_open()
                    .saturating_sub((self.clock)().saturating_duration_since(inner.opened_at));
                (0, Some(left))
            }
            State::ForcedOpen => (0, Some(Duration::from_secs(1))),
        }
    }

    /// Records the outcome of a permitted call.
    pub fn record(&self, elapsed: Duration, failed: bool) {
        let slow = elapsed >= self.config.slow_call_duration();
        let mut inner = self.lock();
        match inner.state {
            State::Disabled | State::ForcedOpen | State::Open => return,
            State::Closed | State::MetricsOnly | State::HalfOpen => {}
        }
        inner.window.push_back(Outcome { failed, slow });
        let window_size = if inner.state == State::HalfOpen {
            self.config.permitted_in_half_open
        } else {
            self.config.sliding_window_size
        } as usize;
        while inner.window.len() > window_size.max(1) {
            inner.window.pop_front();
        }
        let (failure_rate, slow_rate) = self.rates(&inner);
        let exceeded = failure_rate >= self.config.failure_rate_threshold
            || slow_rate >= self.config.slow_call_rate_threshold;
        match inner.state {
            State::Closed if failure_rate >= 0.0 && exceeded => {
                self.transition(&mut inner, State::Open)
            }
            State::HalfOpen
                if inner.window.len() >= self.config.permitted_in_half_open as usize =>
            {
                let next = if exceeded { State::Open } else { State::Closed };
                self.transition(&mut inner, next);
            }
            _ => {}
        }
    }

    /// (failure rate %, slow-call rate %), or -1 each while fewer than the minimum calls are buffered.
    fn rates(&self, inner: &Inner) -> (f64, f64) {
        let n = inner.window.len();
        let minimum = if inner.state == State::HalfOpen {
            self.config.permitted_in_half_open
        } else {
            self.config.minimum_calls
        } as usize;
        if n == 0 || n < minimum.max(1) {
            return (-1.0, -1.0);
        }
        let failed = inner.window.iter().filter(|o| o.failed).count();
        let slow = inner.window.iter().filter(|o| o.slow).count();
        (
            failed as f64 * 100.0 / n as f64,
            slow as f64 * 100.0 / n as f64,
        )
    }

    fn maybe_half_open(&self, inner: &mut Inner) {
        if inner.state == State::Open
            && (self.clock)().saturating_duration_since(inner.opened_at)
                >= self.config.wait_in_open()
        {
            self.transition(inner, State::HalfOpen);
        }
    }

    fn transition(&self, inner: &mut Inner, to: State) {
        if inner.state == to {
            return;
        }
        tracing::warn!(breaker = self.config.name, from = ?inner.state, to = ?to, "circuit breaker changed state");
        if inner.transitions.len() == TRANSITIONS_KEPT {
            inner.transitions.pop_front();
        }
        let from = inner.state;
        inner.transitions.push_back(Transition {
            from,
            to,
            at: time::OffsetDateTime::now_utc(),
        });
        // Like Resilience4j, OPEN keeps the window that tripped it (so its figures stay visible);
        // CLOSED and HALF_OPEN start a fresh one.
        if matches!(
            to,
            State::Closed | State::HalfOpen | State::Disabled | State::MetricsOnly
        ) {
            inner.window.clear();
        }
        if to == State::Open {
            inner.opened_at = (self.clock)();
        }
        if to == State::HalfOpen {
            inner.half_open_permits = self.config.permitted_in_half_open;
        }
        inner.state = to;
    }

    /// Operator overrides (`payctl cb force-open | disable | reset`, and METRICS_ONLY).
    pub fn force(&self, to: State) {
        let mut inner = self.lock();
        self.transition(&mut inner, to);
        if to == State::Closed {
            inner.not_permitted = 0;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        self.maybe_half_open(&mut inner);
        let (failure_rate, slow_rate) = self.rates(&inner);
        let count = |f: fn(&Outcome) -> bool| inner.window.iter().filter(|o| f(o)).count() as u32;
        Snapshot {
            state: inner.state,
            failure_rate: format!("{failure_rate:.2}%"),
            slow_call_rate: format!("{slow_rate:.2}%"),
            number_of_successful_calls: count(|o| !o.failed),
            number_of_failed_calls: count(|o| o.failed),
            number_of_slow_calls: count(|o| o.slow),
            number_of_slow_successful_calls: count(|o| o.slow && !o.failed),
            number_of_slow_failed_calls: count(|o| o.slow && o.failed),
            number_of_buffered_calls: inner.window.len() as u32,
            number_of_not_permitted_calls: inner.not_permitted,
            recent_transitions: inner.transitions.iter().cloned().collect(),
            failure_rate_value: failure_rate,
            slow_call_rate_value: slow_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        fn new() -> Self {
            Self(Arc::new(Mutex::new(Instant::now())))
        }
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
        fn clock(&self) -> Clock {
            let me = self.clone();
            Box::new(move || *me.0.lock().unwrap())
        }
    }

    /// A breaker on a manual clock.
    fn breaker() -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        (CircuitBreaker::with_clock(config(), clock.clock()), clock)
    }

    fn config() -> Settings {
        Settings {
            name: "test",
            sliding_window_size: 10,
            minimum_calls: 5,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 50.0,
            slow_call_duration_ms: 100,
            wait_in_open_ms: 50,
            permitted_in_half_open: 3,
            initial_state: InitialState::Closed,
        }
    }

    const FAST: Duration = Duration::from_millis(1);

    #[test]
    fn stays_closed_below_minimum_calls_and_reports_minus_one() {
        let b = CircuitBreaker::new(config());
        for _ in 0..4 {
            assert!(b.try_acquire());
            b.record(FAST, true);
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().failure_rate, "-1.00%");
    }

    #[test]
    fn opens_on_failure_rate_then_half_opens_and_closes_after_good_probes() {
        let (b, clock) = breaker();
        for _ in 0..5 {
            assert!(b.try_acquire());
            b.record(FAST, true);
        }
        assert_eq!(b.state(), State::Open);
        assert!(!b.try_acquire());
        assert_eq!(b.snapshot().number_of_not_permitted_calls, 1);
        clock.advance(Duration::from_millis(49));
        assert_eq!(b.state(), State::Open, "still waiting in OPEN");
        assert_eq!(b.capacity(10), (0, Some(Duration::from_millis(1))));
        clock.advance(Duration::from_millis(11));
        assert_eq!(b.state(), State::HalfOpen);
        for _ in 0..3 {
            assert!(b.try_acquire());
        }
        assert!(!b.try_acquire(), "only 3 probes are permitted");
        for _ in 0..3 {
            b.record(FAST, false);
        }
        assert_eq!(b.state(), State::Closed);
        let seen: Vec<State> = b
            .snapshot()
            .recent_transitions
            .iter()
            .map(|t| t.to)
            .collect();
        assert_eq!(seen, vec![State::Open, State::HalfOpen, State::Closed]);
    }

    #[test]
    fn failed_probes_reopen() {
        let (b, clock) = breaker();
        b.force(State::Open);
        clock.advance(Duration::from_millis(60));
        for _ in 0..3 {
            assert!(b.try_acquire());
            b.record(FAST, true);
        }
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn opens_on_slow_calls_even_when_they_succeed() {
        let b = CircuitBreaker::new(config());
        for _ in 0..5 {
            assert!(b.try_acquire());
            b.record(Duration::from_millis(150), false);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.snapshot().slow_call_rate, "100.00%");
    }

    #[test]
    fn mixed_window_below_thresholds_stays_closed() {
        let b = CircuitBreaker::new(config());
        for i in 0..10 {
            b.record(FAST, i % 3 == 0); // 4 of 10 fail = 40 %
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().failure_rate, "40.00%");
    }

    #[test]
    fn operator_states_behave() {
        let (b, clock) = breaker();
        b.force(State::ForcedOpen);
        assert!(!b.try_acquire());
        clock.advance(Duration::from_millis(60));
        assert_eq!(b.state(), State::ForcedOpen, "forced open never half-opens");
        b.force(State::Disabled);
        for _ in 0..10 {
            assert!(b.try_acquire());
            b.record(FAST, true);
        }
        assert_eq!(b.state(), State::Disabled);
        b.force(State::MetricsOnly);
        for _ in 0..10 {
            b.record(FAST, true);
        }
        assert_eq!(b.state(), State::MetricsOnly);
        assert_eq!(b.snapshot().failure_rate, "100.00%");
        b.force(State::Closed);
        assert_eq!(b.state(), State::Closed);
    }
}
